//! W8A8: int8 weights (per output channel scale) times u8-coded activations (per token or per
//! tensor), exact integer accumulation, then the fused epilogue.

use modelopt_tensor_core::Par;

use crate::error::shape;
use crate::int8::{U8Rows, run};
use crate::{ActScale, Epilogue, Isa, PackedI8, QuantizedActivations, Requantize, Result};

fn check(x: &QuantizedActivations, w: &PackedI8, epi: &Epilogue) -> Result<()> {
    if x.k != w.cols() {
        return Err(shape(vec![x.m, w.cols()], vec![x.m, x.k]));
    }
    if epi.channels() != w.rows() {
        return Err(shape(vec![w.rows()], vec![epi.channels()]));
    }
    Ok(())
}

fn rows(x: &QuantizedActivations) -> U8Rows<'_> {
    U8Rows {
        codes: &x.codes,
        m: x.m,
        stride: x.stride,
        zero_points: &x.zero_points,
    }
}

/// `out[i][r] = epilogue(sum_k (x[i][k] - zp[i]) * w[r][k])` as f32 (`[m, n]`), the integer sum
/// exact (any K), on the instruction set `isa`.
///
/// ```
/// use modelopt_kernels::{w8a8_with, ActScale, Epilogue, Isa, PackedI8, Par, QuantizedActivations};
/// let w = PackedI8::new(&[127, -127, 64, 0], 2, 2)?;
/// let epi = Epilogue::new(vec![1.0 / 127.0, 1.0 / 64.0])?.bias(vec![0.0, 0.5])?;
/// let x = QuantizedActivations::quantize(&[1.0, -1.0], 1, 2, ActScale::PerToken)?;
/// let mut y = [0f32; 2];
/// w8a8_with(Isa::best(), modelopt_kernels::Par::Seq, &x, &w, &epi, &mut y)?;
/// assert!((y[0] - 2.0).abs() < 0.01 && (y[1] - 1.5).abs() < 0.01);
/// # Ok::<(), modelopt_kernels::KernelError>(())
/// ```
pub fn w8a8_with(
    isa: Isa,
    par: Par,
    x: &QuantizedActivations,
    w: &PackedI8,
    epi: &Epilogue,
    out: &mut [f32],
) -> Result<()> {
    check(x, w, epi)?;
    let n = w.rows();
    run(isa, par, &rows(x), w, out, |p, i0, acc, vals| {
        epilogue(x, epi, n, p, i0, acc, vals)
    })
}

/// The f32 epilogue of a block of rows from `i0` of one panel (`acc`, `vals`: `[rows][64]`),
/// loops hoisted per operation so they vectorize; the same operations in the same order as
/// [`Epilogue::finish`].
fn epilogue(
    x: &QuantizedActivations,
    epi: &Epilogue,
    n: usize,
    p: usize,
    i0: usize,
    acc: &[i64],
    vals: &mut [f32],
) {
    let r0 = p * 64;
    let valid = (n - r0).min(64);
    let ws = &epi.weight_scales[r0..r0 + valid];
    let bias = epi.bias.as_deref().map(|b| &b[r0..r0 + valid]);
    for (i, (a, v)) in acc
        .chunks_exact(64)
        .zip(vals.chunks_exact_mut(64))
        .enumerate()
    {
        let sx = x.scales[i0 + i];
        let v = &mut v[..valid];
        if x.k <= crate::MAX_K_I32 {
            // Every sum fits in i32, whose conversion to f32 vectorizes (i64's needs AVX-512DQ)
            // and rounds the same integer to the same f32.
            for ((v, &a), &s) in v.iter_mut().zip(a).zip(ws) {
                *v = (a as i32) as f32 * (sx * s);
            }
        } else {
            for ((v, &a), &s) in v.iter_mut().zip(a).zip(ws) {
                *v = a as f32 * (sx * s);
            }
        }
        if let Some(b) = bias {
            v.iter_mut().zip(b).for_each(|(v, &b)| *v += b);
        }
        if epi.relu {
            v.iter_mut().for_each(|v| *v = v.max(0.0));
        }
    }
}

/// [`w8a8_with`] with the result requantized to int8 codes (`[m, n]`), e.g. to feed the next
/// layer in integers.
///
/// ```
/// use modelopt_kernels::{w8a8_i8_with, ActScale, Epilogue, Isa, PackedI8, Par, QuantizedActivations, Requantize};
/// let w = PackedI8::new(&[127, -127], 1, 2)?;
/// let x = QuantizedActivations::quantize(&[1.0, -1.0], 1, 2, ActScale::PerToken)?;
/// let mut y = [0i8; 1];
/// let epi = Epilogue::new(vec![1.0 / 127.0])?.relu(true);
/// w8a8_i8_with(Isa::best(), Par::Seq, &x, &w, &epi, Requantize::new(0.125, 0)?, &mut y)?;
/// assert_eq!(y, [16]); // 2.0 / 0.125
/// # Ok::<(), modelopt_kernels::KernelError>(())
/// ```
pub fn w8a8_i8_with(
    isa: Isa,
    par: Par,
    x: &QuantizedActivations,
    w: &PackedI8,
    epi: &Epilogue,
    requantize: Requantize,
    out: &mut [i8],
) -> Result<()> {
    check(x, w, epi)?;
    let n = w.rows();
    run(isa, par, &rows(x), w, out, |p, i0, acc, vals| {
        let mut y = vec![0f32; vals.len()];
        epilogue(x, epi, n, p, i0, acc, &mut y);
        vals.iter_mut()
            .zip(&y)
            .for_each(|(v, &y)| *v = requantize.code(y));
    })
}

/// Quantizes the f32 activations `x` (`[m, k]`) as `act` says, then [`w8a8_with`] on the best
/// instruction set.
///
/// ```
/// use modelopt_kernels::{w8a8, ActScale, Epilogue, PackedI8, Par};
/// let w = PackedI8::new(&[127, 127], 1, 2)?;
/// let epi = Epilogue::new(vec![1.0 / 127.0])?;
/// let mut y = [0f32; 1];
/// w8a8(Par::Seq, &[0.5, 0.25], 1, &w, ActScale::PerToken, &epi, &mut y)?;
/// assert!((y[0] - 0.75).abs() < 0.01);
/// # Ok::<(), modelopt_kernels::KernelError>(())
/// ```
pub fn w8a8(
    par: Par,
    x: &[f32],
    m: usize,
    w: &PackedI8,
    act: ActScale,
    epi: &Epilogue,
    out: &mut [f32],
) -> Result<()> {
    let q = QuantizedActivations::quantize(x, m, w.cols(), act)?;
    w8a8_with(Isa::best(), par, &q, w, epi, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng, rngs::StdRng};

    /// The same arithmetic written out: exact i64 sums, then the f32 epilogue in the same order.
    fn reference(x: &QuantizedActivations, w: &[i8], n: usize, epi: &Epilogue) -> Vec<f32> {
        let k = x.k;
        let mut y = vec![0f32; x.m * n];
        for i in 0..x.m {
            for r in 0..n {
                let acc: i64 = (0..k)
                    .map(|c| (x.row(i)[c] as i64 - x.zero_points[i] as i64) * w[r * k + c] as i64)
                    .sum();
                let mut v = acc as f32 * (x.scales[i] * epi.weight_scales[r]);
                if let Some(b) = &epi.bias {
                    v += b[r];
                }
                y[i * n + r] = if epi.relu { v.max(0.0) } else { v };
            }
        }
        y
    }

    #[test]
    fn fused_epilogue_matches_the_written_out_arithmetic_on_every_isa() {
        let mut rng = StdRng::seed_from_u64(11);
        let (m, n, k) = (9, 70, 133);
        let x: Vec<f32> = (0..m * k)
            .map(|_| rng.random::<f32>() * 4.0 - 1.5)
            .collect();
        let w: Vec<i8> = (0..n * k).map(|_| rng.random()).collect();
        let scales: Vec<f32> = (0..n).map(|r| 0.001 * (r + 1) as f32).collect();
        let bias: Vec<f32> = (0..n).map(|r| r as f32 * 0.1 - 3.0).collect();
        let packed = PackedI8::new(&w, n, k).unwrap();
        for act in [ActScale::PerToken, ActScale::per_tensor(0.02, 77).unwrap()] {
            let q = QuantizedActivations::quantize(&x, m, k, act).unwrap();
            for relu in [false, true] {
                let epi = Epilogue::new(scales.clone())
                    .unwrap()
                    .bias(bias.clone())
                    .unwrap()
                    .relu(relu);
                let want = reference(&q, &w, n, &epi);
                let req = Requantize::new(0.05, -3).unwrap();
                for isa in Isa::available() {
                    let mut y = vec![0f32; m * n];
                    w8a8_with(isa, Par::Seq, &q, &packed, &epi, &mut y).unwrap();
                    assert_eq!(y, want, "{isa:?}");
                    let mut y8 = vec![0i8; m * n];
                    w8a8_i8_with(isa, Par::Rayon(2), &q, &packed, &epi, req, &mut y8).unwrap();
                    let want8: Vec<i8> = want.iter().map(|&v| req.code(v)).collect();
                    assert_eq!(y8, want8);
                }
            }
        }
    }

    #[test]
    fn per_token_quantization_error_is_small() {
        let mut rng = StdRng::seed_from_u64(5);
        let (m, n, k) = (4, 33, 256);
        let x: Vec<f32> = (0..m * k).map(|_| rng.random::<f32>() - 0.3).collect();
        let w: Vec<i8> = (0..n * k).map(|_| rng.random_range(-127..=127)).collect();
        let packed = PackedI8::new(&w, n, k).unwrap();
        let epi = Epilogue::new(vec![0.01; n]).unwrap();
        let mut y = vec![0f32; m * n];
        w8a8(Par::Seq, &x, m, &packed, ActScale::PerToken, &epi, &mut y).unwrap();
        for i in 0..m {
            for r in 0..n {
                let exact: f32 = (0..k)
                    .map(|c| x[i * k + c] * w[r * k + c] as f32 * 0.01)
                    .sum();
                assert!(
                    (y[i * n + r] - exact).abs() < 0.05,
                    "{} vs {exact}",
                    y[i * n + r]
                );
            }
        }
    }

    #[test]
    fn mismatches_are_errors() {
        let w = PackedI8::new(&[1; 6], 2, 3).unwrap();
        let epi = Epilogue::new(vec![1.0; 2]).unwrap();
        let mut y = [0f32; 2];
        assert!(w8a8(Par::Seq, &[1.0; 2], 1, &w, ActScale::PerToken, &epi, &mut y).is_err());
        let epi3 = Epilogue::new(vec![1.0; 3]).unwrap();
        assert!(
            w8a8(
                Par::Seq,
                &[1.0; 3],
                1,
                &w,
                ActScale::PerToken,
                &epi3,
                &mut y
            )
            .is_err()
        );
        assert!(
            w8a8(
                Par::Seq,
                &[1.0; 3],
                1,
                &w,
                ActScale::PerToken,
                &epi,
                &mut [0f32; 3]
            )
            .is_err()
        );
    }
}
