//! IQ4_NL: 32 weights as 4-bit indices into [`KVALUES_IQ4NL`] with one f16 scale.

use half::f16;

use super::{KV, Kernel, block_scale, block_weights, detect, pack, sigma2};
use crate::ggml::f16_bits::{f16_to_f32, f32_to_f16};

#[cfg(doc)]
use super::KVALUES_IQ4NL;

/// One IQ4_NL block: `x[j] ≈ d * KVALUES_IQ4NL[q[j]]`, 18 bytes (`block_iq4_nl`).
///
/// ```
/// use modelopt_quantize::ggml::{BlockIQ4_NL, KVALUES_IQ4NL};
/// let x: [f32; 32] = std::array::from_fn(|i| (i as f32 - 15.5) / 4.0);
/// let b = BlockIQ4_NL::quantize(&x);
/// assert_eq!(BlockIQ4_NL::from_bytes(&b.to_bytes()), b);
/// let y = b.dequantize();
/// assert_eq!(y[0], b.d.to_f32() * KVALUES_IQ4NL[(b.qs[0] & 15) as usize] as f32);
/// // The widest gap between levels is 24 / 127 of the largest weight (3.875).
/// assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 0.4));
/// ```
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockIQ4_NL {
    /// Scale.
    pub d: f16,
    /// Level indices 0..=15: `qs[j] & 15` is element `j`, `qs[j] >> 4` element `j + 16`.
    pub qs: [u8; 16],
}

const _: () = assert!(std::mem::size_of::<BlockIQ4_NL>() == BlockIQ4_NL::TYPE_SIZE);

impl BlockIQ4_NL {
    /// The GGML type of this block.
    pub const TYPE: crate::ggml::GgmlType = crate::ggml::GgmlType::IQ4_NL;
    /// Weights per block.
    pub const BLOCK_SIZE: usize = 32;
    /// Bytes per block.
    pub const TYPE_SIZE: usize = 18;

    /// Quantizes 32 finite weights as llama.cpp's `quantize_iq4_nl` does without importance
    /// weights: the scale search of the [module](crate::ggml) docs with weights `x²`, then every
    /// index re-derived from the found (f32) scale.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockIQ4_NL::quantize(&[0.0; 32]);
    /// assert_eq!((b.d.to_f32(), b.qs), (0.0, [0x88; 16])); // level 8 is the one nearest 0
    /// ```
    pub fn quantize(x: &[f32; 32]) -> Self {
        Self::quantize_with(detect(), x, None)
    }

    /// Quantizes 32 finite weights with one importance per weight (`quant_weights` of
    /// `quantize_iq4_nl`, e.g. the block's 32 entries of an importance matrix): the search then
    /// weighs element `j` by `importance[j] * sqrt(sigma2 + x[j]²)`, `sigma2 = 2 * mean(x²)`.
    ///
    /// ```
    /// use modelopt_quantize::ggml::BlockIQ4_NL;
    /// let x: [f32; 32] = std::array::from_fn(|i| (i as f32 * 0.37).sin());
    /// let b = BlockIQ4_NL::quantize_weighted(&x, &[1.0; 32]);
    /// assert!(x.iter().zip(&b.dequantize()).all(|(a, b)| (a - b).abs() < 0.1));
    /// ```
    pub fn quantize_weighted(x: &[f32; 32], importance: &[f32; 32]) -> Self {
        Self::quantize_with(detect(), x, Some(importance))
    }

    #[inline(always)]
    pub(crate) fn quantize_with(kernel: Kernel, x: &[f32; 32], qw: Option<&[f32; 32]>) -> Self {
        let s2 = if qw.is_some() { sigma2(x) } else { 0.0 };
        let w = block_weights(x, qw, s2);
        let d = block_scale(kernel, x, &w);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        BlockIQ4_NL {
            d: f32_to_f16(d),
            qs: pack(&kernel.indices(x, id)),
        }
    }

    /// The 32 reconstructed weights `d * KVALUES_IQ4NL[q]` (`dequantize_row_iq4_nl`).
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockIQ4_NL::from_bytes(&[0, 0x3c, 0xf0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    /// let y = b.dequantize(); // d = 1.0
    /// assert_eq!((y[0], y[16], y[1]), (-127.0, 113.0, -127.0));
    /// ```
    #[inline(always)]
    pub fn dequantize(&self) -> [f32; 32] {
        let d = f16_to_f32(self.d);
        let mut y = [0f32; 32];
        for j in 0..16 {
            y[j] = d * KV[(self.qs[j] & 0x0f) as usize];
            y[j + 16] = d * KV[(self.qs[j] >> 4) as usize];
        }
        y
    }

    /// The block as GGML stores it (little-endian).
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockIQ4_NL::quantize(&[1.0; 32]);
    /// assert_eq!(b.to_bytes().len(), 18);
    /// ```
    #[inline(always)]
    pub fn to_bytes(&self) -> [u8; 18] {
        let mut out = [0u8; 18];
        out[..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..].copy_from_slice(&self.qs);
        out
    }

    /// Reads a block from its GGML bytes.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockIQ4_NL::from_bytes(&[0u8; 18]);
    /// assert_eq!(b.dequantize(), [0.0; 32]);
    /// ```
    #[inline(always)]
    pub fn from_bytes(b: &[u8; 18]) -> Self {
        let mut qs = [0u8; 16];
        qs.copy_from_slice(&b[2..]);
        BlockIQ4_NL {
            d: f16::from_le_bytes([b[0], b[1]]),
            qs,
        }
    }
}
