//! Q8_0: 32 weights as a half-precision scale and 32 signed bytes (`ggml-common.h` `block_q8_0`).

use half::f16;

use super::f16_bits::{f16_to_f32, f32_to_f16};
use super::simd::{abs_max_32, int_of, round_half_away};

/// One Q8_0 block: `x[j] ≈ d * qs[j]`, 34 bytes.
///
/// ```
/// use modelopt_quantize::ggml::BlockQ8_0;
/// let mut x = [0.0f32; 32];
/// x[0] = 1.27;
/// x[1] = -0.5;
/// let b = BlockQ8_0::quantize(&x);
/// assert_eq!(b.qs[0], 127);
/// assert_eq!(BlockQ8_0::from_bytes(&b.to_bytes()), b);
/// let y = b.dequantize();
/// assert!((y[1] + 0.5).abs() < 0.01);
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Codes.
    pub qs: [i8; 32],
}

const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == BlockQ8_0::TYPE_SIZE);

impl BlockQ8_0 {
    /// The GGML type of this block.
    pub const TYPE: super::GgmlType = super::GgmlType::Q8_0;
    /// Weights per block.
    pub const BLOCK_SIZE: usize = 32;
    /// Bytes per block.
    pub const TYPE_SIZE: usize = 34;

    /// Quantizes 32 finite weights as `quantize_row_q8_0_ref` does: `d = amax / 127`,
    /// `q = round(x * (1/d))` rounding half away from zero, with `1/d` taken in f32 before `d`
    /// is stored as f16.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ8_0::quantize(&[0.0; 32]);
    /// assert_eq!(b.qs, [0; 32]);
    /// ```
    #[inline(always)]
    pub fn quantize(x: &[f32; 32]) -> Self {
        let amax = abs_max_32(x);
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0i8; 32];
        for (q, &v) in qs.iter_mut().zip(x) {
            // |v * id| <= 127 + a few ulps, so the i32 -> i8 narrowing never wraps.
            *q = int_of(round_half_away(v * id)) as i8;
        }
        BlockQ8_0 {
            d: f32_to_f16(d),
            qs,
        }
    }

    /// The 32 reconstructed weights `d * q`.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ8_0::quantize(&[2.0; 32]);
    /// assert!(b.dequantize().iter().all(|v| (v - 2.0).abs() < 1e-3)); // d is an f16
    /// ```
    #[inline(always)]
    pub fn dequantize(&self) -> [f32; 32] {
        let d = f16_to_f32(self.d);
        let mut y = [0f32; 32];
        for (o, &q) in y.iter_mut().zip(&self.qs) {
            *o = q as f32 * d;
        }
        y
    }

    /// The block as GGML stores it (little-endian).
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ8_0::quantize(&[1.0; 32]);
    /// assert_eq!(b.to_bytes()[2], 127);
    /// ```
    #[inline(always)]
    pub fn to_bytes(&self) -> [u8; 34] {
        let mut out = [0u8; 34];
        out[..2].copy_from_slice(&self.d.to_le_bytes());
        for (o, &q) in out[2..].iter_mut().zip(&self.qs) {
            *o = q as u8;
        }
        out
    }

    /// Reads a block from its GGML bytes.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ8_0::from_bytes(&[0u8; 34]);
    /// assert_eq!(b.d.to_f32(), 0.0);
    /// ```
    #[inline(always)]
    pub fn from_bytes(b: &[u8; 34]) -> Self {
        let mut qs = [0i8; 32];
        for (q, &v) in qs.iter_mut().zip(&b[2..]) {
            *q = v as i8;
        }
        BlockQ8_0 {
            d: f16::from_le_bytes([b[0], b[1]]),
            qs,
        }
    }
}
