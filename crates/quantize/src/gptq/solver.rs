//! GPTQ itself: column-by-column rounding with the error spread over the columns not yet
//! quantized through the upper Cholesky factor of the inverse Hessian, in lazy blocks.

use modelopt_tensor_core::{CoreError, stats::check_finite};
use ndarray::{Array2, ArrayRef2, Ix2, linalg::general_mat_mul, s};

use super::cholesky::inverse_upper_factor;
use super::grid::{GptqTarget, Grid};
use super::hessian::Hessian;
use crate::ggml::GgmlType;
use crate::{QuantError, Result, UniformQuantized};

/// GPTQ's settings (a builder; [`Gptq::check`] validates them).
///
/// Defaults as in the reference implementation: block size 128, dampening 1% of the mean
/// Hessian diagonal, natural column order. If the dampened Hessian is still not positive
/// definite, the dampening is multiplied by 10, up to `max_damp_raises` times (default 3,
/// i.e. up to 10x the mean diagonal), and the raise is reported in [`GptqReport`].
///
/// ```
/// use modelopt_quantize::gptq::Gptq;
/// let g = Gptq::new().act_order(true).check()?;
/// assert_eq!(g.block_size(), 128);
/// assert!(Gptq::new().damp(-0.1).check().is_err());
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gptq {
    block_size: usize,
    damp: f64,
    act_order: bool,
    max_damp_raises: u32,
}

impl Default for Gptq {
    fn default() -> Self {
        Gptq::new()
    }
}

impl Gptq {
    /// The reference defaults: block 128, dampening 0.01, no activation order, 3 raises.
    pub fn new() -> Self {
        Gptq {
            block_size: 128,
            damp: 0.01,
            act_order: false,
            max_damp_raises: 3,
        }
    }

    /// Columns per lazy block update (any value >= 1 gives the same result up to rounding;
    /// 128 is the reference's speed choice).
    pub fn block_size(mut self, block_size: usize) -> Self {
        self.block_size = block_size;
        self
    }

    /// Dampening as a fraction of the mean Hessian diagonal, added to the diagonal (finite,
    /// > 0).
    pub fn damp(mut self, damp: f64) -> Self {
        self.damp = damp;
        self
    }

    /// Quantize columns in order of decreasing Hessian diagonal (the reference's `act_order`
    /// / `desc_act`); the stored tensor is in the original order.
    pub fn act_order(mut self, act_order: bool) -> Self {
        self.act_order = act_order;
        self
    }

    /// How many times the dampening may be multiplied by 10 when the Hessian is not positive
    /// definite (0: fail at once).
    pub fn max_damp_raises(mut self, n: u32) -> Self {
        self.max_damp_raises = n;
        self
    }

    /// Validates the settings.
    ///
    /// ```
    /// assert!(modelopt_quantize::gptq::Gptq::new().block_size(0).check().is_err());
    /// ```
    pub fn check(&self) -> Result<CheckedGptq> {
        if self.block_size == 0 {
            return Err(CoreError::invalid("block_size", "must be at least 1").into());
        }
        if !(self.damp.is_finite() && self.damp > 0.0) {
            return Err(CoreError::invalid(
                "damp",
                format!("must be finite and > 0, got {}", self.damp),
            )
            .into());
        }
        Ok(CheckedGptq(*self))
    }
}

/// Validated GPTQ settings (from [`Gptq::check`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckedGptq(Gptq);

/// What happened while quantizing one weight.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GptqReport {
    /// The dampening fraction used (the configured one, or larger if it had to be raised).
    pub damp: f64,
    /// How many times the dampening was multiplied by 10 to make the Hessian positive
    /// definite (0 normally).
    pub damp_raises: u32,
    /// Input columns whose Hessian diagonal was 0 (no signal in the calibration data): their
    /// weights were set to 0, as the reference does.
    pub dead_columns: usize,
    /// GPTQ's own error estimate, the reference's `error`: the sum over columns of
    /// `(w - q)² / (2 [H⁻¹]_jj)`.
    pub loss: f64,
}

/// A GPTQ result: the stored tensor, its dequantized weights and the report.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GptqOutput<T> {
    /// The quantized tensor in its stored form.
    pub quantized: T,
    /// The weights the stored tensor decodes to, `[out, in]`.
    pub dequantized: Array2<f32>,
    /// Dampening, dead columns, loss.
    pub report: GptqReport,
}

impl CheckedGptq {
    /// The block size.
    pub fn block_size(&self) -> usize {
        self.0.block_size
    }

    /// Whether columns are visited in activation order.
    pub fn act_order_enabled(&self) -> bool {
        self.0.act_order
    }

    /// GPTQ of `w` (`[out, in]`) to a uniform scheme. Errors on a non-finite weight, a
    /// Hessian whose order is not `in`, an unsupported granularity (see [`GptqTarget`]), a
    /// group size that does not divide `in`, or a Hessian that stays indefinite after the
    /// allowed dampening raises.
    ///
    /// ```
    /// use modelopt_quantize::{QuantScheme, gptq::{Gptq, HessianAccumulator}};
    /// use ndarray::array;
    /// let w = array![[0.3f32, -0.7, 0.1, 0.9], [1.0, 0.3, -0.25, 0.75]];
    /// let mut acc = HessianAccumulator::new(4);
    /// acc.add_batch(&array![[1.0f32, 0.5, 0.0, 0.2], [0.3, 1.0, 0.4, 0.0], [0.0, 0.2, 1.0, 0.7]])?;
    /// let scheme = QuantScheme::int4().per_group(1, 2).check()?;
    /// let out = Gptq::new().check()?.quantize_uniform(&w, &acc.finish()?, &scheme)?;
    /// assert_eq!(out.quantized.shape(), &[2, 4]);
    /// assert_eq!(out.quantized.dequantize(), out.dequantized);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn quantize_uniform(
        &self,
        w: &ArrayRef2<f32>,
        hessian: &Hessian,
        scheme: &crate::CheckedScheme,
    ) -> Result<GptqOutput<UniformQuantized<Ix2>>> {
        let (rows, cols) = w.dim();
        let mut grid = Grid::new(GptqTarget::Uniform(*scheme), rows, cols)?;
        let (dequantized, report) = self.run(w, hessian, &mut grid)?;
        Ok(GptqOutput {
            quantized: grid.into_uniform(rows, cols)?,
            dequantized,
            report,
        })
    }

    /// GPTQ of `w` (`[out, in]`) to a GGML block format (Q4_0 or Q8_0): each block's scale is
    /// chosen by llama.cpp's formula from the block's current (GPTQ-updated) weights when its
    /// first column is reached, and codes are rounded the GGML way. Returns `out` rows of
    /// `in / 32` blocks, decodable by [`ggml::dequantize`](crate::ggml::dequantize).
    ///
    /// ```
    /// use modelopt_quantize::{ggml::{self, GgmlType}, gptq::{Gptq, HessianAccumulator}};
    /// let w = ndarray::Array2::from_shape_fn((2, 32), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
    /// let x = ndarray::Array2::from_shape_fn((40, 32), |(t, j)| ((t * 5 + j * 13) % 17) as f32 / 17.0);
    /// let mut acc = HessianAccumulator::new(32);
    /// acc.add_batch(&x)?;
    /// let out = Gptq::new().check()?.quantize_ggml(&w, &acc.finish()?, GgmlType::Q4_0)?;
    /// assert_eq!(out.quantized.len(), 2 * 18);
    /// let back = ggml::dequantize(GgmlType::Q4_0, &out.quantized, 64)?;
    /// assert_eq!(back, out.dequantized.iter().copied().collect::<Vec<_>>());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn quantize_ggml(
        &self,
        w: &ArrayRef2<f32>,
        hessian: &Hessian,
        ty: GgmlType,
    ) -> Result<GptqOutput<Vec<u8>>> {
        let (rows, cols) = w.dim();
        let mut grid = Grid::new(GptqTarget::Ggml(ty), rows, cols)?;
        let (dequantized, report) = self.run(w, hessian, &mut grid)?;
        Ok(GptqOutput {
            quantized: grid.into_ggml()?,
            dequantized,
            report,
        })
    }

    /// The processing order (a permutation of the columns), the dampened, permuted Hessian's
    /// inverse upper factor, the permuted weights (transposed: one row per column) and the
    /// report's dampening fields.
    pub(super) fn prepare(&self, w: &ArrayRef2<f32>, hessian: &Hessian) -> Result<Prepared> {
        let (rows, cols) = w.dim();
        if rows == 0 || cols == 0 {
            return Err(CoreError::Empty {
                what: "GPTQ weight",
            }
            .into());
        }
        check_finite(w)?;
        if hessian.features() != cols {
            return Err(CoreError::ShapeMismatch {
                expected: vec![cols, cols],
                found: vec![hessian.features(), hessian.features()],
            }
            .into());
        }
        let mut h = hessian.matrix().clone();
        let dead: Vec<bool> = (0..cols).map(|j| h[[j, j]] == 0.0).collect();
        for (j, _) in dead.iter().enumerate().filter(|(_, d)| **d) {
            h[[j, j]] = 1.0;
        }
        let mut perm: Vec<usize> = (0..cols).collect();
        if self.0.act_order {
            // Stable, so equal diagonals keep their order (torch's argsort is not stable; any
            // order of ties is a valid GPTQ).
            perm.sort_by(|&a, &b| h[[b, b]].total_cmp(&h[[a, a]]));
        }
        let hp = Array2::from_shape_fn((cols, cols), |(i, j)| h[[perm[i], perm[j]]]);
        let mean_diag = hp.diag().sum() / cols as f64;
        let mut damp = self.0.damp;
        let mut raises = 0;
        let u = loop {
            let mut hd = hp.clone();
            for i in 0..cols {
                hd[[i, i]] += damp * mean_diag;
            }
            match inverse_upper_factor(&hd) {
                Ok(u) => break u,
                Err(_) if raises < self.0.max_damp_raises => {
                    raises += 1;
                    damp *= 10.0;
                }
                Err(p) => {
                    return Err(QuantError::NotPositiveDefinite {
                        column: perm[p],
                        damp,
                    });
                }
            }
        };
        drop(hp);
        let wt = Array2::from_shape_fn((cols, rows), |(p, r)| {
            let c = perm[p];
            if dead[c] { 0.0 } else { f64::from(w[[r, c]]) }
        });
        Ok(Prepared {
            perm,
            u,
            wt,
            report: GptqReport {
                damp,
                damp_raises: raises,
                dead_columns: dead.iter().filter(|d| **d).count(),
                loss: 0.0,
            },
        })
    }

    /// The blocked algorithm (the reference's `fasterquant`).
    fn run(
        &self,
        w: &ArrayRef2<f32>,
        hessian: &Hessian,
        grid: &mut Grid,
    ) -> Result<(Array2<f32>, GptqReport)> {
        let (rows, cols) = w.dim();
        let Prepared {
            perm,
            u,
            mut wt,
            mut report,
        } = self.prepare(w, hessian)?;
        let mut pos = vec![0; cols];
        for (p, &c) in perm.iter().enumerate() {
            pos[c] = p;
        }
        let group = grid.group();
        let mut fitted = vec![false; cols / group];
        let mut qt = Array2::<f64>::zeros((cols, rows)); // original column order
        let mut q = vec![0f64; rows];
        let mut loss = 0.0;
        let bs = self.0.block_size;
        for i1 in (0..cols).step_by(bs) {
            let i2 = (i1 + bs).min(cols);
            let mut w1 = wt.slice(s![i1..i2, ..]).to_owned();
            let mut err1 = Array2::<f64>::zeros((i2 - i1, rows));
            for i in 0..i2 - i1 {
                let p = i1 + i;
                let c = perm[p];
                let g = c / group;
                if !fitted[g] {
                    fitted[g] = true;
                    // The group's current weights: in this block, w1 holds them; beyond it,
                    // the block's errors so far are still pending.
                    let mut vals = Array2::<f64>::zeros((group, rows));
                    for (k, mut v) in vals.outer_iter_mut().enumerate() {
                        let pk = pos[g * group + k];
                        debug_assert!(pk >= p);
                        if pk < i2 {
                            v.assign(&w1.row(pk - i1));
                        } else {
                            v.assign(&wt.row(pk));
                            for j in 0..i {
                                let f = u[[i1 + j, pk]];
                                v.zip_mut_with(&err1.row(j), |a, &e| *a -= f * e);
                            }
                        }
                    }
                    grid.fit(g, vals.view());
                }
                let wrow = w1.row(i);
                let wv = wrow.as_slice().ok_or(CoreError::invalid("layout", "w1"))?;
                grid.round(c, wv, &mut q);
                let d = u[[p, p]];
                let mut e = err1.row_mut(i);
                for ((o, &a), &b) in e.iter_mut().zip(wv).zip(&q) {
                    *o = (a - b) / d;
                    loss += (a - b) * (a - b) / (2.0 * d * d);
                }
                qt.row_mut(c).iter_mut().zip(&q).for_each(|(o, &v)| *o = v);
                let e = err1.row(i);
                for k in i + 1..i2 - i1 {
                    let f = u[[p, i1 + k]];
                    w1.row_mut(k).zip_mut_with(&e, |a, &b| *a -= f * b);
                }
            }
            if i2 < cols {
                let mut tail = wt.slice_mut(s![i2.., ..]);
                general_mat_mul(-1.0, &u.slice(s![i1..i2, i2..]).t(), &err1, 1.0, &mut tail);
            }
        }
        report.loss = loss;
        Ok((qt.t().mapv(|v| v as f32), report))
    }
}

pub(super) struct Prepared {
    pub(super) perm: Vec<usize>,
    /// Upper Cholesky factor of the dampened (permuted) Hessian's inverse.
    pub(super) u: Array2<f64>,
    /// The (permuted) weights transposed, `[in, out]`, dead columns zeroed.
    pub(super) wt: Array2<f64>,
    pub(super) report: GptqReport,
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{gauss_jordan_inverse, hessian, max_rel, problem};
    use super::*;
    use crate::QuantScheme;

    /// The textbook column-by-column form (OBQ's update with the explicit inverse Hessian,
    /// which is shrunk after each column): no Cholesky factor, no blocks, no pending updates.
    /// Returns the dequantized weights.
    fn per_column(
        w: &Array2<f32>,
        h: &Hessian,
        target: GptqTarget,
        damp: f64,
        act_order: bool,
    ) -> Array2<f64> {
        let (rows, cols) = w.dim();
        let mut h = h.matrix().clone();
        let mut w = w.mapv(f64::from);
        for j in 0..cols {
            if h[[j, j]] == 0.0 {
                h[[j, j]] = 1.0;
                w.column_mut(j).fill(0.0);
            }
        }
        let mut order: Vec<usize> = (0..cols).collect();
        if act_order {
            order.sort_by(|&a, &b| h[[b, b]].total_cmp(&h[[a, a]]));
        }
        let mean = h.diag().sum() / cols as f64;
        for j in 0..cols {
            h[[j, j]] += damp * mean;
        }
        let mut hinv = gauss_jordan_inverse(&h);
        let mut grid = Grid::new(target, rows, cols).unwrap();
        let group = grid.group();
        let mut fitted = vec![false; cols / group];
        let mut out = Array2::<f64>::zeros((rows, cols));
        let mut q = vec![0f64; rows];
        for (step, &c) in order.iter().enumerate() {
            let g = c / group;
            if !fitted[g] {
                fitted[g] = true;
                let vals = w.slice(s![.., g * group..(g + 1) * group]).t().to_owned();
                grid.fit(g, vals.view());
            }
            let col: Vec<f64> = w.column(c).to_vec();
            grid.round(c, &col, &mut q);
            let d = hinv[[c, c]];
            for &j in &order[step + 1..] {
                let f = hinv[[c, j]] / d;
                for r in 0..rows {
                    w[[r, j]] -= (col[r] - q[r]) * f;
                }
            }
            for r in 0..rows {
                out[[r, c]] = q[r];
            }
            // Remove column c from the inverse (Schur complement over the remaining columns).
            let hc = hinv.column(c).to_owned();
            for &a in &order[step + 1..] {
                let fa = hc[a] / d;
                let mut row = hinv.row_mut(a);
                for &b in &order[step + 1..] {
                    row[b] -= fa * hc[b];
                }
            }
        }
        out
    }

    #[test]
    fn blocked_equals_per_column() {
        let (w, x) = problem(8, 64, 200, 7);
        let h = hessian(&x);
        let targets = [
            GptqTarget::Uniform(QuantScheme::int4().per_channel(0).check().unwrap()),
            GptqTarget::Uniform(
                QuantScheme::new(3)
                    .affine()
                    .per_group(1, 16)
                    .check()
                    .unwrap(),
            ),
            GptqTarget::Uniform(QuantScheme::int4().per_tensor().check().unwrap()),
            GptqTarget::Ggml(GgmlType::Q4_0),
            GptqTarget::Ggml(GgmlType::Q8_0),
        ];
        for target in targets {
            for act_order in [false, true] {
                let want = per_column(&w, &h, target, 0.01, act_order);
                for bs in [1, 7, 128] {
                    let g = Gptq::new()
                        .block_size(bs)
                        .act_order(act_order)
                        .check()
                        .unwrap();
                    let mut grid = Grid::new(target, 8, 64).unwrap();
                    let (q, rep) = g.run(&w, &h, &mut grid).unwrap();
                    assert_eq!(rep.damp_raises, 0);
                    let e = max_rel(&q, &want);
                    assert!(e < 1e-6, "{target:?} act_order {act_order} block {bs}: {e}");
                }
            }
        }
    }
}
