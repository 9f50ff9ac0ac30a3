//! # modelopt-quantize
//!
//! Quantization: floats to small integers with scales.
//!
//! - [`Quantizer`]: the one-verb trait every quantizer implements.
//! - [`LinearQuantizer`]: the textbook fixed-scale `code = round(x * Q)`.
//! - [`QuantScheme`]: calibrated uniform schemes — 2..=8 bits, signed or unsigned, symmetric
//!   (narrow range), torch's full-range symmetric, or affine; per tensor, per channel, per group;
//!   codes of 4 bits or fewer packed two per byte ([`packing`]).
//! - [`observer`]: calibration fed batch after batch (min-max, moving average, percentile, MSE
//!   search, entropy/KL) and [`fake_quant`] for simulation and quantization-aware training.
//! - [`codebook`]: nonlinear quantization — NF4/FP4 exactly as bitsandbytes, k-means
//!   (weighted, per channel, over absmax-normalised blocks), logarithmic and user grids.
//! - [`ggml`]: the GGML block formats of llama.cpp (Q8_0, Q4_0, ..., Q2_K ... Q6_K).
//!
//! Conventions: rounding is half to even; `x` is coded `clamp(round(x * (1/scale)) + zero_point)`
//! with the `f32` reciprocal, as torch does, so [`QuantScheme::torch`] reproduces torch.ao's
//! scales, zero points, codes and dequantized values bit for bit (tests/torch_parity.rs).
//! Codes of 4 bits or fewer take a nibble each, the even element in the low nibble.
//! [`UniformQuantized::storage_bytes`] counts codes, f32 scales and (affine) one byte per zero
//! point.
//!
//! Speed: the per-tensor, outer-axis per-channel and inner-axis per-group layouts run one fused
//! pass per 16 KiB tile (range, parameters, codes, packing) compiled for AVX-512, AVX2 or the
//! baseline ISA and chosen at run time; [`CheckedScheme::quantize_par`] splits the work over
//! threads.
//!
//! ```
//! use modelopt_quantize::{LinearQuantizer, QuantScheme};
//! use ndarray::array;
//!
//! let w = array![[0.1f32, -0.2, 0.3, 0.4], [0.5, -0.6, 0.7, -0.8]];
//! assert_eq!(LinearQuantizer::new(10.0).apply(&w)?.codes(), array![[1, -2, 3, 4], [5, -6, 7, -8]]);
//! let q = QuantScheme::int8().per_channel(0).quantize(&w)?;
//! println!("{:.1} dB in {} bytes", q.error_metrics(&w)?.sqnr_db, q.storage_bytes());
//! # Ok::<(), modelopt_quantize::QuantError>(())
//! ```

pub mod awq;
pub mod codebook;
mod error;
pub mod fake_quant;
pub mod ggml;
pub mod gptq;
mod kernel;
mod layout;
mod linear;
pub mod observer;
pub mod packing;
mod params;
mod quantized;
mod quantizer;
mod scheme;
mod uniform;

pub use error::{QuantError, Result};
pub use fake_quant::FakeQuantized;
pub use linear::{LinearQuantized, LinearQuantizer};
pub use params::QuantParams;
pub use quantized::UniformQuantized;
pub use quantizer::Quantizer;
pub use scheme::{CheckedScheme, QuantMode, QuantScheme};
