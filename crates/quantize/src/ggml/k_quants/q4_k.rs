//! Q4_K: 256 weights in 8 sub-blocks of 32, 4-bit codes, 6-bit sub-block scales and mins.

use half::f16;

use crate::ggml::f16_bits::{f16_to_f32, f32_to_f16};

use super::search::make_qkx2_quants_lanes;
use super::{QK_K, get_scale_min_k4, nearest_int, pack_scale_min_k4};

/// One Q4_K super-block: `x ≈ d * sc[j] * q - dmin * m[j]` for sub-block `j`, 144 bytes.
///
/// ```
/// use modelopt_quantize::ggml::BlockQ4_K;
/// let x: [f32; 256] = std::array::from_fn(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0);
/// let b = BlockQ4_K::quantize(&x);
/// assert_eq!(BlockQ4_K::from_bytes(&b.to_bytes()), b);
/// let y = b.dequantize();
/// assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 0.1));
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4_K {
    /// Super-block scale of the sub-block scales.
    pub d: f16,
    /// Super-block scale of the sub-block mins.
    pub dmin: f16,
    /// Eight 6-bit scales and eight 6-bit mins, packed (`get_scale_min_k4`).
    pub scales: [u8; 12],
    /// 4-bit codes: byte `l` of each 32-byte group holds element `l` (low nibble) and `l + 32`
    /// (high nibble) of a 64-weight span.
    pub qs: [u8; 128],
}

const _: () = assert!(std::mem::size_of::<BlockQ4_K>() == BlockQ4_K::TYPE_SIZE);

impl BlockQ4_K {
    /// The GGML type of this block.
    pub const TYPE: crate::ggml::GgmlType = crate::ggml::GgmlType::Q4_K;
    /// Weights per block.
    pub const BLOCK_SIZE: usize = QK_K;
    /// Bytes per block.
    pub const TYPE_SIZE: usize = 144;

    /// Quantizes 256 finite weights as `quantize_row_q4_K_ref` (what `ggml_quantize_chunk` runs
    /// without an importance matrix) does: per sub-block `make_qkx2_quants(32, 15, ...)` with
    /// weights `sqrt(mean(x^2)) + |x|`, scales and mins to 6 bits against the largest.
    ///
    /// The codes are those of the scale search. llama.cpp's source has a last pass that
    /// re-derives every code from the stored f16 `d`, `dmin` and 6-bit scales
    /// (`nearest_int((x + dm) / d)`, skipped where `d` is zero); the reference bytes (llama.cpp
    /// c392e509 via `ggml_quantize_chunk`) do not show it: on 810 of their 2048 sub-blocks that
    /// pass would give other codes, while the search codes match every row. The same holds for
    /// the other K-quants (see the [`ggml`](crate::ggml) module docs).
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ4_K::quantize(&[0.0; 256]);
    /// assert_eq!(b.qs, [0; 128]);
    /// ```
    #[inline(always)]
    pub fn quantize(x: &[f32; QK_K]) -> Self {
        Self::quantize_impl::<false>(x)
    }

    /// [`BlockQ4_K::quantize`] with the AVX2 scale search.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(crate) unsafe fn quantize_avx2(x: &[f32; QK_K]) -> Self {
        Self::quantize_impl::<true>(x)
    }

    /// `AVX2 = true` only through [`BlockQ4_K::quantize_avx2`], whose caller checked the CPU.
    #[inline(always)]
    fn quantize_impl<const AVX2: bool>(x: &[f32; QK_K]) -> Self {
        Self::from_search(search_8x32::<AVX2>(x, 15, -1.0, 20))
    }

    /// Four blocks through the AVX-512 scale search.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and AVX-512DQ.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(crate) unsafe fn quantize4_avx512(xs: &[[f32; QK_K]; 4]) -> [Self; 4] {
        // SAFETY: the caller checked the CPU.
        unsafe { search_8x32_x4(xs, 15, -1.0, 20) }.map(Self::from_search)
    }

    #[inline(always)]
    pub(crate) fn from_search((l, packed, d, dmin): Search8x32) -> Self {
        let mut qs = [0u8; 128];
        for g in 0..4 {
            for k in 0..32 {
                qs[32 * g + k] = l[2 * g][k] | (l[2 * g + 1][k] << 4);
            }
        }
        BlockQ4_K {
            d,
            dmin,
            scales: packed,
            qs,
        }
    }

    /// The 256 reconstructed weights (`dequantize_row_q4_K`).
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ4_K::quantize(&[0.5; 256]);
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
                y[64 * g + k] = d1 * (q & 0x0f) as f32 - m1;
                y[64 * g + 32 + k] = d2 * (q >> 4) as f32 - m2;
            }
        }
        y
    }

    /// The block as GGML stores it (little-endian).
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ4_K::quantize(&[0.0; 256]);
    /// assert_eq!(b.to_bytes().len(), 144);
    /// ```
    #[inline(always)]
    pub fn to_bytes(&self) -> [u8; 144] {
        let mut out = [0u8; 144];
        out[..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..4].copy_from_slice(&self.dmin.to_le_bytes());
        out[4..16].copy_from_slice(&self.scales);
        out[16..].copy_from_slice(&self.qs);
        out
    }

    /// Reads a block from its GGML bytes.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ4_K::from_bytes(&[0u8; 144]);
    /// assert_eq!(b.dequantize(), [0.0; 256]);
    /// ```
    #[inline(always)]
    pub fn from_bytes(b: &[u8; 144]) -> Self {
        let mut scales = [0u8; 12];
        scales.copy_from_slice(&b[4..16]);
        let mut qs = [0u8; 128];
        qs.copy_from_slice(&b[16..]);
        BlockQ4_K {
            d: f16::from_le_bytes([b[0], b[1]]),
            dmin: f16::from_le_bytes([b[2], b[3]]),
            scales,
            qs,
        }
    }
}

/// What the Q4_K / Q5_K scale search gives: codes per sub-block, packed 6-bit scales and mins,
/// `d`, `dmin`.
pub(crate) type Search8x32 = ([[u8; 32]; 8], [u8; 12], f16, f16);

/// The scale search shared by Q4_K and Q5_K (`quantize_row_q4_K_ref` / `q5_K_ref` up to the
/// packing of the codes): per 32-weight sub-block `make_qkx2_quants(32, nmax, ..., rmin, 0.1,
/// nstep, false)` with weights `sqrt(mean(x^2)) + |x|`, then the scales and mins to 6 bits
/// against the largest. Returns the codes per sub-block, the packed scales, `d` and `dmin`.
///
/// `AVX2 = true` only from a caller that checked the CPU.
#[inline(always)]
pub(super) fn search_8x32<const AVX2: bool>(
    x: &[f32; QK_K],
    nmax: i32,
    rmin: f32,
    nstep: usize,
) -> Search8x32 {
    let (xt, wt) = prepare_8x32(x);
    let mut lt = [[0f32; 8]; 32];
    #[cfg(target_arch = "x86_64")]
    let (scales, mins) = if AVX2 {
        // SAFETY: `AVX2` is only true when the caller checked the CPU.
        unsafe {
            super::search_avx2::make_qkx2_quants_x8::<32>(
                nmax, &xt, &wt, &mut lt, rmin, 0.1, nstep, false,
            )
        }
    } else {
        make_qkx2_quants_lanes::<32, 8>(nmax, &xt, &wt, &mut lt, rmin, 0.1, nstep, false)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let (scales, mins) =
        make_qkx2_quants_lanes::<32, 8>(nmax, &xt, &wt, &mut lt, rmin, 0.1, nstep, false);
    finish_8x32(&scales, &mins, &lt)
}

/// [`search_8x32`] for four super-blocks at once through the AVX-512 search (two super-blocks
/// per register, two registers interleaved).
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512DQ.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn search_8x32_x4(
    xs: &[[f32; QK_K]; 4],
    nmax: i32,
    rmin: f32,
    nstep: usize,
) -> [Search8x32; 4] {
    // SAFETY (all three calls): the caller checked the CPU.
    let (xt, wt) = unsafe { super::search_avx512::transpose_8x32_x4(xs) };
    let mut lt = [[[0f32; 16]; 32]; 2];
    let (s, m) = unsafe {
        super::search_avx512::make_qkx2_quants_x16::<32, 2>(
            nmax, &xt, &wt, &mut lt, rmin, 0.1, nstep, false,
        )
    };
    let codes = unsafe { super::search_avx512::codes_8x32_x4(&lt) };
    std::array::from_fn(|b| {
        let (g, off) = (b / 2, (b % 2) * 8);
        let scales: [f32; 8] = std::array::from_fn(|j| s[g][off + j]);
        let mins: [f32; 8] = std::array::from_fn(|j| m[g][off + j]);
        finish_scales(&scales, &mins, codes[b])
    })
}

/// The sub-blocks side by side (element `i` of sub-block `j` at `[i][j]`) and their weights
/// `sqrt(mean(x^2)) + |x|`.
#[inline(always)]
fn prepare_8x32(x: &[f32; QK_K]) -> ([[f32; 8]; 32], [[f32; 8]; 32]) {
    let mut xt = [[0f32; 8]; 32];
    for (j, xs) in x.as_chunks::<32>().0.iter().enumerate() {
        for i in 0..32 {
            xt[i][j] = xs[i];
        }
    }
    let mut sum_x2 = [0f32; 8];
    for row in &xt {
        for j in 0..8 {
            sum_x2[j] += row[j] * row[j];
        }
    }
    let mut av_x = [0f32; 8];
    for j in 0..8 {
        av_x[j] = (sum_x2[j] / 32.0).sqrt();
    }
    let mut wt = [[0f32; 8]; 32];
    for i in 0..32 {
        for j in 0..8 {
            wt[i][j] = av_x[j] + xt[i][j].abs();
        }
    }
    (xt, wt)
}

/// The codes per sub-block, and the scales and mins to 6 bits against the largest.
#[inline(always)]
fn finish_8x32(scales: &[f32; 8], mins: &[f32; 8], lt: &[[f32; 8]; 32]) -> Search8x32 {
    let mut l = [[0u8; 32]; 8];
    for i in 0..32 {
        for j in 0..8 {
            l[j][i] = lt[i][j] as u8;
        }
    }
    finish_scales(scales, mins, l)
}

/// The scales and mins to 6 bits against the largest, with the codes `l` per sub-block.
#[inline(always)]
fn finish_scales(scales: &[f32; 8], mins: &[f32; 8], l: [[u8; 32]; 8]) -> Search8x32 {
    let mut max_scale = 0f32;
    let mut max_min = 0f32;
    for j in 0..8 {
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for j in 0..8 {
        // C stores nearest_int into a uint8_t (wrapping) before MIN(63, .).
        ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
    }
    let packed = pack_scale_min_k4(&ls, &lm);
    let d = f32_to_f16(max_scale / 63.0);
    let dmin = f32_to_f16(max_min / 63.0);
    (l, packed, d, dmin)
}
