//! Q5_0 and Q5_1: 32 weights as 5-bit codes — the low 4 bits packed like Q4, the fifth bits of
//! all 32 in a little-endian `u32` (`qh`) — with a half-precision scale (and min, for Q5_1).

use half::f16;

use super::f16_bits::{f16_to_f32, f32_to_f16};
use super::simd::{first_abs_max_index_32, int_of, min_max_32};

/// One Q5_0 block: `x[j] ≈ d * (q[j] - 16)`, 22 bytes.
///
/// ```
/// use modelopt_quantize::ggml::BlockQ5_0;
/// let x: [f32; 32] = std::array::from_fn(|i| i as f32 - 16.0);
/// let b = BlockQ5_0::quantize(&x);
/// assert_eq!(b.d.to_f32(), 1.0); // d = max / -16 with max = -16
/// assert_eq!(BlockQ5_0::from_bytes(&b.to_bytes()), b);
/// assert_eq!(b.dequantize(), x);
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ5_0 {
    /// Scale (negative of the largest-magnitude weight over 16).
    pub d: f16,
    /// Fifth bit of element `j` in bit `j` (little-endian `u32`).
    pub qh: [u8; 4],
    /// Low 4 bits: `qs[j] & 15` is element `j`, `qs[j] >> 4` element `j + 16`.
    pub qs: [u8; 16],
}

/// One Q5_1 block: `x[j] ≈ d * q[j] + m`, 24 bytes.
///
/// ```
/// use modelopt_quantize::ggml::BlockQ5_1;
/// let x: [f32; 32] = std::array::from_fn(|i| i as f32);
/// let b = BlockQ5_1::quantize(&x);
/// assert_eq!(BlockQ5_1::from_bytes(&b.to_bytes()), b);
/// assert_eq!(b.dequantize(), x);
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ5_1 {
    /// Scale `(max - min) / 31`.
    pub d: f16,
    /// Minimum of the block.
    pub m: f16,
    /// Fifth bits, as in [`BlockQ5_0`].
    pub qh: [u8; 4],
    /// Low 4 bits, as in [`BlockQ5_0`].
    pub qs: [u8; 16],
}

const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == BlockQ5_0::TYPE_SIZE);
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == BlockQ5_1::TYPE_SIZE);

#[inline(always)]
pub(super) fn pack5(q: &[u8; 32]) -> ([u8; 4], [u8; 16]) {
    let mut qs = [0u8; 16];
    for j in 0..16 {
        qs[j] = (q[j] & 0x0f) | (q[j + 16] << 4);
    }
    let mut qh = 0u32;
    for (j, &v) in q.iter().enumerate() {
        qh |= (((v >> 4) & 1) as u32) << j;
    }
    (qh.to_le_bytes(), qs)
}

#[inline(always)]
fn unpack5(qh: &[u8; 4], qs: &[u8; 16]) -> [u8; 32] {
    let qh = u32::from_le_bytes(*qh);
    let mut q = [0u8; 32];
    for j in 0..16 {
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        q[j] = (qs[j] & 0x0f) | h0;
        q[j + 16] = (qs[j] >> 4) | h1;
    }
    q
}

impl BlockQ5_0 {
    /// The GGML type of this block.
    pub const TYPE: super::GgmlType = super::GgmlType::Q5_0;
    /// Weights per block.
    pub const BLOCK_SIZE: usize = 32;
    /// Bytes per block.
    pub const TYPE_SIZE: usize = 22;

    /// Quantizes 32 finite weights as gguf-py / `quantize_row_q5_0_ref` do: `d = max / -16`,
    /// `q = min(31, trunc(x * (1/d) + 16.5))`.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ5_0::quantize(&[0.0; 32]);
    /// assert_eq!(b.qh, [0xff; 4]);
    /// ```
    #[inline(always)]
    pub fn quantize(x: &[f32; 32]) -> Self {
        let max = x[first_abs_max_index_32(x)];
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut q = [0u8; 32];
        for (o, &v) in q.iter_mut().zip(x) {
            *o = int_of((v * id + 16.5).trunc()).min(31) as u8;
        }
        let (qh, qs) = pack5(&q);
        BlockQ5_0 {
            d: f32_to_f16(d),
            qh,
            qs,
        }
    }

    /// The 32 reconstructed weights `(q - 16) * d`.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ5_0::quantize(&[-1.5; 32]);
    /// assert_eq!(b.dequantize(), [-1.5; 32]);
    /// ```
    #[inline(always)]
    pub fn dequantize(&self) -> [f32; 32] {
        let d = f16_to_f32(self.d);
        let q = unpack5(&self.qh, &self.qs);
        let mut y = [0f32; 32];
        for (o, &v) in y.iter_mut().zip(&q) {
            *o = (v as i32 - 16) as f32 * d;
        }
        y
    }

    /// The block as GGML stores it (little-endian).
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ5_0::quantize(&[0.0; 32]);
    /// assert_eq!(b.to_bytes().len(), 22);
    /// ```
    #[inline(always)]
    pub fn to_bytes(&self) -> [u8; 22] {
        let mut out = [0u8; 22];
        out[..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..6].copy_from_slice(&self.qh);
        out[6..].copy_from_slice(&self.qs);
        out
    }

    /// Reads a block from its GGML bytes.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ5_0::from_bytes(&[0u8; 22]);
    /// assert_eq!(b.dequantize(), [-0.0; 32]);
    /// ```
    #[inline(always)]
    pub fn from_bytes(b: &[u8; 22]) -> Self {
        let mut qs = [0u8; 16];
        qs.copy_from_slice(&b[6..]);
        BlockQ5_0 {
            d: f16::from_le_bytes([b[0], b[1]]),
            qh: [b[2], b[3], b[4], b[5]],
            qs,
        }
    }
}

impl BlockQ5_1 {
    /// The GGML type of this block.
    pub const TYPE: super::GgmlType = super::GgmlType::Q5_1;
    /// Weights per block.
    pub const BLOCK_SIZE: usize = 32;
    /// Bytes per block.
    pub const TYPE_SIZE: usize = 24;

    /// Quantizes 32 finite weights as gguf-py / `quantize_row_q5_1_ref` do:
    /// `d = (max - min) / 31`, `q = min(31, trunc((x - min) * (1/d) + 0.5))`.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ5_1::quantize(&[0.25; 32]);
    /// assert_eq!(b.dequantize(), [0.25; 32]);
    /// ```
    #[inline(always)]
    pub fn quantize(x: &[f32; 32]) -> Self {
        let (min, max) = min_max_32(x);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut q = [0u8; 32];
        for (o, &v) in q.iter_mut().zip(x) {
            *o = int_of(((v - min) * id + 0.5).trunc()).min(31) as u8;
        }
        let (qh, qs) = pack5(&q);
        BlockQ5_1 {
            d: f32_to_f16(d),
            m: f32_to_f16(min),
            qh,
            qs,
        }
    }

    /// The 32 reconstructed weights `q * d + m`.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ5_1::quantize(&[0.0; 32]);
    /// assert_eq!(b.dequantize(), [0.0; 32]);
    /// ```
    #[inline(always)]
    pub fn dequantize(&self) -> [f32; 32] {
        let d = f16_to_f32(self.d);
        let m = f16_to_f32(self.m);
        let q = unpack5(&self.qh, &self.qs);
        let mut y = [0f32; 32];
        for (o, &v) in y.iter_mut().zip(&q) {
            *o = v as f32 * d + m;
        }
        y
    }

    /// The block as GGML stores it (little-endian).
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ5_1::quantize(&[0.0; 32]);
    /// assert_eq!(b.to_bytes().len(), 24);
    /// ```
    #[inline(always)]
    pub fn to_bytes(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..4].copy_from_slice(&self.m.to_le_bytes());
        out[4..8].copy_from_slice(&self.qh);
        out[8..].copy_from_slice(&self.qs);
        out
    }

    /// Reads a block from its GGML bytes.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ5_1::from_bytes(&[0u8; 24]);
    /// assert_eq!(b.dequantize(), [0.0; 32]);
    /// ```
    #[inline(always)]
    pub fn from_bytes(b: &[u8; 24]) -> Self {
        let mut qs = [0u8; 16];
        qs.copy_from_slice(&b[8..]);
        BlockQ5_1 {
            d: f16::from_le_bytes([b[0], b[1]]),
            m: f16::from_le_bytes([b[2], b[3]]),
            qh: [b[4], b[5], b[6], b[7]],
            qs,
        }
    }
}
