#![doc = include_str!("../README.md")]
//!
//! ## Crates
//!
//! | module | crate | what |
//! |---|---|---|
//! | [`quantize`] | `modelopt-quantize` | linear and calibrated uniform schemes, observers, GGML block formats, codebooks (NF4/FP4, k-means) |
//! | [`prune`] | `modelopt-prune` | criteria, structures, masks, schedules, shrinking, sparse kernels |
//! | [`distill`] | `modelopt-distill` | the `Distiller` trait, Hinton KD, the trainer, the digits data |
//! | [`nn`] | `modelopt-nn` | dense layers, activations, losses, optimizers |
//! | [`io`] | `modelopt-io` | safetensors and GGUF |
//! | [`tensor_core`] | `modelopt-tensor-core` | statistics, metrics, granularity, errors |
//!
//! [`Pipeline`] composes the three techniques: distill, prune and fine-tune, quantize.
//!
//! ## Feature flags
//! - `rayon`: enables `Par::Rayon(n)` in the kernels that take a [`Par`](tensor_core::Par).

mod error;
pub mod pipeline;
pub mod prelude;
pub mod quantized;

pub use error::{Error, Result};
pub use modelopt_distill as distill;
pub use modelopt_io as io;
pub use modelopt_kernels as kernels;
pub use modelopt_nn as nn;
pub use modelopt_prune as prune;
pub use modelopt_quantize as quantize;
pub use modelopt_tensor_core as tensor_core;
pub use ndarray;
pub use pipeline::Pipeline;
