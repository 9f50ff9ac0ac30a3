//! Q5_K: 256 weights in 8 sub-blocks of 32, 5-bit codes, 6-bit sub-block scales and mins.

use half::f16;

use crate::ggml::f16_bits::f16_to_f32;

#[cfg(target_arch = "x86_64")]
use super::q4_k::search_8x32_x4;
use super::q4_k::{Search8x32, search_8x32};
use super::{QK_K, get_scale_min_k4};

/// One Q5_K super-block: `x ≈ d * sc[j] * q - dmin * m[j]` for sub-block `j`, 176 bytes.
///
/// ```
/// use modelopt_quantize::ggml::BlockQ5_K;
/// let x: [f32; 256] = std::array::from_fn(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0);
/// let b = BlockQ5_K::quantize(&x);
/// assert_eq!(BlockQ5_K::from_bytes(&b.to_bytes()), b);
/// let y = b.dequantize();
/// assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 0.05));
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ5_K {
    /// Super-block scale of the sub-block scales.
    pub d: f16,
    /// Super-block scale of the sub-block mins.
    pub dmin: f16,
    /// Eight 6-bit scales and eight 6-bit mins, packed as in Q4_K (`get_scale_min_k4`).
    pub scales: [u8; 12],
    /// High bits: bit `2g` of byte `l` is the fifth bit of element `64g + l`, bit `2g + 1` that of
    /// element `64g + 32 + l`.
    pub qh: [u8; 32],
    /// Low 4 bits, packed as the codes of Q4_K.
    pub qs: [u8; 128],
}

const _: () = assert!(std::mem::size_of::<BlockQ5_K>() == BlockQ5_K::TYPE_SIZE);

impl BlockQ5_K {
    /// The GGML type of this block.
    pub const TYPE: crate::ggml::GgmlType = crate::ggml::GgmlType::Q5_K;
    /// Weights per block.
    pub const BLOCK_SIZE: usize = QK_K;
    /// Bytes per block.
    pub const TYPE_SIZE: usize = 176;

    /// Quantizes 256 finite weights as `quantize_row_q5_K_ref` does (what `ggml_quantize_chunk`
    /// runs without an importance matrix): per sub-block `make_qkx2_quants(32, 31, ..., -0.5,
    /// 0.1, 15)` with weights `sqrt(mean(x^2)) + |x|`, scales and mins to 6 bits against the
    /// largest. As for [`BlockQ4_K::quantize`], the codes are those of the scale search, which is
    /// what the reference bytes hold.
    ///
    /// [`BlockQ4_K::quantize`]: crate::ggml::BlockQ4_K::quantize
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ5_K::quantize(&[0.0; 256]);
    /// assert_eq!(b.qs, [0; 128]);
    /// ```
    #[inline(always)]
    pub fn quantize(x: &[f32; QK_K]) -> Self {
        Self::quantize_impl::<false>(x)
    }

    /// [`BlockQ5_K::quantize`] with the AVX2 scale search.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(crate) unsafe fn quantize_avx2(x: &[f32; QK_K]) -> Self {
        Self::quantize_impl::<true>(x)
    }

    /// `AVX2 = true` only through [`BlockQ5_K::quantize_avx2`], whose caller checked the CPU.
    #[inline(always)]
    fn quantize_impl<const AVX2: bool>(x: &[f32; QK_K]) -> Self {
        Self::from_search(search_8x32::<AVX2>(x, 31, -0.5, 15))
    }

    /// Four blocks through the AVX-512 scale search.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and AVX-512DQ.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(crate) unsafe fn quantize4_avx512(xs: &[[f32; QK_K]; 4]) -> [Self; 4] {
        // SAFETY: the caller checked the CPU.
        unsafe { search_8x32_x4(xs, 31, -0.5, 15) }.map(Self::from_search)
    }

    #[inline(always)]
    pub(crate) fn from_search((l, scales, d, dmin): Search8x32) -> Self {
        let mut qs = [0u8; 128];
        let mut qh = [0u8; 32];
        for g in 0..4 {
            for k in 0..32 {
                let (l1, l2) = (l[2 * g][k], l[2 * g + 1][k]);
                qs[32 * g + k] = (l1 & 0x0f) | ((l2 & 0x0f) << 4);
                qh[k] |= ((l1 >> 4) << (2 * g)) | ((l2 >> 4) << (2 * g + 1));
            }
        }
        BlockQ5_K {
            d,
            dmin,
            scales,
            qh,
            qs,
        }
    }

    /// The 256 reconstructed weights (`dequantize_row_q5_K`).
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ5_K::quantize(&[0.5; 256]);
    /// assert!(b.dequantize().iter().all(|v| (v - 0.5).abs() < 1e-3));
    /// ```
    #[inline(always)]
    pub fn dequantize(&self) -> [f32; QK_K] {
        let d = f16_to_f32(self.d);
        let min = f16_to_f32(self.dmin);
        let mut y = [0f32; QK_K];
        for g in 0..4 {
            let (sc1, m1) = get_scale_min_k4(2 * g, &self.scales);
            let (sc2, m2) = get_scale_min_k4(2 * g + 1, &self.scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            for k in 0..32 {
                let q = self.qs[32 * g + k];
                let h = self.qh[k] >> (2 * g);
                let q1 = (q & 0x0f) | ((h & 1) << 4);
                let q2 = (q >> 4) | ((h & 2) << 3);
                y[64 * g + k] = d1 * q1 as f32 - m1;
                y[64 * g + 32 + k] = d2 * q2 as f32 - m2;
            }
        }
        y
    }

    /// The block as GGML stores it (little-endian).
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ5_K::quantize(&[0.0; 256]);
    /// assert_eq!(b.to_bytes().len(), 176);
    /// ```
    #[inline(always)]
    pub fn to_bytes(&self) -> [u8; 176] {
        let mut out = [0u8; 176];
        out[..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..4].copy_from_slice(&self.dmin.to_le_bytes());
        out[4..16].copy_from_slice(&self.scales);
        out[16..48].copy_from_slice(&self.qh);
        out[48..].copy_from_slice(&self.qs);
        out
    }

    /// Reads a block from its GGML bytes.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ5_K::from_bytes(&[0u8; 176]);
    /// assert_eq!(b.dequantize(), [0.0; 256]);
    /// ```
    #[inline(always)]
    pub fn from_bytes(b: &[u8; 176]) -> Self {
        let mut scales = [0u8; 12];
        scales.copy_from_slice(&b[4..16]);
        let mut qh = [0u8; 32];
        qh.copy_from_slice(&b[16..48]);
        let mut qs = [0u8; 128];
        qs.copy_from_slice(&b[48..]);
        BlockQ5_K {
            d: f16::from_le_bytes([b[0], b[1]]),
            dmin: f16::from_le_bytes([b[2], b[3]]),
            scales,
            qh,
            qs,
        }
    }
}
