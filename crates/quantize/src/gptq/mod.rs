//! GPTQ (Frantar et al. 2022): quantization that compensates each column's rounding error
//! with the layer's input statistics, from calibration data.
//!
//! 1. Feed a [`HessianAccumulator`] the layer's inputs `X` (`[tokens, in]`) batch by batch;
//!    [`HessianAccumulator::finish`] gives the [`Hessian`] `H = 2 XᵀX / n`.
//! 2. [`Gptq`] (checked into [`CheckedGptq`]) quantizes the weight `[out, in]` against it to a
//!    uniform scheme ([`CheckedGptq::quantize_uniform`], stored as
//!    [`UniformQuantized`](crate::UniformQuantized)) or to GGML Q4_0 / Q8_0 blocks
//!    ([`CheckedGptq::quantize_ggml`]).
//!
//! The same sweep with a mask instead of a grid is SparseGPT ([`CheckedGptq::prune`],
//! [`Sparsity`]): pruning that updates the kept weights.
//!
//! The algorithm follows the reference implementation (IST-DASLab `gptq.py`, `fasterquant`):
//!
//! - **Dead columns**: an input feature with `H_jj = 0` gets `H_jj = 1` and its weights are
//!   set to 0 (they never see a non-zero input in the calibration data).
//! - **Dampening**: `damp * mean(diag H)` (default 1%) is added to the diagonal. If the
//!   Cholesky factorisation still fails, the dampening is raised tenfold up to
//!   [`Gptq::max_damp_raises`] times (reported in [`GptqReport::damp_raises`]); after that
//!   [`QuantError::NotPositiveDefinite`](crate::QuantError::NotPositiveDefinite) names the
//!   column. (The reference fails at once.)
//! - **Inverse factor**: the upper Cholesky factor `U` of `H⁻¹`; column `j`'s error
//!   `(w - q) / U_jj` is spread over the later columns through row `j` of `U`.
//! - **Lazy blocks** of 128 columns: inside a block the update is applied column by column,
//!   to the rest of the matrix once per block as one GEMM.
//! - **Activation order** (optional): columns in order of decreasing `H_jj`; the result is
//!   stored in the original order.
//! - **Groups**: a group's parameters (uniform scale/zero point per row, or the GGML block
//!   scale) are computed when GPTQ reaches the group's first column, from the group's
//!   *current* weights, i.e. with every update from the columns already quantized. Without
//!   activation order that is the reference's rule for group size 128 = block size; the
//!   reference computes them from the weights as of the last block boundary when the group is
//!   smaller than the block (it reads `W`, not the block's working copy `W1`), which is the
//!   same for groups aligned with blocks and slightly staler otherwise. With activation order
//!   the groups stay contiguous in the original column order (so the stored format needs no
//!   `g_idx`), fitted when their first column in processing order is reached (the reference
//!   would permute the groups; its `static_groups` fits them up front instead).
//!   Per-tensor and per-channel parameters are fitted at the first column, i.e. from the
//!   weights with dead columns zeroed.
//! - **GGML blocks**: Q4_0's `d = max / -8` (`max` the first weight of largest magnitude) and
//!   Q8_0's `d = amax / 127` from the block's current weights; codes `trunc(x / d + 8.5)`
//!   (Q4_0) or `round(x / d)` half away from zero (Q8_0) with llama.cpp's f32 reciprocal, then
//!   clamped to the code range (GPTQ's updates can push a later weight beyond the block's
//!   largest one); the error is measured against the stored (f16 `d`) reconstruction.
//!
//! All of it is in f64 (the reference works in f32).
//!
//! ```
//! use modelopt_quantize::{QuantScheme, gptq::{Gptq, HessianAccumulator}};
//! use ndarray::Array2;
//!
//! let w = Array2::from_shape_fn((4, 64), |(i, j)| ((i * 13 + j * 7) % 19) as f32 / 19.0 - 0.5);
//! let mut acc = HessianAccumulator::new(64);
//! for b in 0..4 {
//!     let x = Array2::from_shape_fn((32, 64), |(t, j)| (((b * 32 + t) * 11 + j * 5) % 23) as f32 / 23.0);
//!     acc.add_batch(&x)?;
//! }
//! let scheme = QuantScheme::int4().affine().per_group(1, 32).check()?;
//! let out = Gptq::new().check()?.quantize_uniform(&w, &acc.finish()?, &scheme)?;
//! assert_eq!(out.report.dead_columns, 0);
//! assert_eq!(out.quantized.storage_bytes(), 4 * 64 / 2 + 8 * (4 + 1));
//! # Ok::<(), modelopt_quantize::QuantError>(())
//! ```

mod cholesky;
mod grid;
mod hessian;
mod solver;
mod sparse;
#[cfg(test)]
mod test_util;

pub use grid::GptqTarget;
pub use hessian::{Hessian, HessianAccumulator};
pub use solver::{CheckedGptq, Gptq, GptqOutput, GptqReport};
pub use sparse::{SparseOutput, Sparsity};
