//! SparseGPT (Frantar & Alistarh 2023): pruning with weight reconstruction. GPTQ's column sweep
//! with a mask in place of a grid: a pruned weight's error `w / U_jj` is spread over the
//! columns not yet visited through the upper Cholesky factor `U` of the inverse Hessian, so the
//! kept weights absorb what the pruned ones did on the calibration inputs.
//!
//! The mask follows the reference (`sparsegpt.py`, `fasterprune`): weights are ranked by
//! `w² / U_jj²` (OBS's saliency) where `w` is the weight's value when the choice is made:
//!
//! - **Unstructured** (a fraction `p`): at the start of each lazy block, over the whole
//!   `[rows, block]` tile of current weights, exactly `floor(p · rows · block)` weights with the
//!   smallest saliency are pruned (ties by position, row-major). The reference takes every
//!   weight up to the `p`-quantile's value, one more than `floor` (or more with ties); exactly
//!   `floor` keeps the fraction exact whatever the ties.
//! - **N:M**: at every column `c` with `c % m == 0`, per row, the `n` weights of columns
//!   `c..c+m` with the smallest saliency (ties: the earlier column) are pruned. The lazy
//!   block is rounded down to a multiple of `m` (at least `m`) so that no group straddles two
//!   blocks; the result does not depend on the block size.
//!
//! Dampening, dead columns and the Cholesky factor are GPTQ's ([`Gptq`](super::Gptq)); the
//! activation order is not used (the reference has none for pruning).

use modelopt_tensor_core::CoreError;
use ndarray::{Array2, ArrayRef2, linalg::general_mat_mul, s};

use super::hessian::Hessian;
use super::solver::{CheckedGptq, GptqReport, Prepared};
use crate::Result;

/// Which weights SparseGPT removes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sparsity {
    /// This fraction of every lazy block's weights (`0 <= p < 1`).
    Unstructured(f64),
    /// `n` of every `m` consecutive weights of a row (`0 < n < m`; 2:4 is what sparse tensor
    /// cores run).
    NM {
        /// Weights pruned per group.
        n: usize,
        /// Group length along a row.
        m: usize,
    },
}

impl Sparsity {
    /// Errors on a fraction outside `[0, 1)`, `n` not in `1..m`, or (N:M) a row length `cols`
    /// that is not a multiple of `m`.
    fn check(&self, cols: usize) -> Result<()> {
        match *self {
            Sparsity::Unstructured(p) if !(0.0..1.0).contains(&p) => Err(CoreError::invalid(
                "sparsity",
                format!("the pruned fraction must be in [0, 1), got {p}"),
            )
            .into()),
            Sparsity::NM { n, m } if n == 0 || n >= m => Err(CoreError::invalid(
                "sparsity",
                format!("N:M needs 0 < N < M, got {n}:{m}"),
            )
            .into()),
            Sparsity::NM { n, m } if !cols.is_multiple_of(m) => Err(CoreError::invalid(
                "sparsity",
                format!("{n}:{m} needs rows whose length is a multiple of {m}, got {cols}"),
            )
            .into()),
            _ => Ok(()),
        }
    }
}

/// A SparseGPT result.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SparseOutput {
    /// The pruned and reconstructed weights, `[out, in]`: zeros where pruned, the kept weights
    /// updated.
    pub weights: Array2<f32>,
    /// How many weights were pruned (dead columns' weights included).
    pub pruned: usize,
    /// Dampening, dead columns and the loss `sum (w - q)² / (2 U_jj²)` of the pruned weights.
    pub report: GptqReport,
}

impl CheckedGptq {
    /// SparseGPT of `w` (`[out, in]`) against the input Hessian: prunes to `sparsity` and
    /// updates the kept weights to compensate. Errors on a non-finite weight, a Hessian whose
    /// order is not `in`, a bad sparsity (see [`Sparsity`]), activation order (not used for
    /// pruning), or a Hessian that stays indefinite after the allowed dampening raises.
    ///
    /// ```
    /// use modelopt_quantize::gptq::{Gptq, HessianAccumulator, Sparsity};
    /// let w = ndarray::Array2::from_shape_fn((3, 8), |(i, j)| ((i * 5 + j * 3) % 7) as f32 - 3.0);
    /// let x = ndarray::Array2::from_shape_fn((40, 8), |(t, j)| ((t * 7 + j * 11) % 13) as f32 / 13.0);
    /// let mut acc = HessianAccumulator::new(8);
    /// acc.add_batch(&x)?;
    /// let out = Gptq::new().check()?.prune(&w, &acc.finish()?, Sparsity::NM { n: 2, m: 4 })?;
    /// for row in out.weights.rows() {
    ///     for group in row.as_slice().unwrap().chunks(4) {
    ///         assert!(group.iter().filter(|v| **v == 0.0).count() >= 2);
    ///     }
    /// }
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn prune(
        &self,
        w: &ArrayRef2<f32>,
        hessian: &Hessian,
        sparsity: Sparsity,
    ) -> Result<SparseOutput> {
        let (rows, cols) = w.dim();
        sparsity.check(cols)?;
        if self.act_order_enabled() {
            return Err(CoreError::invalid(
                "act_order",
                "SparseGPT visits the columns in their order; turn activation order off",
            )
            .into());
        }
        let Prepared {
            u,
            mut wt,
            mut report,
            ..
        } = self.prepare(w, hessian)?;
        let bs = match sparsity {
            Sparsity::NM { m, .. } => (self.block_size() / m * m).max(m),
            Sparsity::Unstructured(_) => self.block_size(),
        };
        // wt is [cols, rows]: row p of wt is column p of the weight.
        let mut pruned_mask = vec![false; cols * rows]; // [cols, rows]
        let mut loss = 0.0;
        for i1 in (0..cols).step_by(bs) {
            let i2 = (i1 + bs).min(cols);
            let count = i2 - i1;
            let mut w1 = wt.slice(s![i1..i2, ..]).to_owned();
            let mut err1 = Array2::<f64>::zeros((count, rows));
            if let Sparsity::Unstructured(p) = sparsity {
                let take = (p * (count * rows) as f64).floor() as usize;
                // Saliency of each (column, row) of the tile, ranked row-major as the weight
                // is laid out: index r * count + i.
                let mut order: Vec<(f64, usize)> = (0..rows)
                    .flat_map(|r| (0..count).map(move |i| (r, i)))
                    .map(|(r, i)| {
                        let d = u[[i1 + i, i1 + i]];
                        (w1[[i, r]] * w1[[i, r]] / (d * d), r * count + i)
                    })
                    .collect();
                if take > 0 {
                    order.select_nth_unstable_by(take - 1, |a, b| {
                        a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
                    });
                    for &(_, k) in &order[..take] {
                        let (r, i) = (k / count, k % count);
                        pruned_mask[(i1 + i) * rows + r] = true;
                    }
                }
            }
            for i in 0..count {
                let p = i1 + i;
                if let Sparsity::NM { n, m } = sparsity
                    && p.is_multiple_of(m)
                {
                    for r in 0..rows {
                        let mut group: Vec<(f64, usize)> = (0..m)
                            .map(|k| {
                                let d = u[[p + k, p + k]];
                                let v = w1[[i + k, r]];
                                (v * v / (d * d), k)
                            })
                            .collect();
                        group.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                        for &(_, k) in &group[..n] {
                            pruned_mask[(p + k) * rows + r] = true;
                        }
                    }
                }
                let d = u[[p, p]];
                let mask = &pruned_mask[p * rows..(p + 1) * rows];
                let mut e = err1.row_mut(i);
                for ((o, &a), &gone) in e.iter_mut().zip(w1.row(i)).zip(mask) {
                    // A pruned weight's error is itself; a kept one has none.
                    *o = if gone { a / d } else { 0.0 };
                    if gone {
                        loss += a * a / (2.0 * d * d);
                    }
                }
                for (v, &gone) in w1.row_mut(i).iter_mut().zip(mask) {
                    if gone {
                        *v = 0.0;
                    }
                }
                let e = err1.row(i);
                for k in i + 1..count {
                    let f = u[[p, i1 + k]];
                    w1.row_mut(k).zip_mut_with(&e, |a, &b| *a -= f * b);
                }
            }
            wt.slice_mut(s![i1..i2, ..]).assign(&w1);
            if i2 < cols {
                let mut tail = wt.slice_mut(s![i2.., ..]);
                general_mat_mul(-1.0, &u.slice(s![i1..i2, i2..]).t(), &err1, 1.0, &mut tail);
            }
        }
        report.loss = loss;
        let weights = wt.t().as_standard_layout().mapv(|v| v as f32);
        let pruned = weights.iter().filter(|v| **v == 0.0).count();
        Ok(SparseOutput {
            weights,
            pruned,
            report,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gptq::Gptq;
    use crate::gptq::test_util::{gauss_jordan_inverse, hessian, problem};
    /// ||(W - Ŵ) Xᵀ||².
    fn output_error(w: &Array2<f32>, q: &Array2<f32>, x: &Array2<f32>) -> f64 {
        let d = (w - q).dot(&x.t());
        d.iter().map(|v| f64::from(*v) * f64::from(*v)).sum()
    }

    /// Magnitude pruning with the same structure.
    fn magnitude(w: &Array2<f32>, sparsity: Sparsity) -> Array2<f32> {
        let mut q = w.clone();
        match sparsity {
            Sparsity::Unstructured(p) => {
                let mut mags: Vec<f32> = w.iter().map(|v| v.abs()).collect();
                mags.sort_by(f32::total_cmp);
                let take = (p * mags.len() as f64).floor() as usize;
                let thr = if take == 0 { -1.0 } else { mags[take - 1] };
                q.mapv_inplace(|v| if v.abs() <= thr { 0.0 } else { v });
            }
            Sparsity::NM { n, m } => {
                for mut row in q.rows_mut() {
                    for g in row.as_slice_mut().unwrap().chunks_mut(m) {
                        let mut idx: Vec<usize> = (0..m).collect();
                        idx.sort_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()));
                        for &k in &idx[..n] {
                            g[k] = 0.0;
                        }
                    }
                }
            }
        }
        q
    }

    #[test]
    fn beats_magnitude_pruning_on_the_calibration_objective() {
        for (seed, sparsity) in [
            (1, Sparsity::Unstructured(0.5)),
            (2, Sparsity::Unstructured(0.7)),
            (3, Sparsity::NM { n: 2, m: 4 }),
            (4, Sparsity::NM { n: 1, m: 4 }),
        ] {
            let (w, x) = problem(24, 96, 400, seed);
            let out = Gptq::new()
                .block_size(32)
                .check()
                .unwrap()
                .prune(&w, &hessian(&x), sparsity)
                .unwrap();
            let sg = output_error(&w, &out.weights, &x);
            let mag = output_error(&w, &magnitude(&w, sparsity), &x);
            assert!(
                sg < 0.8 * mag,
                "{sparsity:?}: SparseGPT {sg} vs magnitude {mag}"
            );
        }
    }

    #[test]
    fn the_mask_has_the_requested_structure() {
        let (w, x) = problem(10, 64, 200, 5);
        let g = Gptq::new().block_size(16).check().unwrap();
        let out = g
            .prune(&w, &hessian(&x), Sparsity::Unstructured(0.3))
            .unwrap();
        // floor(0.3 * 10 * 16) = 48 per block of 16 columns, 4 blocks.
        assert_eq!(out.pruned, 4 * 48);
        let out = g
            .prune(&w, &hessian(&x), Sparsity::NM { n: 3, m: 8 })
            .unwrap();
        for row in out.weights.rows() {
            for group in row.as_slice().unwrap().chunks(8) {
                assert_eq!(group.iter().filter(|v| **v == 0.0).count(), 3);
            }
        }
        let none = g
            .prune(&w, &hessian(&x), Sparsity::Unstructured(0.0))
            .unwrap();
        assert_eq!(none.pruned, 0);
        // Nothing pruned: the weights are the input's (no error to spread).
        let diff = (&none.weights - &w)
            .mapv(f32::abs)
            .fold(0f32, |a, &b| a.max(b));
        assert!(diff < 1e-6, "{diff}");
    }

    #[test]
    fn n_m_result_does_not_depend_on_the_block_size() {
        let (w, x) = problem(7, 48, 150, 6);
        let h = hessian(&x);
        let run = |bs| {
            Gptq::new()
                .block_size(bs)
                .check()
                .unwrap()
                .prune(&w, &h, Sparsity::NM { n: 2, m: 4 })
                .unwrap()
                .weights
        };
        let (a, b, c) = (run(128), run(4), run(7)); // 7 rounds down to 4
        for other in [&b, &c] {
            let d = (&a - other).mapv(f32::abs).fold(0f32, |x, &y| x.max(y));
            assert!(d < 1e-5, "{d}");
        }
    }

    /// The straightforward per-column form of the same update (explicit inverse Hessian,
    /// shrunk by a Schur complement after each column), given the mask the blocked run chose:
    /// the kept weights must come out the same.
    #[test]
    fn blocked_update_equals_the_per_column_form() {
        let (w, x) = problem(6, 40, 120, 7);
        let h = hessian(&x);
        let out = Gptq::new()
            .block_size(16)
            .check()
            .unwrap()
            .prune(&w, &h, Sparsity::Unstructured(0.5))
            .unwrap();
        let mask = out.weights.mapv(|v| v == 0.0);
        let (rows, cols) = w.dim();
        let mut hm = h.matrix().clone();
        let mean = hm.diag().sum() / cols as f64;
        for j in 0..cols {
            hm[[j, j]] += 0.01 * mean;
        }
        let mut hinv = gauss_jordan_inverse(&hm);
        let mut wv = w.mapv(f64::from);
        for c in 0..cols {
            let d = hinv[[c, c]];
            for r in 0..rows {
                let e = if mask[[r, c]] { wv[[r, c]] } else { 0.0 };
                for j in c + 1..cols {
                    wv[[r, j]] -= e * hinv[[c, j]] / d;
                }
                if mask[[r, c]] {
                    wv[[r, c]] = 0.0;
                }
            }
            let hc = hinv.column(c).to_owned();
            for a in c + 1..cols {
                for b in c + 1..cols {
                    hinv[[a, b]] -= hc[a] * hc[b] / d;
                }
            }
        }
        let scale = wv.iter().fold(0f64, |a, v| a.max(v.abs()));
        let diff = out
            .weights
            .iter()
            .zip(&wv)
            .fold(0f64, |a, (&p, &q)| a.max((f64::from(p) - q).abs()));
        assert!(diff / scale < 1e-5, "relative difference {}", diff / scale);
    }

    #[test]
    fn bad_settings_are_errors() {
        let (w, x) = problem(2, 12, 30, 8);
        let h = hessian(&x);
        let g = Gptq::new().check().unwrap();
        for s in [
            Sparsity::Unstructured(1.0),
            Sparsity::Unstructured(-0.1),
            Sparsity::Unstructured(f64::NAN),
            Sparsity::NM { n: 0, m: 4 },
            Sparsity::NM { n: 4, m: 4 },
            Sparsity::NM { n: 2, m: 5 }, // 12 is not a multiple of 5
        ] {
            assert!(g.prune(&w, &h, s).is_err(), "{s:?}");
        }
        let ordered = Gptq::new().act_order(true).check().unwrap();
        assert!(ordered.prune(&w, &h, Sparsity::Unstructured(0.5)).is_err());
        let mut bad = w.clone();
        bad[[0, 0]] = f32::NAN;
        assert!(g.prune(&bad, &h, Sparsity::Unstructured(0.5)).is_err());
        let narrow = Array2::<f32>::zeros((2, 8));
        assert!(g.prune(&narrow, &h, Sparsity::Unstructured(0.5)).is_err());
    }
}
