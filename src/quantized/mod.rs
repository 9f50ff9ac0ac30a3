//! Quantized models that run in integers: [`QuantizedLinear`] (a dense layer quantized with a
//! [`LinearScheme`]: W8A8 dynamic or static, or weight-only Q8_0 / Q4_0 / Q4_K / grouped int4)
//! and [`QuantizedMlp`] (a whole trained [`Mlp`](modelopt_nn::Mlp) converted in one call,
//! calibrated through observers, saved to and loaded from safetensors). The products run in
//! `modelopt-kernels`.
//!
//! Not yet: `QuantizedConv2d` (convolution is being added to `nn` on another branch; a quantized
//! convolution would lower to the same int8 GEMM over im2col patches).
//!
//! These types live in the facade rather than in `modelopt-kernels` or `modelopt-nn`: they
//! compose the network (`nn`), the observers (`quantize`), the kernels and the file format
//! (`io`), and the kernels crate stays free of the network and file crates (see
//! `docs/ARCHITECTURE.md`).

mod file;
mod linear;
mod mlp;

pub use file::QUANTIZED_MLP_KEY;
pub use linear::{LinearScheme, QuantizedLinear};
pub use mlp::{Calibration, QuantizedMlp};

#[cfg(test)]
mod tests;
