//! Nonlinear (codebook) quantization: each weight is a short index into a small table of `f32`
//! levels placed where the weights are dense.
//!
//! - [`CodebookScheme`] → [`CodebookQuantized`]: 2^b levels (b = 1..=8) per tensor, per
//!   channel or per group, learned by (weighted) k-means, taken from a user's [`Grid`], or
//!   logarithmic (`±2^-k`); optionally over absmax-scaled blocks (the learned NF4).
//! - [`Bnb4`] → [`Bnb4Quantized`]: NF4 and FP4 exactly as bitsandbytes 0.50.2 on CPU (packed
//!   bytes, absmax, double quantization and dequantized values bit for bit).
//! - [`pack_indices`] / [`unpack_indices`]: the dense MSB-first index packing of both.
//!
//! ```
//! use modelopt_quantize::codebook::{Bnb4, CodebookScheme};
//! use modelopt_quantize::QuantScheme;
//!
//! // A bell-shaped weight matrix (a sum of four low-discrepancy uniforms).
//! let w = ndarray::Array2::from_shape_fn((64, 256), |(i, j)| {
//!     let k = (i * 256 + j) as f32;
//!     [0.618_034f32, 0.414_213, 0.732_050, 0.236_067].iter().map(|a| (k * a).fract() - 0.5).sum::<f32>()
//! });
//! let uniform = QuantScheme::int4().per_group(1, 64).quantize(&w)?;
//! let nf4 = Bnb4::nf4().quantize(&w)?;
//! let learned = CodebookScheme::learned_nf4(4, 64).quantize(&w)?;
//! let db = |m: modelopt_tensor_core::ErrorMetrics| m.sqnr_db;
//! assert!(db(learned.error_metrics(&w)?) > db(nf4.error_metrics(&w)?));
//! assert!(db(nf4.error_metrics(&w)?) > db(uniform.error_metrics(&w)?));
//! # Ok::<(), modelopt_quantize::QuantError>(())
//! ```

mod assign;
mod bits;
mod bnb;
mod bnb_kernel;
#[cfg(target_arch = "x86_64")]
mod bnb_simd;
mod bnb_tables;
mod grid;
mod kmeans;
mod quantized;
mod scheme;
mod sharing;
mod torch_sum;

pub use bits::{pack_indices, packed_len, unpack_indices};
pub use bnb::{Absmax, Bnb4, Bnb4Kind, Bnb4Quantized, CheckedBnb4, DOUBLE_QUANT_BLOCK};
pub use bnb_tables::{DYNAMIC_CODE, FP4_CODE, NF4_CODE};
pub use grid::Grid;
pub use quantized::CodebookQuantized;
pub use scheme::{CheckedCodebookScheme, CodebookScheme};
pub use sharing::Sharing;
