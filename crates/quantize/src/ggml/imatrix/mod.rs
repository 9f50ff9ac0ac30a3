//! Importance-weighted quantization: llama.cpp's `quantize_*` with `quant_weights`, what
//! `llama-quantize --imatrix` runs.
//!
//! An importance matrix gives each input column of a weight matrix a weight (the mean squared
//! activation that column multiplies, from `llama-imatrix`); the quantizers then minimise the
//! error weighted by it, so that columns that meet large activations are rounded more carefully.
//! [`quantize_row_imatrix`] and [`quantize_rows_imatrix`] take one weight per column of the row
//! (the same weights for every row of the matrix) and reproduce llama.cpp's bytes (c392e509,
//! `ggml_quantize_chunk` with an imatrix):
//!
//! | type | llama.cpp kernel | search |
//! | --- | --- | --- |
//! | Q4_0, Q5_0 | `quantize_row_q4_0_impl`, `q5_0_impl` | `make_qx_quants` with weights `qw * sqrt(sigma2 + x^2)` |
//! | Q4_1, Q5_1 | `quantize_row_q4_1_impl`, `q5_1_impl` | `make_qkx3_quants`, same weights |
//! | Q2_K | `quantize_row_q2_K_impl` | `make_qkx3_quants` per 16, `make_qp_quants` for scales and mins |
//! | Q3_K | `quantize_row_q3_K_impl` | `make_qx_quants` per 16 and for the scales |
//! | Q4_K, Q5_K | `quantize_row_q4_K_impl`, `q5_K_impl` | `make_qkx3_quants` per 32, `make_qp_quants` |
//! | Q6_K | `quantize_row_q6_K_impl` | `make_qx_quants` with the raw importance |
//!
//! `sigma2` is the row's mean square (Q4_0..Q5_1), the super-block's (Q2_K) or twice the
//! super-block's (Q3_K, Q4_K, Q5_K). As for the unweighted K-quants (see the module docs of
//! [`ggml`](super)), the K-quant codes are those of the scale search: llama.cpp c392e509's bytes
//! hold them, not the codes its final loop would recompute from the stored scales (that loop
//! would change the codes of 58 or 59 of the 64 reference rows of every K type). Its
//! `make_qp_quants` also tests `!max` rather than `max < GROUP_MAX_EPS` and divides unguarded:
//! a super-block whose squares underflow (all weights 0) gets a NaN scale there, and here.
//! Types whose llama.cpp quantizer
//! ignores importance (Q8_0, F32, F16, BF16) give the bytes of [`quantize_row`]; see
//! [`GgmlType::uses_importance`].
//!
//! [`quantize_row`]: super::quantize_row
//!
//! ```
//! use modelopt_quantize::ggml::{self, GgmlType};
//! let w: Vec<f32> = (0..256).map(|i| ((i * 37 % 101) as f32 - 50.0) / 64.0).collect();
//! let mut importance = vec![1.0f32; 256];
//! importance[..32].fill(100.0); // the first 32 columns meet large activations
//! let mut q = vec![0u8; GgmlType::Q4_K.row_bytes(256)?];
//! ggml::quantize_row_imatrix(GgmlType::Q4_K, &w, &importance, &mut q)?;
//! let y = ggml::dequantize(GgmlType::Q4_K, &q, 256)?;
//! let err = |r: std::ops::Range<usize>| r.map(|i| (w[i] - y[i]).powi(2)).sum::<f32>();
//! assert!(err(0..32) / 32.0 < err(32..256) / 224.0);
//! # Ok::<(), modelopt_quantize::QuantError>(())
//! ```

mod legacy;
mod q2_k;
mod q3_k;
mod q45_k;
mod q6_k;
mod qp;

use std::sync::Mutex;

use modelopt_tensor_core::{CoreError, Par};

use super::GgmlType;
use super::rows::{Isa, check_supported, encode_with, length_error};
use super::simd::{all_finite, first_non_finite};
use crate::{QuantError, Result};

impl GgmlType {
    /// Whether llama.cpp's quantizer for this type uses an importance matrix: true for Q4_0,
    /// Q4_1, Q5_0, Q5_1, Q2_K..Q6_K, IQ4_NL and IQ4_XS; Q8_0 and the float types ignore it.
    ///
    /// ```
    /// use modelopt_quantize::ggml::GgmlType;
    /// assert!(GgmlType::Q4_K.uses_importance());
    /// assert!(!GgmlType::Q8_0.uses_importance());
    /// ```
    pub fn uses_importance(self) -> bool {
        matches!(
            self,
            GgmlType::Q4_0
                | GgmlType::Q4_1
                | GgmlType::Q5_0
                | GgmlType::Q5_1
                | GgmlType::Q2_K
                | GgmlType::Q3_K
                | GgmlType::Q4_K
                | GgmlType::Q5_K
                | GgmlType::Q6_K
                | GgmlType::IQ4_NL
                | GgmlType::IQ4_XS
        )
    }
}

/// The weighted row kernels: `x` (whole blocks, all finite), `qw` (same length, checked),
/// `out` (exactly the row's bytes). Types whose quantizer uses importance (see
/// [`GgmlType::uses_importance`]) add one arm here. `AVX2` / `AVX512` are true only from
/// [`encode_row_avx2`] / [`encode_row_avx512`].
#[inline(always)]
fn run_kernel<const AVX2: bool, const AVX512: bool>(
    ty: GgmlType,
    x: &[f32],
    qw: &[f32],
    out: &mut [u8],
) {
    match ty {
        GgmlType::Q4_0 => legacy::quantize_row_q4_0(x, qw, out),
        GgmlType::Q4_1 => legacy::quantize_row_q4_1::<AVX2>(x, qw, out),
        GgmlType::Q5_0 => legacy::quantize_row_q5_0(x, qw, out),
        GgmlType::Q5_1 => legacy::quantize_row_q5_1::<AVX2>(x, qw, out),
        GgmlType::Q2_K => q2_k::quantize_row_q2_k::<AVX2>(x, qw, out),
        GgmlType::Q3_K => q3_k::quantize_row_q3_k(x, qw, out),
        GgmlType::Q4_K => q45_k::quantize_row_q4_k::<AVX2, AVX512>(x, qw, out),
        GgmlType::Q5_K => q45_k::quantize_row_q5_k::<AVX2, AVX512>(x, qw, out),
        GgmlType::Q6_K => q6_k::quantize_row_q6_k(x, qw, out),
        // Not reached: `encode_row` sends the others to the unweighted kernels.
        _ => {}
    }
}

/// The kernels compiled with AVX2 enabled: the same plain Rust (so the same bytes; no FMA)
/// plus the AVX2 `make_qkx3_quants` search, tested equal to the portable one.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
fn encode_row_avx2(ty: GgmlType, x: &[f32], qw: &[f32], out: &mut [u8]) {
    run_kernel::<true, false>(ty, x, qw, out)
}

/// As [`encode_row_avx2`], with Q4_K and Q5_K searching four super-blocks at a time through
/// the AVX-512 `make_qkx3_quants` (tested equal to the portable one).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq")]
fn encode_row_avx512(ty: GgmlType, x: &[f32], qw: &[f32], out: &mut [u8]) {
    run_kernel::<true, true>(ty, x, qw, out)
}

/// Quantizes one row (lengths checked); `Err(i)`: element `i` is not finite.
fn encode_row(isa: Isa, ty: GgmlType, x: &[f32], qw: &[f32], out: &mut [u8]) -> Result<(), usize> {
    if !ty.uses_importance() {
        return encode_with(isa, ty, x, out);
    }
    if matches!(ty, GgmlType::IQ4_NL | GgmlType::IQ4_XS) {
        return super::rows::encode_iq4(super::iq4::detect(), ty, x, Some(qw), out);
    }
    if !all_finite(x) {
        return Err(first_non_finite(x).unwrap_or(0));
    }
    match isa {
        Isa::Baseline => run_kernel::<false, false>(ty, x, qw, out),
        // SAFETY: `Isa::Avx2` comes from `Isa::detect`, which checked AVX2 and F16C.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { encode_row_avx2(ty, x, qw, out) },
        // SAFETY: `Isa::Avx512` comes from `Isa::detect`, which checked AVX2, F16C and
        // AVX-512F/BW/DQ.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { encode_row_avx512(ty, x, qw, out) },
    }
    Ok(())
}

/// `make_qkx3_quants(N, nmax, ..., -0.9, 0.05, 36, false)` (every weighted search with a min)
/// on 8 lanes: through the AVX2 kernel when `AVX2`, else the portable one.
#[inline(always)]
fn qkx3_x8<const N: usize, const AVX2: bool>(
    nmax: i32,
    xt: &[[f32; 8]; N],
    wt: &[[f32; 8]; N],
    lt: &mut [[f32; 8]; N],
) -> ([f32; 8], [f32; 8]) {
    #[cfg(target_arch = "x86_64")]
    if AVX2 {
        // SAFETY: `AVX2` is only true inside `encode_row_avx2`, after the CPU check.
        return unsafe {
            super::k_quants::search_avx2::make_qkx3_quants_x8::<N>(
                nmax, xt, wt, lt, -0.9, 0.05, 36, false,
            )
        };
    }
    super::k_quants::search::make_qkx3_quants_lanes::<N, 8>(nmax, xt, wt, lt, -0.9, 0.05, 36, false)
}

/// Checks the importance weights against the row length: one finite, non-negative weight per
/// column.
fn check_importance(importance: &[f32], row_len: usize) -> Result<()> {
    if importance.len() != row_len {
        return Err(length_error(
            "importance weights (one per column)",
            row_len,
            importance.len(),
            "elements",
        ));
    }
    if let Some((i, v)) = importance
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
    {
        return Err(CoreError::invalid(
            "importance",
            format!("weight {i} (column {i}) is {v}; weights must be finite and >= 0"),
        )
        .into());
    }
    Ok(())
}

fn non_finite(src: &[f32], index: usize) -> QuantError {
    CoreError::NonFinite {
        index,
        position: vec![index],
        value: src.get(index).map_or(f64::NAN, |v| *v as f64),
    }
    .into()
}

/// Quantizes the row `src` into `dst` (exactly `ty.row_bytes(src.len())` bytes) minimising the
/// error weighted by `importance` (one weight per element of the row), bit-exact with
/// llama.cpp's `ggml_quantize_chunk(ty, src, dst, 0, 1, n, importance)`.
///
/// Errors: a length that does not fit, a type not implemented, an importance of the wrong
/// length or with a NaN, infinite or negative weight, or a NaN/±Inf in `src` (the error names
/// its index; `dst` may then be partly written).
///
/// ```
/// use modelopt_quantize::ggml::{quantize_row_imatrix, GgmlType};
/// let src: Vec<f32> = (0..32).map(|i| i as f32 / 8.0 - 2.0).collect();
/// let mut dst = [0u8; 18];
/// quantize_row_imatrix(GgmlType::Q4_0, &src, &[1.0; 32], &mut dst)?;
/// assert!(quantize_row_imatrix(GgmlType::Q4_0, &src, &[1.0; 16], &mut dst).is_err());
/// assert!(quantize_row_imatrix(GgmlType::Q4_0, &src, &[f32::NAN; 32], &mut dst).is_err());
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
pub fn quantize_row_imatrix(
    ty: GgmlType,
    src: &[f32],
    importance: &[f32],
    dst: &mut [u8],
) -> Result<()> {
    check_supported(ty)?;
    let bytes = ty.row_bytes(src.len())?;
    if dst.len() != bytes {
        return Err(length_error("quantized row", bytes, dst.len(), "bytes"));
    }
    check_importance(importance, src.len())?;
    encode_row(Isa::detect(), ty, src, importance, dst).map_err(|i| non_finite(src, i))
}

/// Rows handed to one task (~256 K weights, as for the unweighted rows).
fn rows_per_task(row_len: usize) -> usize {
    (262_144 / row_len.max(1)).max(1)
}

/// Quantizes a row-major matrix of rows of `row_len` weights with the same per-column
/// `importance` for every row (`importance.len() == row_len`), the rows split over the threads
/// `par` allows. Same checks and bytes as [`quantize_row_imatrix`] on each row; on several
/// non-finite values the error names the first (by flat index).
///
/// ```
/// use modelopt_quantize::ggml::{quantize_rows_imatrix, GgmlType, Par};
/// let src: Vec<f32> = (0..2 * 256).map(|i| ((i * 7 % 19) as f32 - 9.0) / 10.0).collect();
/// let importance: Vec<f32> = (0..256).map(|i| 1.0 + (i % 4) as f32).collect();
/// let mut dst = vec![0u8; 2 * 144];
/// quantize_rows_imatrix(GgmlType::Q4_K, &src, 256, &importance, &mut dst, Par::Seq)?;
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
pub fn quantize_rows_imatrix(
    ty: GgmlType,
    src: &[f32],
    row_len: usize,
    importance: &[f32],
    dst: &mut [u8],
    par: Par,
) -> Result<()> {
    check_supported(ty)?;
    if row_len == 0 {
        return Err(CoreError::invalid("row_len", "must be at least 1").into());
    }
    if !src.len().is_multiple_of(row_len) {
        return Err(CoreError::invalid(
            "row_len",
            format!(
                "{} weights are not a whole number of rows of {row_len}",
                src.len()
            ),
        )
        .into());
    }
    let row_bytes = ty.row_bytes(row_len)?;
    let expected = src.len() / row_len * row_bytes;
    if dst.len() != expected {
        return Err(length_error("quantized rows", expected, dst.len(), "bytes"));
    }
    check_importance(importance, row_len)?;
    if src.is_empty() {
        return Ok(());
    }
    let isa = Isa::detect();
    let per_task = rows_per_task(row_len);
    let first_bad: Mutex<Option<usize>> = Mutex::new(None);
    par.for_each_chunk_mut(dst, per_task * row_bytes, |t, out| {
        let start = t * per_task * row_len;
        for (r, o) in out.chunks_exact_mut(row_bytes).enumerate() {
            let at = start + r * row_len;
            if let Err(i) = encode_row(isa, ty, &src[at..at + row_len], importance, o) {
                // A poisoned lock only means another task panicked; the value is still usable.
                let mut bad = first_bad.lock().unwrap_or_else(|e| e.into_inner());
                let i = at + i;
                *bad = Some(bad.map_or(i, |b| b.min(i)));
                return;
            }
        }
    });
    match first_bad.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(i) => Err(non_finite(src, i)),
        None => Ok(()),
    }
}

/// `sum(x^2)`, summed left to right as llama.cpp does (its `sigma2` is this over `n`, or twice
/// this over `QK_K`).
#[inline(always)]
fn sum_squares(x: &[f32]) -> f32 {
    let mut s = 0f32;
    for &v in x {
        s += v * v;
    }
    s
}

/// llama.cpp's per-element weights `qw * sqrt(sigma2 + x^2)`.
#[inline(always)]
fn weights<const N: usize>(x: &[f32; N], qw: &[f32; N], sigma2: f32) -> [f32; N] {
    std::array::from_fn(|i| qw[i] * (sigma2 + x[i] * x[i]).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX2 copy of the weighted kernels gives the same bytes as the baseline copy.
    #[test]
    fn avx2_kernels_match_baseline() {
        let isa = Isa::detect();
        if isa == Isa::Baseline {
            return;
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let x: Vec<f32> = (0..2560).map(|i| next() * (1 + i % 5) as f32).collect();
        let qw: Vec<f32> = (0..2560).map(|_| (4.0 * next()).exp()).collect();
        for ty in GgmlType::ALL.into_iter().filter(|t| t.uses_importance()) {
            let n = ty.row_bytes(x.len()).unwrap();
            let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
            assert!(encode_row(Isa::Baseline, ty, &x, &qw, &mut a).is_ok());
            assert!(encode_row(isa, ty, &x, &qw, &mut b).is_ok());
            assert_eq!(a, b, "{}", ty.name());
            #[cfg(target_arch = "x86_64")]
            if isa == Isa::Avx512 {
                assert!(encode_row(Isa::Avx2, ty, &x, &qw, &mut b).is_ok());
                assert_eq!(a, b, "{} (avx2)", ty.name());
            }
            // Rows of 8 blocks and rows with a few left over (the 8-lane searches' tails).
            let m = 7 * ty.block_size();
            let n = ty.row_bytes(m).unwrap();
            let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
            assert!(encode_row(Isa::Baseline, ty, &x[..m], &qw[..m], &mut a).is_ok());
            assert!(encode_row(isa, ty, &x[..m], &qw[..m], &mut b).is_ok());
            assert_eq!(a, b, "{} (7 blocks)", ty.name());
        }
    }
}
