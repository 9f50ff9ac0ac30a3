//! Q2_K: 256 weights in 16 sub-blocks of 16, 2-bit codes, 4-bit sub-block scales and mins.

use half::f16;

use crate::ggml::f16_bits::{f16_to_f32, f32_to_f16};

use super::search::make_qkx2_quants_lanes;
use super::{QK_K, nearest_int};

/// One Q2_K super-block: `x ≈ d * (sc[j] & 15) * q - dmin * (sc[j] >> 4)` for sub-block `j`,
/// 84 bytes.
///
/// ```
/// use modelopt_quantize::ggml::BlockQ2_K;
/// let x: [f32; 256] = std::array::from_fn(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0);
/// let b = BlockQ2_K::quantize(&x);
/// assert_eq!(BlockQ2_K::from_bytes(&b.to_bytes()), b);
/// let y = b.dequantize();
/// assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 0.5));
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ2_K {
    /// Sub-block scales (low nibble) and mins (high nibble).
    pub scales: [u8; 16],
    /// 2-bit codes: bits `2s..2s+2` of byte `32h + l` hold element `128h + 32s + l`.
    pub qs: [u8; 64],
    /// Super-block scale of the sub-block scales.
    pub d: f16,
    /// Super-block scale of the sub-block mins.
    pub dmin: f16,
}

const _: () = assert!(std::mem::size_of::<BlockQ2_K>() == BlockQ2_K::TYPE_SIZE);

/// Packs 256 2-bit codes as Q2_K and Q3_K store them (`qs[32h + l]`, 4 codes a byte).
#[inline(always)]
pub(crate) fn pack_2bit(l: &[u8; QK_K]) -> [u8; 64] {
    let mut qs = [0u8; 64];
    for h in 0..2 {
        let j = 128 * h;
        for k in 0..32 {
            qs[32 * h + k] = (l[j + k] & 3)
                | ((l[j + k + 32] & 3) << 2)
                | ((l[j + k + 64] & 3) << 4)
                | ((l[j + k + 96] & 3) << 6);
        }
    }
    qs
}

impl BlockQ2_K {
    /// The GGML type of this block.
    pub const TYPE: crate::ggml::GgmlType = crate::ggml::GgmlType::Q2_K;
    /// Weights per block.
    pub const BLOCK_SIZE: usize = QK_K;
    /// Bytes per block.
    pub const TYPE_SIZE: usize = 84;

    /// Quantizes 256 finite weights as `quantize_row_q2_K_ref` does (what `ggml_quantize_chunk`
    /// runs without an importance matrix): per 16-weight sub-block `make_qkx2_quants(16, 3, ...,
    /// -0.5, 0.1, 15, use_mad)` with weights `|x|`, scales and mins to 4 bits against the
    /// largest. As for [`BlockQ4_K::quantize`], the codes are those of the scale search.
    ///
    /// [`BlockQ4_K::quantize`]: crate::ggml::BlockQ4_K::quantize
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ2_K::quantize(&[0.0; 256]);
    /// assert_eq!(b.to_bytes(), [0u8; 84]);
    /// ```
    #[inline(always)]
    pub fn quantize(x: &[f32; QK_K]) -> Self {
        Self::quantize_impl::<false>(x)
    }

    /// [`BlockQ2_K::quantize`] with the AVX2 scale search.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(crate) unsafe fn quantize_avx2(x: &[f32; QK_K]) -> Self {
        Self::quantize_impl::<true>(x)
    }

    /// `AVX2 = true` only through [`BlockQ2_K::quantize_avx2`], whose caller checked the CPU.
    #[inline(always)]
    fn quantize_impl<const AVX2: bool>(x: &[f32; QK_K]) -> Self {
        // Two groups of 8 sub-blocks; sub-block 8h + j in lane j of group h.
        let mut scales = [0f32; 16];
        let mut mins = [0f32; 16];
        let mut l = [0u8; QK_K];
        for h in 0..2 {
            let mut xt = [[0f32; 8]; 16];
            let mut wt = [[0f32; 8]; 16];
            for j in 0..8 {
                for i in 0..16 {
                    let v = x[16 * (8 * h + j) + i];
                    xt[i][j] = v;
                    wt[i][j] = v.abs();
                }
            }
            let mut lt = [[0f32; 8]; 16];
            #[cfg(target_arch = "x86_64")]
            let (s, m) = if AVX2 {
                // SAFETY: `AVX2` is only true when called through `quantize_avx2`.
                unsafe {
                    super::search_avx2::make_qkx2_quants_x8::<16>(
                        3, &xt, &wt, &mut lt, -0.5, 0.1, 15, true,
                    )
                }
            } else {
                make_qkx2_quants_lanes::<16, 8>(3, &xt, &wt, &mut lt, -0.5, 0.1, 15, true)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let (s, m) = make_qkx2_quants_lanes::<16, 8>(3, &xt, &wt, &mut lt, -0.5, 0.1, 15, true);
            scales[8 * h..8 * h + 8].copy_from_slice(&s);
            mins[8 * h..8 * h + 8].copy_from_slice(&m);
            for j in 0..8 {
                for i in 0..16 {
                    l[16 * (8 * h + j) + i] = lt[i][j] as u8;
                }
            }
        }
        Self::from_search(&scales, &mins, &l)
    }

    /// Four blocks through the AVX-512 scale search (one register of 16 sub-blocks a block).
    ///
    /// # Safety
    /// The CPU must support AVX-512F and AVX-512DQ.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(crate) unsafe fn quantize4_avx512(xs: &[[f32; QK_K]; 4]) -> [Self; 4] {
        let mut xt = [[[0f32; 16]; 16]; 4];
        let mut wt = [[[0f32; 16]; 16]; 4];
        for (b, x) in xs.iter().enumerate() {
            for j in 0..16 {
                for i in 0..16 {
                    let v = x[16 * j + i];
                    xt[b][i][j] = v;
                    wt[b][i][j] = v.abs();
                }
            }
        }
        let mut lt = [[[0f32; 16]; 16]; 4];
        // SAFETY: the caller checked the CPU.
        let (s, m) = unsafe {
            super::search_avx512::make_qkx2_quants_x16::<16, 4>(
                3, &xt, &wt, &mut lt, -0.5, 0.1, 15, true,
            )
        };
        std::array::from_fn(|b| {
            let l: [u8; QK_K] = std::array::from_fn(|k| lt[b][k % 16][k / 16] as u8);
            Self::from_search(&s[b], &m[b], &l)
        })
    }

    /// The block from the per-sub-block scales, mins and codes of the search.
    #[inline(always)]
    fn from_search(scales: &[f32; 16], mins: &[f32; 16], l: &[u8; QK_K]) -> Self {
        let mut max_scale = 0f32;
        let mut max_min = 0f32;
        for j in 0..16 {
            if scales[j] > max_scale {
                max_scale = scales[j];
            }
            if mins[j] > max_min {
                max_min = mins[j];
            }
        }
        let mut sc = [0u8; 16];
        let d = if max_scale > 0.0 {
            let iscale = 15.0 / max_scale;
            for j in 0..16 {
                // C assigns the int to a uint8_t: keep the low 8 bits.
                sc[j] = nearest_int(iscale * scales[j]) as u8;
            }
            f32_to_f16(max_scale / 15.0)
        } else {
            f32_to_f16(0.0)
        };
        let dmin = if max_min > 0.0 {
            let iscale = 15.0 / max_min;
            for j in 0..16 {
                sc[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
            }
            f32_to_f16(max_min / 15.0)
        } else {
            f32_to_f16(0.0)
        };
        BlockQ2_K {
            scales: sc,
            qs: pack_2bit(l),
            d,
            dmin,
        }
    }

    /// The 256 reconstructed weights (`dequantize_row_q2_K`).
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ2_K::quantize(&[0.5; 256]);
    /// assert!(b.dequantize().iter().all(|v| (v - 0.5).abs() < 1e-2));
    /// ```
    #[inline(always)]
    pub fn dequantize(&self) -> [f32; QK_K] {
        let d = f16_to_f32(self.d);
        let min = f16_to_f32(self.dmin);
        let mut y = [0f32; QK_K];
        for h in 0..2 {
            for s in 0..4 {
                for half in 0..2 {
                    let sc = self.scales[8 * h + 2 * s + half];
                    let dl = d * (sc & 0x0f) as f32;
                    let ml = min * (sc >> 4) as f32;
                    for k in 0..16 {
                        let q = (self.qs[32 * h + 16 * half + k] >> (2 * s)) & 3;
                        y[128 * h + 32 * s + 16 * half + k] = dl * q as f32 - ml;
                    }
                }
            }
        }
        y
    }

    /// The block as GGML stores it (little-endian).
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ2_K::quantize(&[1.0; 256]);
    /// assert_eq!(b.to_bytes().len(), 84);
    /// ```
    #[inline(always)]
    pub fn to_bytes(&self) -> [u8; 84] {
        let mut out = [0u8; 84];
        out[..16].copy_from_slice(&self.scales);
        out[16..80].copy_from_slice(&self.qs);
        out[80..82].copy_from_slice(&self.d.to_le_bytes());
        out[82..].copy_from_slice(&self.dmin.to_le_bytes());
        out
    }

    /// Reads a block from its GGML bytes.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ2_K::from_bytes(&[0u8; 84]);
    /// assert_eq!(b.dequantize(), [0.0; 256]);
    /// ```
    #[inline(always)]
    pub fn from_bytes(b: &[u8; 84]) -> Self {
        let mut scales = [0u8; 16];
        scales.copy_from_slice(&b[..16]);
        let mut qs = [0u8; 64];
        qs.copy_from_slice(&b[16..80]);
        BlockQ2_K {
            scales,
            qs,
            d: f16::from_le_bytes([b[80], b[81]]),
            dmin: f16::from_le_bytes([b[82], b[83]]),
        }
    }
}
