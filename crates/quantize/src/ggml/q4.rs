//! Q4_0 and Q4_1: 32 weights as 4-bit codes with a half-precision scale (and min, for Q4_1).
//!
//! Element `j` and `j + 16` share byte `j` of `qs` (low and high nibble), as in `ggml-common.h`.

use half::f16;

use super::f16_bits::{f16_to_f32, f32_to_f16};
use super::simd::{first_abs_max_index_32, int_of, min_max_32};

/// One Q4_0 block: `x[j] ≈ d * (q[j] - 8)`, 18 bytes.
///
/// ```
/// use modelopt_quantize::ggml::BlockQ4_0;
/// let x: [f32; 32] = std::array::from_fn(|i| i as f32 - 16.0);
/// let b = BlockQ4_0::quantize(&x);
/// assert_eq!(b.d.to_f32(), 2.0); // d = max / -8 with max = -16
/// assert_eq!(BlockQ4_0::from_bytes(&b.to_bytes()), b);
/// assert!((b.dequantize()[0] + 16.0).abs() < 1e-6);
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4_0 {
    /// Scale (negative of the largest-magnitude weight over 8).
    pub d: f16,
    /// Codes 0..=15: `qs[j] & 15` is element `j`, `qs[j] >> 4` element `j + 16`.
    pub qs: [u8; 16],
}

/// One Q4_1 block: `x[j] ≈ d * q[j] + m`, 20 bytes.
///
/// ```
/// use modelopt_quantize::ggml::BlockQ4_1;
/// let x: [f32; 32] = std::array::from_fn(|i| i as f32 * 0.5);
/// let b = BlockQ4_1::quantize(&x);
/// assert_eq!(b.m.to_f32(), 0.0);
/// assert_eq!(BlockQ4_1::from_bytes(&b.to_bytes()), b);
/// assert!((b.dequantize()[31] - 15.5).abs() < 1e-2);
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4_1 {
    /// Scale `(max - min) / 15`.
    pub d: f16,
    /// Minimum of the block.
    pub m: f16,
    /// Codes 0..=15, packed as in [`BlockQ4_0`].
    pub qs: [u8; 16],
}

const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == BlockQ4_0::TYPE_SIZE);
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == BlockQ4_1::TYPE_SIZE);

#[inline(always)]
pub(super) fn pack_nibbles(q: &[u8; 32]) -> [u8; 16] {
    let mut qs = [0u8; 16];
    for j in 0..16 {
        qs[j] = (q[j] & 0x0f) | (q[j + 16] << 4);
    }
    qs
}

impl BlockQ4_0 {
    /// The GGML type of this block.
    pub const TYPE: super::GgmlType = super::GgmlType::Q4_0;
    /// Weights per block.
    pub const BLOCK_SIZE: usize = 32;
    /// Bytes per block.
    pub const TYPE_SIZE: usize = 18;

    /// Quantizes 32 finite weights as gguf-py / `quantize_row_q4_0_ref` do: `max` is the first
    /// weight of largest magnitude, `d = max / -8`, `q = min(15, trunc(x * (1/d) + 8.5))` with
    /// a plain f32 multiply and add.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ4_0::quantize(&[0.0; 32]);
    /// assert_eq!(b.qs, [0x88; 16]);
    /// ```
    #[inline(always)]
    pub fn quantize(x: &[f32; 32]) -> Self {
        let max = x[first_abs_max_index_32(x)];
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut q = [0u8; 32];
        for (o, &v) in q.iter_mut().zip(x) {
            // v * id lies in [-8, 8] up to rounding, so the sum is in [0.49, 16.6] and exact to convert.
            *o = int_of((v * id + 8.5).trunc()).min(15) as u8;
        }
        BlockQ4_0 {
            d: f32_to_f16(d),
            qs: pack_nibbles(&q),
        }
    }

    /// The 32 reconstructed weights `(q - 8) * d`.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ4_0::quantize(&[-8.0; 32]);
    /// assert_eq!(b.dequantize(), [-8.0; 32]);
    /// ```
    #[inline(always)]
    pub fn dequantize(&self) -> [f32; 32] {
        let d = f16_to_f32(self.d);
        let mut y = [0f32; 32];
        for j in 0..16 {
            y[j] = ((self.qs[j] & 0x0f) as i32 - 8) as f32 * d;
            y[j + 16] = ((self.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
        y
    }

    /// The block as GGML stores it (little-endian).
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ4_0::quantize(&[0.0; 32]);
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
    /// let b = modelopt_quantize::ggml::BlockQ4_0::from_bytes(&[0u8; 18]);
    /// assert_eq!(b.qs, [0; 16]);
    /// ```
    #[inline(always)]
    pub fn from_bytes(b: &[u8; 18]) -> Self {
        let mut qs = [0u8; 16];
        qs.copy_from_slice(&b[2..]);
        BlockQ4_0 {
            d: f16::from_le_bytes([b[0], b[1]]),
            qs,
        }
    }
}

impl BlockQ4_1 {
    /// The GGML type of this block.
    pub const TYPE: super::GgmlType = super::GgmlType::Q4_1;
    /// Weights per block.
    pub const BLOCK_SIZE: usize = 32;
    /// Bytes per block.
    pub const TYPE_SIZE: usize = 20;

    /// Quantizes 32 finite weights as gguf-py / `quantize_row_q4_1_ref` do:
    /// `d = (max - min) / 15`, `q = min(15, trunc((x - min) * (1/d) + 0.5))`.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ4_1::quantize(&[3.0; 32]);
    /// assert_eq!((b.d.to_f32(), b.m.to_f32()), (0.0, 3.0));
    /// ```
    #[inline(always)]
    pub fn quantize(x: &[f32; 32]) -> Self {
        let (min, max) = min_max_32(x);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut q = [0u8; 32];
        for (o, &v) in q.iter_mut().zip(x) {
            *o = int_of(((v - min) * id + 0.5).trunc()).min(15) as u8;
        }
        BlockQ4_1 {
            d: f32_to_f16(d),
            m: f32_to_f16(min),
            qs: pack_nibbles(&q),
        }
    }

    /// The 32 reconstructed weights `q * d + m`.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ4_1::quantize(&[3.0; 32]);
    /// assert_eq!(b.dequantize(), [3.0; 32]);
    /// ```
    #[inline(always)]
    pub fn dequantize(&self) -> [f32; 32] {
        let d = f16_to_f32(self.d);
        let m = f16_to_f32(self.m);
        let mut y = [0f32; 32];
        for j in 0..16 {
            y[j] = (self.qs[j] & 0x0f) as f32 * d + m;
            y[j + 16] = (self.qs[j] >> 4) as f32 * d + m;
        }
        y
    }

    /// The block as GGML stores it (little-endian).
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ4_1::quantize(&[0.0; 32]);
    /// assert_eq!(b.to_bytes().len(), 20);
    /// ```
    #[inline(always)]
    pub fn to_bytes(&self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out[..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..4].copy_from_slice(&self.m.to_le_bytes());
        out[4..].copy_from_slice(&self.qs);
        out
    }

    /// Reads a block from its GGML bytes.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ4_1::from_bytes(&[0u8; 20]);
    /// assert_eq!(b.dequantize(), [0.0; 32]);
    /// ```
    #[inline(always)]
    pub fn from_bytes(b: &[u8; 20]) -> Self {
        let mut qs = [0u8; 16];
        qs.copy_from_slice(&b[4..]);
        BlockQ4_1 {
            d: f16::from_le_bytes([b[0], b[1]]),
            m: f16::from_le_bytes([b[2], b[3]]),
            qs,
        }
    }
}
