//! # modelopt-kernels
//!
//! Quantized compute.
mod act;
mod blocks;
mod epilogue;
mod error;
mod int8;
mod isa;
mod w8a8;

pub use act::{ActScale, QuantizedActivations};
pub use blocks::{BlockFormat, PackedBlocks};
pub use epilogue::{Epilogue, Requantize};
pub use error::{KernelError, Result};
pub use int8::{
    K_CHUNK, MAX_K_I32, PackedI8, gemm_i8, gemm_i8_i64, gemm_i8_i64_with, gemm_i8_with,
};
pub use isa::Isa;
pub use modelopt_tensor_core::Par;
pub use w8a8::{w8a8, w8a8_i8_with, w8a8_with};
