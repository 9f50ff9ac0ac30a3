//! The GGML block formats of llama.cpp, bit-exact with its reference quantizers.
//!
//! A row of `n` floats (`n` a multiple of the type's block size) becomes `n / block_size`
//! blocks of `type_size` bytes each.
//!
//! - Row functions: [`quantize_row`] / [`dequantize_row`] on caller-provided buffers,
//!   [`quantize`] / [`dequantize`] returning new buffers, and [`quantize_rows`] /
//!   [`dequantize_rows`] splitting whole rows over threads with a [`Par`] value.
//! - One `#[repr(C)]` block type per format ([`BlockQ8_0`], [`BlockQ4_0`], ..., [`BlockQ2_K`],
//!   [`BlockQ3_K`], [`BlockQ4_K`], [`BlockQ5_K`], [`BlockQ6_K`], [`BlockIQ4_NL`],
//!   [`BlockIQ4_XS`]) with `quantize` / `dequantize` / `to_bytes` / `from_bytes` and the
//!   associated constants `TYPE`, `BLOCK_SIZE`, `TYPE_SIZE`.
//! - Importance-weighted quantization (llama.cpp's `quant_weights`, `llama-quantize
//!   --imatrix`): [`quantize_row_imatrix`] / [`quantize_rows_imatrix`], one weight per column,
//!   byte-exact with `ggml_quantize_chunk(type, ..., imatrix)` for Q4_0..Q5_1, Q2_K..Q6_K,
//!   IQ4_NL and IQ4_XS (ignored by Q8_0 and the float types, as in llama.cpp).
//!
//! Every quantizer reproduces llama.cpp's reference C code (`quantize_row_*_ref`) and gguf-py's
//! `gguf.quants.quantize` byte for byte, including their rounding quirks: Q8_0 rounds half away
//! from zero, Q4_0/Q4_1/Q5_0/Q5_1 truncate `x * id + 8.5` (`16.5`, `0.5`) evaluated with a
//! separate f32 multiply and add, and the K-quants round half to even (`nearest_int`) with the
//! C evaluation order kept.
//!
//! K-quants and the final re-derivation pass: `quantize_row_q{2,3,4,5,6}_K_ref` in
//! `ggml-quants.c` end by recomputing every code from the stored (f16 and 4/6/8-bit) scales,
//! e.g. `nearest_int((x + dm) / d)` for Q4_K. The reference bytes of the tests (llama.cpp
//! c392e509, `ggml_quantize_chunk`, no importance matrix) hold the codes of the scale search
//! instead: re-deriving would change the codes of 1480 / 792 / 810 / 1345 / 1296 of their
//! 4096 / 4096 / 2048 / 2048 / 4096 sub-blocks (Q2_K / Q3_K / Q4_K / Q5_K / Q6_K, on 56 to 58
//! of the 64 rows), while this crate, which keeps the search codes, matches all 64 rows of
//! every type byte for byte. The scales, mins, `d` and `dmin` are the same either way; files
//! from a llama.cpp build that does run the pass would differ in those codes only.
//! `llama-quantize` (c392e509) does run it: its K-quant tensors equal this crate's blocks after
//! [`rederive_codes`], which the `modelopt quantize` command applies (pinned by SHA-256 in
//! `crates/cli/tests/llama_quantize.rs`).
//!
//! IQ4_NL and IQ4_XS (`quantize_iq4_nl` / `quantize_iq4_xs`, which `ggml_quantize_chunk` runs):
//! 4-bit indices into the 16 non-uniform levels [`KVALUES_IQ4NL`], whose scale per 32 weights is
//! searched among 16 candidates, each scored by a weighted least-squares fit to the nearest
//! levels; IQ4_XS then stores the block scales in 6 bits under an f16 super-block scale and
//! re-derives the indices from them. The search runs the 16 candidates as 16 lanes (one AVX-512
//! register, the nearest level found by bucketed thresholds; elsewhere a branch-free loop the
//! compiler vectorises), and matches llama.cpp c392e509's bytes on all reference rows, with and
//! without importance weights. One deliberate difference: where every importance weight of a
//! block is 0, c392e509 computes a scale of 0/0 (NaN in the file); this crate writes 0, as
//! newer llama.cpp does.
//! Importance-weighted quantization ([`quantize_row_imatrix`], [`quantize_rows_imatrix`]) ports
//! llama.cpp's `quantize_row_*_impl` with `quant_weights` (Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K, and
//! IQ4_NL/IQ4_XS through their own search above;
//! [`GgmlType::uses_importance`]): per-element weights `importance * sqrt(sigma2 + x^2)` (Q6_K:
//! the importance itself) in `make_qx_quants` / `make_qkx3_quants`, and the K-quants' sub-block
//! scales fitted by the weighted `make_qp_quants` / `make_qx_quants`. All 64 reference rows of
//! every type match llama.cpp c392e509 byte for byte; as for the unweighted K-quants, its bytes
//! hold the codes of the search (re-deriving would change 58-59 of the 64 rows per K type), and
//! its `make_qp_quants` tests `!max` and divides unguarded, so a super-block whose squares
//! underflow to zero (all weights 0) gets a NaN scale, in llama.cpp and here.
//!
//! The hot loops are plain Rust over fixed-size arrays, compiled twice: for the baseline target
//! and, chosen at run time, for AVX2 (same source, so same results). On CPUs with AVX-512
//! (F, BW, DQ), Q8_0 and Q4_0 rows and the `make_qkx2_quants` search of Q2_K/Q4_K/Q5_K (four
//! super-blocks at a time) run intrinsics kernels, each unit-tested equal to the portable code.
//!
//! ```
//! use modelopt_quantize::ggml::{self, GgmlType};
//! let w: Vec<f32> = (0..64).map(|i| (i as f32 - 32.0) / 8.0).collect();
//! let q = ggml::quantize(GgmlType::Q8_0, &w)?;
//! assert_eq!(q.len(), 2 * 34);
//! let back = ggml::dequantize(GgmlType::Q8_0, &q, w.len())?;
//! assert!(w.iter().zip(&back).all(|(a, b)| (a - b).abs() < 0.02));
//! # Ok::<(), modelopt_quantize::QuantError>(())
//! ```

mod error_sums;
pub(crate) mod f16_bits;
mod float;
mod imatrix;
mod iq4;
mod k_quants;
mod q4;
mod q5;
mod q8_0;
mod rows;
pub(crate) mod simd;
#[cfg(target_arch = "x86_64")]
mod simd_avx512;

pub use error_sums::error_sums;
pub use imatrix::{quantize_row_imatrix, quantize_rows_imatrix};
pub use iq4::KVALUES_IQ4NL;
pub use iq4::nl::BlockIQ4_NL;
pub use iq4::xs::BlockIQ4_XS;
pub use k_quants::q2_k::BlockQ2_K;
pub use k_quants::q3_k::BlockQ3_K;
pub use k_quants::q4_k::BlockQ4_K;
pub use k_quants::q5_k::BlockQ5_K;
pub use k_quants::q6_k::BlockQ6_K;
pub use k_quants::{QK_K, rederive_codes};
pub use modelopt_tensor_core::Par;
pub use q4::{BlockQ4_0, BlockQ4_1};
pub use q5::{BlockQ5_0, BlockQ5_1};
pub use q8_0::BlockQ8_0;
pub use rows::{
    dequantize, dequantize_row, dequantize_rows, quantize, quantize_row, quantize_rows,
};

/// A GGML tensor type: its GGUF type id, block size (elements) and block byte size.
///
/// ```
/// use modelopt_quantize::ggml::GgmlType;
/// assert_eq!(GgmlType::Q4_0.block_size(), 32);
/// assert_eq!(GgmlType::Q4_0.type_size(), 18);
/// assert_eq!(GgmlType::Q4_0.row_bytes(64)?, 36);
/// assert_eq!(GgmlType::from_id(12), Some(GgmlType::Q4_K));
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// 32 weights: f16 scale + 32 x 4-bit codes (offset 8).
    Q4_0,
    /// 32 weights: f16 scale, f16 min + 32 x 4-bit codes.
    Q4_1,
    /// 32 weights: f16 scale, 32 high bits, 32 x 4-bit low parts (offset 16).
    Q5_0,
    /// 32 weights: f16 scale, f16 min, 32 high bits, 32 x 4-bit low parts.
    Q5_1,
    /// 32 weights: f16 scale + 32 x i8.
    Q8_0,
    /// 256-weight super-block, 2-bit.
    Q2_K,
    /// 256-weight super-block, 3-bit.
    Q3_K,
    /// 256-weight super-block, 4-bit with 6-bit sub-block scales and mins.
    Q4_K,
    /// 256-weight super-block, 5-bit.
    Q5_K,
    /// 256-weight super-block, 6-bit with 8-bit sub-block scales.
    Q6_K,
    /// 32 weights: f16 scale + 32 x 4-bit indices into the non-uniform levels [`KVALUES_IQ4NL`].
    IQ4_NL,
    /// 256-weight super-block of 8 x 32: f16 scale, 6-bit block scales, 4-bit indices into
    /// [`KVALUES_IQ4NL`].
    IQ4_XS,
    /// bfloat16.
    BF16,
}

impl GgmlType {
    /// Every type this crate knows, in GGUF id order.
    pub const ALL: [GgmlType; 15] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::IQ4_NL,
        GgmlType::IQ4_XS,
        GgmlType::BF16,
    ];

    /// The type id used in GGUF tensor infos (`enum ggml_type`).
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::ggml::GgmlType::Q8_0.id(), 8);
    /// ```
    pub const fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q2_K => 10,
            GgmlType::Q3_K => 11,
            GgmlType::Q4_K => 12,
            GgmlType::Q5_K => 13,
            GgmlType::Q6_K => 14,
            GgmlType::IQ4_NL => 20,
            GgmlType::IQ4_XS => 23,
            GgmlType::BF16 => 30,
        }
    }

    /// The type with GGUF id `id`, if this crate knows it.
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::ggml::GgmlType::from_id(4), None); // Q4_2 was removed
    /// ```
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.id() == id)
    }

    /// Elements per block.
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::ggml::GgmlType::Q6_K.block_size(), 256);
    /// ```
    pub const fn block_size(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q8_0
            | GgmlType::IQ4_NL => 32,
            GgmlType::Q2_K
            | GgmlType::Q3_K
            | GgmlType::Q4_K
            | GgmlType::Q5_K
            | GgmlType::Q6_K
            | GgmlType::IQ4_XS => 256,
        }
    }

    /// Bytes per block.
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::ggml::GgmlType::Q8_0.type_size(), 34);
    /// ```
    pub const fn type_size(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q5_1 => 24,
            GgmlType::Q8_0 => 34,
            GgmlType::Q2_K => 84,
            GgmlType::Q3_K => 110,
            GgmlType::Q4_K => 144,
            GgmlType::Q5_K => 176,
            GgmlType::Q6_K => 210,
            GgmlType::IQ4_NL => 18,
            GgmlType::IQ4_XS => 136,
        }
    }

    /// The lower-case name llama.cpp uses (`"q4_0"`, `"q4_K"`, `"f32"`, ...).
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::ggml::GgmlType::Q4_K.name(), "q4_K");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "f32",
            GgmlType::F16 => "f16",
            GgmlType::Q4_0 => "q4_0",
            GgmlType::Q4_1 => "q4_1",
            GgmlType::Q5_0 => "q5_0",
            GgmlType::Q5_1 => "q5_1",
            GgmlType::Q8_0 => "q8_0",
            GgmlType::Q2_K => "q2_K",
            GgmlType::Q3_K => "q3_K",
            GgmlType::Q4_K => "q4_K",
            GgmlType::Q5_K => "q5_K",
            GgmlType::Q6_K => "q6_K",
            GgmlType::IQ4_NL => "iq4_nl",
            GgmlType::IQ4_XS => "iq4_xs",
            GgmlType::BF16 => "bf16",
        }
    }

    /// Bits of storage per weight (`type_size * 8 / block_size`).
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::ggml::GgmlType::Q4_0.bits_per_weight(), 4.5);
    /// ```
    pub fn bits_per_weight(self) -> f64 {
        (self.type_size() * 8) as f64 / self.block_size() as f64
    }

    /// Bytes of a row of `n` elements; an error unless `n` is a multiple of the block size.
    ///
    /// ```
    /// assert!(modelopt_quantize::ggml::GgmlType::Q4_K.row_bytes(100).is_err());
    /// ```
    pub fn row_bytes(self, n: usize) -> crate::Result<usize> {
        let bs = self.block_size();
        if !n.is_multiple_of(bs) {
            return Err(modelopt_tensor_core::CoreError::invalid(
                "row length",
                format!(
                    "{n} is not a multiple of the {} block size {bs}",
                    self.name()
                ),
            )
            .into());
        }
        Ok(n / bs * self.type_size())
    }
}
