//! AWQ (Lin et al. 2023): activation-aware per-input-channel scales searched before
//! quantization.
//!
//! Input channels that carry large activations matter more; scaling their weight columns up by
//! `s_j` (and the activations down by `1/s_j`, folded into the op that produces them) gives
//! them finer effective steps. The reference (`llm-awq`, `auto_scale.py`) tries
//! `s = mean|x|^α` for `α` in `{0, 1/20, ..., 19/20}`, normalised by `sqrt(max(s) min(s))`,
//! and keeps the `α` whose quantized, scaled weights give the smallest output error.
//!
//! Here the output error of a candidate is measured on the same calibration statistics GPTQ
//! uses: for weights `W` and their effective quantized weights `Q(W diag(s)) diag(1/s)`, with
//! `Δ` the difference, `||Δ Xᵀ||² = (n/2) tr(Δ H Δᵀ)` for `H = 2XᵀX/n` — exactly the mean
//! squared output error of the linear layers over all calibration tokens, with no second pass
//! over the data. (The reference measures the error of the whole block behind the scaled
//! layers, e.g. the attention module's output for q/k/v; this measures the linear layers'
//! outputs.) Several weights that read the same input (q, k and v) share one scale vector, as
//! they must when it is folded into the op before them; their errors are summed.
//! `α = 0` gives `s = 1`, plain quantization, so the chosen scales never do worse than it on the
//! calibration objective. The reference's second step (clipping search) is not done.
//!
//! **Folding the scales.** The stored tensor is `Q(W diag(s))`; the layer's input must then be
//! divided by `s`, which only works where the op producing that input is linear per channel
//! and feeds nothing else:
//!
//! - pre-LayerNorm transformers (LLaMA, OPT): the norm before q/k/v and before the FFN feeds
//!   only those layers (the residual is taken before it), so its gain (and bias) is divided
//!   by `s`; the attention output projection's scale goes into v's rows (the attention context
//!   is a per-head linear combination of v's outputs); a gated FFN's down projection into the
//!   up projection.
//! - BERT (post-LayerNorm, as MiniLM): a LayerNorm's output is both the next sublayer's input
//!   *and* the residual added after it, so dividing its gamma/beta by `s` would change the
//!   residual stream: q/k/v and the FFN's first layer **cannot** be folded exactly. The
//!   attention output projection can (into the value projection's weight rows and bias). The
//!   FFN's second layer reads `GELU(...)`, which is not homogeneous: **cannot** be folded.
//!   Keeping `1/s` as an explicit per-input-column multiplier would need a field the stored
//!   formats (GGML blocks, `UniformQuantized`) do not have; so on BERT only
//!   `attention.output.dense` gets AWQ scales.
//!
//! [`Hessian::scaled_inputs`] gives the Hessian of the scaled inputs `X / s`, so GPTQ can run
//! on `W diag(s)` after AWQ.
//!
//! ```
//! use modelopt_quantize::{QuantScheme, awq::Awq, gptq::HessianAccumulator};
//! use ndarray::{Array2, array};
//!
//! let w = Array2::from_shape_fn((4, 8), |(i, j)| ((i * 5 + j * 3) % 7) as f32 - 3.0);
//! // Channel 0 carries activations 50x larger than the others.
//! let x = Array2::from_shape_fn((64, 8), |(t, j)| {
//!     let v = ((t * 7 + j * 11) % 13) as f32 / 13.0 - 0.5;
//!     if j == 0 { 50.0 * v } else { v }
//! });
//! let mut acc = HessianAccumulator::new(8);
//! acc.add_batch(&x)?;
//! let scheme = QuantScheme::new(3).per_group(1, 8).check()?;
//! let found = Awq::new().check()?.search(&[&w], &acc.finish()?, &acc.mean_abs()?, |w| {
//!     Ok(scheme.quantize(w)?.dequantize())
//! })?;
//! assert!(found.error <= found.error_unscaled);
//! assert_eq!(found.scales.len(), 8);
//! # Ok::<(), modelopt_quantize::QuantError>(())
//! ```

use modelopt_tensor_core::{CoreError, stats::check_finite};
use ndarray::{Array1, Array2, ArrayRef1, ArrayRef2, Axis};

use crate::Result;
use crate::gptq::Hessian;

/// AWQ's scale search settings (a builder; [`Awq::check`] validates). Default: a grid of 20
/// values of `α`, as the reference.
///
/// ```
/// assert!(modelopt_quantize::awq::Awq::new().grid(0).check().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Awq {
    grid: usize,
}

impl Default for Awq {
    fn default() -> Self {
        Awq::new()
    }
}

impl Awq {
    /// A grid of 20 values of `α` (`0, 0.05, ..., 0.95`).
    pub fn new() -> Self {
        Awq { grid: 20 }
    }

    /// Number of `α` values tried: `i / grid` for `i` in `0..grid` (at least 1).
    pub fn grid(mut self, grid: usize) -> Self {
        self.grid = grid;
        self
    }

    /// Validates the settings.
    pub fn check(&self) -> Result<CheckedAwq> {
        if self.grid == 0 {
            return Err(CoreError::invalid("grid", "must be at least 1").into());
        }
        Ok(CheckedAwq(*self))
    }
}

/// Validated AWQ settings (from [`Awq::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedAwq(Awq);

/// The scales AWQ chose and the calibration errors behind the choice.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AwqScales {
    /// Per-input-channel scales `s`: quantize `W diag(s)` and divide the inputs by `s`.
    pub scales: Array1<f32>,
    /// The exponent chosen.
    pub alpha: f32,
    /// `sum over weights of tr(Δ H Δᵀ)` with the chosen scales.
    pub error: f64,
    /// The same without scaling (`α = 0`).
    pub error_unscaled: f64,
}

impl CheckedAwq {
    /// Searches the scales for `weights` (each `[out_k, in]`, all reading the same input)
    /// given the input's Hessian and mean `|x|` per channel. `fake_quant` maps a weight to its
    /// quantized-dequantized values (the target format). Errors on an empty list, a width
    /// other than the Hessian's, non-finite weights or statistics, or an error from
    /// `fake_quant`.
    pub fn search<F>(
        &self,
        weights: &[&ArrayRef2<f32>],
        hessian: &Hessian,
        mean_abs: &ArrayRef1<f64>,
        mut fake_quant: F,
    ) -> Result<AwqScales>
    where
        F: FnMut(&Array2<f32>) -> Result<Array2<f32>>,
    {
        let n = hessian.features();
        if weights.is_empty() {
            return Err(CoreError::Empty {
                what: "AWQ weights",
            }
            .into());
        }
        for w in weights {
            if w.ncols() != n {
                return Err(CoreError::ShapeMismatch {
                    expected: vec![w.nrows(), n],
                    found: w.shape().to_vec(),
                }
                .into());
            }
            check_finite(*w)?;
        }
        if mean_abs.len() != n {
            return Err(CoreError::ShapeMismatch {
                expected: vec![n],
                found: vec![mean_abs.len()],
            }
            .into());
        }
        check_finite(mean_abs)?;
        let h32 = hessian.matrix().mapv(|v| v as f32);
        let mut best: Option<(f64, f32, Array1<f32>)> = None;
        let mut unscaled = f64::NAN;
        for i in 0..self.0.grid {
            let alpha = i as f32 / self.0.grid as f32;
            let s = scales_for(mean_abs, alpha);
            let mut err = 0.0;
            for &w in weights {
                let row = s.view().insert_axis(Axis(0));
                let scaled = w.to_owned() * row;
                let q = fake_quant(&scaled)?;
                if q.dim() != w.dim() {
                    return Err(CoreError::ShapeMismatch {
                        expected: w.shape().to_vec(),
                        found: q.shape().to_vec(),
                    }
                    .into());
                }
                let delta = w.to_owned() - q / row;
                let e = delta.dot(&h32);
                err += e
                    .iter()
                    .zip(&delta)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum::<f64>();
            }
            if !err.is_finite() {
                return Err(CoreError::invalid(
                    "fake_quant",
                    format!("AWQ error is not finite at alpha {alpha}"),
                )
                .into());
            }
            if i == 0 {
                unscaled = err;
            }
            if best.as_ref().is_none_or(|b| err < b.0) {
                best = Some((err, alpha, s));
            }
        }
        let (error, alpha, scales) = best.ok_or(CoreError::Empty { what: "AWQ grid" })?;
        Ok(AwqScales {
            scales,
            alpha,
            error,
            error_unscaled: unscaled,
        })
    }
}

/// `s = max(mean|x|, 1e-4)^α / sqrt(max(s) min(s))` (the reference's formula).
fn scales_for(mean_abs: &ArrayRef1<f64>, alpha: f32) -> Array1<f32> {
    let s = mean_abs.mapv(|m| (m as f32).max(1e-4).powf(alpha));
    let (lo, hi) = s
        .iter()
        .fold((f32::INFINITY, 0f32), |(l, h), &v| (l.min(v), h.max(v)));
    let norm = (hi * lo).sqrt();
    s.mapv(|v| v / norm)
}
