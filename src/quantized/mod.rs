//! Quantized models that run in integers: [`QuantizedLinear`] (a dense layer quantized with a
//! [`LinearScheme`]: W8A8 dynamic or static, or weight-only Q8_0 / Q4_0 / Q4_K / grouped int4),
//! [`QuantizedConv2d`] (a convolution lowered to the same products over im2col patch rows),
//! [`QuantizedMlp`] (a whole trained [`Mlp`](modelopt_nn::Mlp) converted in one call,
//! calibrated through observers, saved to and loaded from safetensors) and
//! [`QuantizedSequential`] (a whole CNN: batch norm folded, convolutions and linear layers in
//! integers, the rest in f32). The products run in `modelopt-kernels`.
//!
//! These types live in the facade rather than in `modelopt-kernels` or `modelopt-nn`: they
//! compose the network (`nn`), the observers (`quantize`), the kernels and the file format
//! (`io`), and the kernels crate stays free of the network and file crates (see
//! `docs/ARCHITECTURE.md`).

mod conv;
mod file;
mod linear;
mod mlp;
mod sequential;
mod sequential_file;

pub use conv::QuantizedConv2d;
pub use file::QUANTIZED_MLP_KEY;
pub use linear::{LinearScheme, QuantizedLinear};
pub use mlp::{Calibration, QuantizedMlp};
pub use sequential::{QuantizedLayer, QuantizedSequential};
pub use sequential_file::QUANTIZED_SEQUENTIAL_KEY;

#[cfg(test)]
mod tests;
