//! # modelopt-kernels
//!
//! Quantized compute.
mod error;
mod int8;
mod isa;

pub use error::{KernelError, Result};
pub use int8::{
    K_CHUNK, MAX_K_I32, PackedI8, gemm_i8, gemm_i8_i64, gemm_i8_i64_with, gemm_i8_with,
};
pub use isa::Isa;
pub use modelopt_tensor_core::Par;
