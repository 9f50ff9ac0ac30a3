//! Q3_K: 256 weights in 16 sub-blocks of 16, 3-bit codes, signed 6-bit sub-block scales.

use half::f16;

use crate::ggml::f16_bits::{f16_to_f32, f32_to_f16};

use super::q2_k::pack_2bit;
use super::search::make_q3_quants;
use super::{QK_K, nearest_int, sub16};

/// One Q3_K super-block: `x ≈ d * (sc[j] - 32) * (q - 4)` for sub-block `j`, 110 bytes.
///
/// ```
/// use modelopt_quantize::ggml::BlockQ3_K;
/// let x: [f32; 256] = std::array::from_fn(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0);
/// let b = BlockQ3_K::quantize(&x);
/// assert_eq!(BlockQ3_K::from_bytes(&b.to_bytes()), b);
/// let y = b.dequantize();
/// assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 0.25));
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ3_K {
    /// High bits of the codes: bit `b` of byte `m` belongs to element `32b + m`.
    pub hmask: [u8; 32],
    /// Low 2 bits of the codes, packed as in Q2_K.
    pub qs: [u8; 64],
    /// Sixteen 6-bit scales (stored `+ 32`), packed: low nibbles in bytes 0..8, high 2-bit
    /// pairs in bytes 8..12.
    pub scales: [u8; 12],
    /// Super-block scale.
    pub d: f16,
}

const _: () = assert!(std::mem::size_of::<BlockQ3_K>() == BlockQ3_K::TYPE_SIZE);

/// The 6-bit scale of sub-block `j`, `-32..=31`.
#[inline(always)]
pub(crate) fn scale_of(sc: &[u8; 12], j: usize) -> i32 {
    let low = if j < 8 { sc[j] & 0x0f } else { sc[j - 8] >> 4 };
    let high = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
    (low | (high << 4)) as i32 - 32
}

impl BlockQ3_K {
    /// The GGML type of this block.
    pub const TYPE: crate::ggml::GgmlType = crate::ggml::GgmlType::Q3_K;
    /// Weights per block.
    pub const BLOCK_SIZE: usize = QK_K;
    /// Bytes per block.
    pub const TYPE_SIZE: usize = 110;

    /// Quantizes 256 finite weights as `quantize_row_q3_K_ref` does (what `ggml_quantize_chunk`
    /// runs without an importance matrix): per 16-weight sub-block `make_q3_quants(16, 4, ...,
    /// do_rmse)`, the scales to signed 6 bits against the largest in magnitude. As for
    /// [`BlockQ4_K::quantize`], the codes are those of the scale search.
    ///
    /// [`BlockQ4_K::quantize`]: crate::ggml::BlockQ4_K::quantize
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ3_K::quantize(&[0.0; 256]);
    /// assert_eq!(b.d.to_f32(), 0.0);
    /// ```
    #[inline(always)]
    pub fn quantize(x: &[f32; QK_K]) -> Self {
        let mut l = [[0i8; 16]; 16];
        let mut scales = [0f32; 16];
        let mut max_scale = 0f32;
        let mut amax = 0f32;
        for j in 0..16 {
            scales[j] = make_q3_quants::<16>(4, sub16(x, j), &mut l[j]);
            let scale = scales[j].abs();
            if scale > amax {
                amax = scale;
                max_scale = scales[j];
            }
        }
        let mut sc = [0u8; 12];
        let d = if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for j in 0..16 {
                // C: `int8_t l = nearest_int(..)` keeps the low 8 bits, then clamps.
                let v = (nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) + 32;
                let v = v as u8;
                if j < 8 {
                    sc[j] = v & 0x0f;
                } else {
                    sc[j - 8] |= (v & 0x0f) << 4;
                }
                sc[j % 4 + 8] |= (v >> 4) << (2 * (j / 4));
            }
            f32_to_f16(1.0 / iscale)
        } else {
            f32_to_f16(0.0)
        };
        Self::from_codes(&l, sc, d)
    }

    /// The block of the codes `l` (`0..8`, per 16-weight sub-block), packed scales `sc` and `d`.
    #[inline(always)]
    pub(crate) fn from_codes(l: &[[i8; 16]; 16], sc: [u8; 12], d: f16) -> Self {
        let mut hmask = [0u8; 32];
        let mut low = [0u8; QK_K];
        for j in 0..QK_K {
            let v = l[j / 16][j % 16] as u8;
            if v > 3 {
                hmask[j % 32] |= 1 << (j / 32);
            }
            low[j] = v & 3;
        }
        BlockQ3_K {
            hmask,
            qs: pack_2bit(&low),
            scales: sc,
            d,
        }
    }

    /// The 256 reconstructed weights (`dequantize_row_q3_K`).
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ3_K::quantize(&[-0.25; 256]);
    /// assert!(b.dequantize().iter().all(|v| (v + 0.25).abs() < 1e-3));
    /// ```
    #[inline(always)]
    pub fn dequantize(&self) -> [f32; QK_K] {
        let d_all = f16_to_f32(self.d);
        let mut y = [0f32; QK_K];
        for h in 0..2 {
            for s in 0..4 {
                let bit = 4 * h + s;
                for half in 0..2 {
                    let dl = d_all * scale_of(&self.scales, 8 * h + 2 * s + half) as f32;
                    for k in 0..16 {
                        let m = 16 * half + k;
                        let q = ((self.qs[32 * h + m] >> (2 * s)) & 3) as i32;
                        let hi = if self.hmask[m] & (1 << bit) != 0 {
                            0
                        } else {
                            4
                        };
                        y[128 * h + 32 * s + m] = dl * (q - hi) as f32;
                    }
                }
            }
        }
        y
    }

    /// The block as GGML stores it (little-endian).
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ3_K::quantize(&[1.0; 256]);
    /// assert_eq!(b.to_bytes().len(), 110);
    /// ```
    #[inline(always)]
    pub fn to_bytes(&self) -> [u8; 110] {
        let mut out = [0u8; 110];
        out[..32].copy_from_slice(&self.hmask);
        out[32..96].copy_from_slice(&self.qs);
        out[96..108].copy_from_slice(&self.scales);
        out[108..].copy_from_slice(&self.d.to_le_bytes());
        out
    }

    /// Reads a block from its GGML bytes.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ3_K::from_bytes(&[0u8; 110]);
    /// assert_eq!(b.dequantize(), [0.0; 256]);
    /// ```
    #[inline(always)]
    pub fn from_bytes(b: &[u8; 110]) -> Self {
        let mut hmask = [0u8; 32];
        hmask.copy_from_slice(&b[..32]);
        let mut qs = [0u8; 64];
        qs.copy_from_slice(&b[32..96]);
        let mut scales = [0u8; 12];
        scales.copy_from_slice(&b[96..108]);
        BlockQ3_K {
            hmask,
            qs,
            scales,
            d: f16::from_le_bytes([b[108], b[109]]),
        }
    }
}
