//! The encoder's building blocks: a linear layer run in fixed row tiles, LayerNorm, softmax.

use std::sync::Mutex;

use modelopt_tensor_core::Par;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2, s};

use crate::execution::Kernel;
use crate::{BertError, Result};

/// Rows of one product of a linear layer. Fixed (not derived from the thread count), so that the
/// matrix products, whose rounding depends on their sizes, and hence the results, are the same
/// for any number of threads. 128 rows of 384-1536 columns keep the GEMM efficient.
pub(crate) const TILE_ROWS: usize = 128;

/// `y = x W^T + b` with torch's weight layout `[out, in]`, in f32 or, when `kernel` is set, in
/// integers (`weight` then holds the dequantized values, for hooks and weight replacement).
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    pub(crate) weight: Array2<f32>,
    pub(crate) bias: Array1<f32>,
    pub(crate) kernel: Option<Kernel>,
}

impl Linear {
    /// `x W^T + b`, tile by tile of [`TILE_ROWS`] rows (in parallel when `par` allows), then
    /// `epilogue(first_row, tile)` on each finished tile while it is in cache.
    pub(crate) fn forward<E>(
        &self,
        x: ArrayView2<'_, f32>,
        par: Par,
        epilogue: E,
    ) -> Result<Array2<f32>>
    where
        E: Fn(usize, ArrayViewMut2<'_, f32>) + Sync,
    {
        let (rows, out) = (x.nrows(), self.weight.nrows());
        if x.ncols() != self.weight.ncols() {
            return Err(BertError::Input(format!(
                "linear layer of {} inputs given {} columns",
                self.weight.ncols(),
                x.ncols()
            )));
        }
        let mut y = Array2::<f32>::zeros((rows, out));
        let first_error = Mutex::new(None);
        let w_t = self.weight.t();
        if let Some(data) = y.as_slice_mut() {
            par.for_each_chunk_mut(data, TILE_ROWS * out, |i, chunk| {
                let r0 = i * TILE_ROWS;
                let n = chunk.len() / out.max(1);
                let mut run = || -> Result<()> {
                    let rows_in = x.slice(s![r0..r0 + n, ..]);
                    if let Some(kernel) = &self.kernel {
                        let rows_in = rows_in.as_standard_layout();
                        let xs = rows_in
                            .as_slice()
                            .ok_or_else(|| BertError::Input("activations not contiguous".into()))?;
                        kernel.forward(xs, n, chunk)?;
                    }
                    let mut tile = ArrayViewMut2::from_shape((n, out), chunk)
                        .map_err(|e| BertError::Input(format!("tile shape: {e}")))?;
                    if self.kernel.is_none() {
                        for mut row in tile.rows_mut() {
                            row.assign(&self.bias);
                        }
                        modelopt_nn::matmul(1.0, &rows_in, &w_t, 1.0, &mut tile)?;
                    }
                    epilogue(r0, tile);
                    Ok(())
                };
                if let Err(e) = run()
                    && let Ok(mut slot) = first_error.lock()
                {
                    slot.get_or_insert(e);
                }
            });
        }
        match first_error.into_inner() {
            Ok(None) => Ok(y),
            Ok(Some(e)) => Err(e),
            Err(_) => Err(BertError::Input("a worker thread panicked".into())),
        }
    }
}

/// LayerNorm over the last dimension with learned scale and shift.
#[derive(Debug, Clone)]
pub(crate) struct LayerNorm {
    pub(crate) gamma: Array1<f32>,
    pub(crate) beta: Array1<f32>,
    pub(crate) eps: f32,
}

impl LayerNorm {
    /// Normalises one row in place: `(x - mean) / sqrt(var + eps) * gamma + beta`, biased
    /// variance, as torch computes it.
    pub(crate) fn apply_row(&self, mut row: ArrayViewMut1<'_, f32>) {
        let n = row.len() as f32;
        let mean = row.sum() / n;
        let var = row.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / n;
        let rstd = 1.0 / (var + self.eps).sqrt();
        for ((v, &g), &b) in row.iter_mut().zip(&self.gamma).zip(&self.beta) {
            *v = (*v - mean) * rstd * g + b;
        }
    }

    /// Normalises every row of `x` in place.
    pub(crate) fn apply(&self, mut x: ArrayViewMut2<'_, f32>) {
        for row in x.rows_mut() {
            self.apply_row(row);
        }
    }
}

/// Softmax of each row in place (max subtracted first).
pub(crate) fn softmax_rows(mut x: ArrayViewMut2<'_, f32>) {
    for mut row in x.rows_mut() {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        row.mapv_inplace(|v| {
            let e = (v - max).exp();
            sum += e;
            e
        });
        let inv = 1.0 / sum;
        row.mapv_inplace(|v| v * inv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn linear_matches_a_naive_product_across_tiles() {
        let (rows, inp, out) = (TILE_ROWS * 2 + 5, 7, 3);
        let x = Array2::from_shape_fn((rows, inp), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
        let w = Array2::from_shape_fn((out, inp), |(i, j)| ((i + 2 * j) % 5) as f32 * 0.5 - 1.0);
        let lin = Linear {
            kernel: None,
            weight: w.clone(),
            bias: array![0.5, -1.0, 2.0],
        };
        let y = lin.forward(x.view(), Par::Seq, |_, _| {}).unwrap();
        for i in 0..rows {
            for o in 0..out {
                let want: f32 = (0..inp).map(|j| x[[i, j]] * w[[o, j]]).sum::<f32>() + lin.bias[o];
                assert_eq!(y[[i, o]], want, "row {i} col {o}"); // small integers: exact
            }
        }
        assert!(
            lin.forward(Array2::zeros((2, 6)).view(), Par::Seq, |_, _| {})
                .is_err()
        );
    }

    #[test]
    fn layer_norm_and_softmax_rows() {
        let ln = LayerNorm {
            gamma: array![1.0, 2.0],
            beta: array![0.0, 1.0],
            eps: 0.0,
        };
        let mut x = array![[1.0f32, 3.0]];
        ln.apply(x.view_mut());
        assert_eq!(x, array![[-1.0, 3.0]]);
        let mut p = array![
            [0.0f32, 0.0, 2.0f32.ln()],
            [1000.0, 1000.0, f32::NEG_INFINITY]
        ];
        softmax_rows(p.view_mut());
        assert_eq!(p, array![[0.25, 0.25, 0.5], [0.5, 0.5, 0.0]]);
    }
}
