//! # modelopt-tensor-core
//!
//! What every modelopt technique shares, and nothing technique-specific:
//!
//! - [`Float`]: the element bound (`f32`, `f64`) the generic code is written against;
//! - [`Granularity`]: per tensor, per channel along an axis, per group of consecutive elements;
//! - [`stats`]: min/max and abs-max (whole tensor or along an axis), [`stats::Histogram`],
//!   percentiles by selection (`select_nth_unstable`, never a sort), finiteness checks that name
//!   the first offending index;
//! - [`ErrorMetrics`]: MSE, max abs error, SQNR in dB, cosine similarity between a tensor and its
//!   reconstruction;
//! - [`Par`]: the parallelism switch, a value passed to a call (sequential by default; `rayon`
//!   behind the `rayon` feature);
//! - [`CoreError`]: the base error type that each technique crate wraps.
//!
//! ## Feature flags
//! - `rayon`: enables `Par::Rayon` so kernels can split work across threads.
//!
//! ```
//! use modelopt_tensor_core::{stats, ErrorMetrics};
//! use ndarray::array;
//!
//! let w = array![[1.0f32, -3.0], [0.5, 2.0]];
//! assert_eq!(stats::abs_max(&w)?, 3.0);
//! let m = ErrorMetrics::between(&w, &w)?;
//! assert_eq!(m.mse, 0.0);
//! # Ok::<(), modelopt_tensor_core::CoreError>(())
//! ```

mod error;
mod float;
mod granularity;
mod metrics;
mod par;
pub mod stats;

pub use error::{CoreError, Result};
pub use float::Float;
pub use granularity::Granularity;
pub use metrics::ErrorMetrics;
pub use par::Par;
