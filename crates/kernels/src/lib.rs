//! # modelopt-kernels
//!
//! Quantized compute: the products that let a quantized model run in integers instead of being
//! dequantized to f32 first.
//!
//! - **int8 x int8 -> int32** ([`PackedI8`], [`gemm_i8`], [`gemm_i8_i64`]): weights packed once
//!   into 64-row panels, activations as u8 codes with a zero point (what `vpdpbusd` multiplies;
//!   int8 activations are shifted by 128 and `128 * sum(w_row)`, precomputed per row,
//!   subtracted). Results are exactly the integer dot products: the K loop runs in chunks of
//!   [`K_CHUNK`] whose sums cannot wrap, combined in `i64`; the `i32` form is an
//!   [`KernelError::Overflow`] error when K exceeds [`MAX_K_I32`].
//! - **W8A8** ([`w8a8`], [`w8a8_with`], [`w8a8_i8_with`]): per-output-channel weight scales,
//!   activations quantized per token at run time or per tensor from calibration
//!   ([`ActScale`], [`QuantizedActivations`]), and the fused [`Epilogue`] (scales, bias, ReLU)
//!   with f32 output or int8 output through [`Requantize`].
//! - **Weight-only low-bit** ([`PackedBlocks`], [`BlockFormat`]): GGML Q8_0, Q4_0, Q4_K blocks
//!   (from `modelopt_quantize::ggml`) and grouped int4, times activations quantized on the fly
//!   to 8-bit blocks as llama.cpp does (`ggml_vec_dot_q4_0_q8_0`; Q8_K for Q4_K).
//!
//! Every kernel exists three times, chosen at run time ([`Isa`]): AVX-512 VNNI (`vpdpbusd`),
//! AVX2 (`vpmaddubsw` arranged so it never saturates: see the int8 and block kernels), and
//! portable Rust. The tests compare each SIMD kernel with the portable one bit for bit, and the
//! portable ones with a written-out reference (exact `i64` sums for int8; the same block
//! arithmetic in f64 to 1e-6 relative for the weight-only formats). Work is split over output
//! rows with a [`Par`] value; the result is the same for any thread count. `unsafe` appears only
//! in the SIMD kernels (`int8/x86.rs`, `blocks/x86.rs`), each behind run-time feature detection.
//!
//! ```
//! use modelopt_kernels::{w8a8, ActScale, Epilogue, PackedI8, Par};
//! // y = x W^T + b with W = [[1, 1], [4, -4]]: int8 codes and one scale per row.
//! let w = PackedI8::new(&[127, 127, 127, -127], 2, 2)?;
//! let epi = Epilogue::new(vec![1.0 / 127.0, 4.0 / 127.0])?.bias(vec![0.5, 0.0])?;
//! let mut y = [0f32; 2];
//! w8a8(Par::Seq, &[1.0, 1.0], 1, &w, ActScale::PerToken, &epi, &mut y)?;
//! assert!((y[0] - 2.5).abs() < 0.02 && (y[1] - 0.0).abs() < 0.05);
//! # Ok::<(), modelopt_kernels::KernelError>(())
//! ```
//!
//! Layers built on these kernels (`QuantizedLinear`, `QuantizedMlp`) live in the `modelopt`
//! facade, which composes them with the network and file crates.

mod act;
mod aligned;
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
