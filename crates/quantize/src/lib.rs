//! # modelopt-quantize
//!
//! Quantization: floats to small integers with scales.
//!
//! - [`ggml`]: the GGML block formats of llama.cpp (Q8_0, Q4_0, ..., Q4_K, Q6_K).

mod error;
pub mod ggml;

pub use error::{QuantError, Result};
