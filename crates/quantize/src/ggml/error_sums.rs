//! The reconstruction error of a quantized row, measured piece by piece without materialising
//! the dequantized row: what a tool reporting SQNR needs next to every quantized tensor.

use super::GgmlType;
use super::rows::{Isa, check_supported, decode_any, length_error};
use crate::Result;

/// Elements decoded at a time: a multiple of every block size (1, 32, 256), small enough for
/// the stack and L1.
const PIECE: usize = 256;
/// Pieces whose squares are summed in f32 lanes before the lanes are added up in f64, so that
/// millions of terms keep their digits.
const PIECES_PER_RUN: usize = 4;

/// `(sum x^2, sum (x - y)^2)` where `y` is `blocks` dequantized: the two sums behind the
/// signal-to-quantization-noise ratio `10 log10(sum x^2 / sum (x - y)^2)` of a quantized row.
/// `blocks` must be exactly the blocks of `src.len()` weights of `ty` (`ty.row_bytes`).
///
/// The row is dequantized 256 weights at a time into a stack buffer, so the cost is one pass
/// over `src` and `blocks`; the sums run in f32 lanes over 1024 weights, then in f64.
///
/// ```
/// use modelopt_quantize::ggml::{GgmlType, error_sums, quantize};
/// let x: Vec<f32> = (0..64).map(|i| (i as f32 - 32.0) / 8.0).collect();
/// let q = quantize(GgmlType::Q8_0, &x)?;
/// let (signal, noise) = error_sums(GgmlType::Q8_0, &x, &q)?;
/// let sqnr_db = 10.0 * (signal / noise).log10();
/// assert!(sqnr_db > 35.0);
/// assert!(error_sums(GgmlType::Q8_0, &x, &q[1..]).is_err()); // wrong byte count
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
pub fn error_sums(ty: GgmlType, src: &[f32], blocks: &[u8]) -> Result<(f64, f64)> {
    check_supported(ty)?;
    let bytes = ty.row_bytes(src.len())?;
    if blocks.len() != bytes {
        return Err(length_error("quantized row", bytes, blocks.len(), "bytes"));
    }
    Ok(match Isa::detect() {
        Isa::Baseline => sums_any::<false>(ty, src, blocks),
        // SAFETY: `Avx2` and `Avx512` are only produced by `detect` after checking avx2 and f16c.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 => unsafe { sums_avx2(ty, src, blocks) },
    })
}

// The same loop compiled with AVX2 (as `dequantize_row` is: with AVX-512 enabled the
// compiler decodes the 4-bit types through gathers, several times slower). Decoding is
// bit-identical on every ISA (no FMA contraction).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
fn sums_avx2(ty: GgmlType, src: &[f32], blocks: &[u8]) -> (f64, f64) {
    sums_any::<true>(ty, src, blocks)
}

/// Adds `x^2` and `(x - y)^2` of a piece into 16 lanes (element `16 c + k` into lane `k`): the
/// scalar reference of [`lane_sums_avx2`].
#[inline(always)]
fn lane_sums(x: &[f32; PIECE], y: &[f32; PIECE], ax: &mut [f32; 16], ae: &mut [f32; 16]) {
    for (xc, yc) in x.as_chunks::<16>().0.iter().zip(y.as_chunks::<16>().0) {
        for k in 0..16 {
            let v = xc[k];
            let d = v - yc[k];
            ax[k] += v * v;
            ae[k] += d * d;
        }
    }
}

/// [`lane_sums`] in two 8-lane registers per sum, the same additions in the same order (the
/// auto-vectoriser turns the plain loop into a shuffle-heavy mix here).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn lane_sums_avx2(x: &[f32; PIECE], y: &[f32; PIECE], ax: &mut [f32; 16], ae: &mut [f32; 16]) {
    use std::arch::x86_64::*;
    // SAFETY: every load and store covers 8 floats inside a `[f32; 16]` or `[f32; PIECE]`.
    unsafe {
        let ld = |p: &[f32]| _mm256_loadu_ps(p.as_ptr());
        let (mut a0, mut a1) = (ld(&ax[..8]), ld(&ax[8..]));
        let (mut e0, mut e1) = (ld(&ae[..8]), ld(&ae[8..]));
        for (xc, yc) in x.as_chunks::<16>().0.iter().zip(y.as_chunks::<16>().0) {
            let (x0, x1) = (ld(&xc[..8]), ld(&xc[8..]));
            let d0 = _mm256_sub_ps(x0, ld(&yc[..8]));
            let d1 = _mm256_sub_ps(x1, ld(&yc[8..]));
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(x0, x0));
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(x1, x1));
            e0 = _mm256_add_ps(e0, _mm256_mul_ps(d0, d0));
            e1 = _mm256_add_ps(e1, _mm256_mul_ps(d1, d1));
        }
        _mm256_storeu_ps(ax.as_mut_ptr(), a0);
        _mm256_storeu_ps(ax[8..].as_mut_ptr(), a1);
        _mm256_storeu_ps(ae.as_mut_ptr(), e0);
        _mm256_storeu_ps(ae[8..].as_mut_ptr(), e1);
    }
}

/// `AVX2 = true` only from [`sums_avx2`], which runs after the CPU check.
#[inline(always)]
fn sums_any<const AVX2: bool>(ty: GgmlType, src: &[f32], blocks: &[u8]) -> (f64, f64) {
    let piece_bytes = ty.type_size() * (PIECE / ty.block_size());
    let (pieces, tail) = src.as_chunks::<PIECE>();
    let (mut sx, mut se) = (0.0f64, 0.0f64);
    let mut y = [0f32; PIECE];
    for (r, run) in pieces.chunks(PIECES_PER_RUN).enumerate() {
        let mut ax = [0f32; 16];
        let mut ae = [0f32; 16];
        for (p, x) in run.iter().enumerate() {
            let at = (r * PIECES_PER_RUN + p) * piece_bytes;
            decode_any(ty, &blocks[at..at + piece_bytes], &mut y);
            #[cfg(target_arch = "x86_64")]
            if AVX2 {
                // SAFETY: `AVX2` is only true inside `sums_avx2`.
                unsafe { lane_sums_avx2(x, &y, &mut ax, &mut ae) };
                continue;
            }
            lane_sums(x, &y, &mut ax, &mut ae);
        }
        sx += ax.iter().map(|v| f64::from(*v)).sum::<f64>();
        se += ae.iter().map(|v| f64::from(*v)).sum::<f64>();
    }
    if !tail.is_empty() {
        let at = pieces.len() * piece_bytes;
        let y = &mut y[..tail.len()];
        decode_any(ty, &blocks[at..], y);
        for (a, b) in tail.iter().zip(y.iter()) {
            sx += f64::from(a * a);
            se += f64::from((a - b) * (a - b));
        }
    }
    (sx, se)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ggml::{dequantize, quantize};

    #[test]
    fn avx2_lane_sums_equal_the_scalar_ones() {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            let x: [f32; PIECE] = std::array::from_fn(|i| (i as f32 * 0.37).sin());
            let y: [f32; PIECE] = std::array::from_fn(|i| (i as f32 * 0.37).sin() * 0.98 + 0.01);
            let (mut a, mut e) = ([0.5f32; 16], [0.25f32; 16]);
            let (mut b, mut f) = (a, e);
            lane_sums(&x, &y, &mut a, &mut e);
            // SAFETY: AVX2 checked above.
            unsafe { lane_sums_avx2(&x, &y, &mut b, &mut f) };
            assert_eq!(a.map(f32::to_bits), b.map(f32::to_bits));
            assert_eq!(e.map(f32::to_bits), f.map(f32::to_bits));
        }
    }

    /// Against f64 sums over the dequantized row, for every type, with a short tail.
    #[test]
    fn match_f64_sums_of_the_dequantized_row() {
        let n = 3 * 1024 + 512; // several runs, a partial run, for the 32-blocks a tail
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 97.0)
            .collect();
        for ty in GgmlType::ALL {
            let len = n / ty.block_size() * ty.block_size();
            let x = &x[..len];
            let q = quantize(ty, x).unwrap();
            let y = dequantize(ty, &q, len).unwrap();
            let want_x: f64 = x.iter().map(|v| f64::from(*v).powi(2)).sum();
            let want_e: f64 = x
                .iter()
                .zip(&y)
                .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                .sum();
            let (sx, se) = error_sums(ty, x, &q).unwrap();
            assert!(
                (sx - want_x).abs() <= 1e-6 * want_x,
                "{}: {sx} {want_x}",
                ty.name()
            );
            assert!(
                (se - want_e).abs() <= 1e-5 * want_e + 1e-30,
                "{}: {se} {want_e}",
                ty.name()
            );
        }
    }
}
