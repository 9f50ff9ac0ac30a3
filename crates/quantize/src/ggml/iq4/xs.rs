//! IQ4_XS: 256 weights in 8 blocks of 32, 4-bit indices into [`KVALUES_IQ4NL`], 6-bit block
//! scales under one f16 super-block scale.

use half::f16;

use super::{KV, Kernel, block_scale, block_weights, detect, pack, sigma2};
use crate::ggml::QK_K;
use crate::ggml::f16_bits::{f16_to_f32, f32_to_f16};
use crate::ggml::k_quants::nearest_int;

#[cfg(doc)]
use super::KVALUES_IQ4NL;

/// One IQ4_XS super-block: `x ≈ d * (ls[b] - 32) * KVALUES_IQ4NL[q]` in block `b`, 136 bytes
/// (`block_iq4_xs`).
///
/// ```
/// use modelopt_quantize::ggml::BlockIQ4_XS;
/// let x: [f32; 256] = std::array::from_fn(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0);
/// let b = BlockIQ4_XS::quantize(&x);
/// assert_eq!(BlockIQ4_XS::from_bytes(&b.to_bytes()), b);
/// let y = b.dequantize();
/// assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 0.1));
/// ```
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockIQ4_XS {
    /// Super-block scale.
    pub d: f16,
    /// Bits 4..5 of the eight 6-bit block scales, two bits per block (block `b` at bit `2b`).
    pub scales_h: u16,
    /// Bits 0..3 of the block scales, two per byte (block `2i` low nibble, `2i + 1` high).
    pub scales_l: [u8; 4],
    /// Level indices, 16 bytes per block packed as in [`BlockIQ4_NL`](super::nl::BlockIQ4_NL).
    pub qs: [u8; 128],
}

const _: () = assert!(std::mem::size_of::<BlockIQ4_XS>() == BlockIQ4_XS::TYPE_SIZE);

impl BlockIQ4_XS {
    /// The GGML type of this block.
    pub const TYPE: crate::ggml::GgmlType = crate::ggml::GgmlType::IQ4_XS;
    /// Weights per block.
    pub const BLOCK_SIZE: usize = QK_K;
    /// Bytes per block.
    pub const TYPE_SIZE: usize = 136;

    /// Quantizes 256 finite weights as llama.cpp's `quantize_iq4_xs` does without importance
    /// weights: the scale search of each 32-weight block (weights `x²`), the block scales to 6
    /// bits against `d = -max_scale / 32` (`max_scale` the first scale of largest magnitude),
    /// then every index re-derived from its block's quantized scale `d * l`.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockIQ4_XS::quantize(&[0.0; 256]);
    /// assert_eq!(b.d.to_bits(), 0x8000); // -0.0: d = -max_scale / 32 with max_scale = 0
    /// assert_eq!(b.qs, [0x88; 128]);
    /// ```
    pub fn quantize(x: &[f32; QK_K]) -> Self {
        Self::quantize_with(detect(), x, None)
    }

    /// Quantizes 256 finite weights with one importance per weight (`quant_weights` of
    /// `quantize_iq4_xs`); see [`BlockIQ4_NL::quantize_weighted`](super::nl::BlockIQ4_NL::quantize_weighted)
    /// (`sigma2` is over the super-block here).
    ///
    /// ```
    /// use modelopt_quantize::ggml::BlockIQ4_XS;
    /// let x: [f32; 256] = std::array::from_fn(|i| (i as f32 * 0.37).sin());
    /// let b = BlockIQ4_XS::quantize_weighted(&x, &[1.0; 256]);
    /// assert!(x.iter().zip(&b.dequantize()).all(|(a, b)| (a - b).abs() < 0.15));
    /// ```
    pub fn quantize_weighted(x: &[f32; QK_K], importance: &[f32; QK_K]) -> Self {
        Self::quantize_with(detect(), x, Some(importance))
    }

    #[inline(always)]
    pub(crate) fn quantize_with(kernel: Kernel, x: &[f32; QK_K], qw: Option<&[f32; QK_K]>) -> Self {
        let s2 = if qw.is_some() { sigma2(x) } else { 0.0 };
        let (xb, _) = x.as_chunks::<32>();
        let qwb = qw.map(|q| q.as_chunks::<32>().0);
        let mut scales = [0f32; 8];
        let (mut max_scale, mut amax_scale) = (0f32, 0f32);
        for ib in 0..8 {
            let w = block_weights(&xb[ib], qwb.map(|q| &q[ib]), s2);
            let d = block_scale(kernel, &xb[ib], &w);
            scales[ib] = d;
            if d.abs() > amax_scale {
                amax_scale = d.abs();
                max_scale = d;
            }
        }
        // With every scale 0 this is -0.0, stored as such (f16 0x8000) by llama.cpp.
        let d = -max_scale / 32.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut l = [0u8; QK_K];
        let (lb, _) = l.as_chunks_mut::<32>();
        let mut scales_h = 0u16;
        let mut scales_l = [0u8; 4];
        for ib in 0..8 {
            let ls = nearest_int(id * scales[ib]).clamp(-32, 31);
            let dl = d * ls as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            lb[ib] = kernel.indices(&xb[ib], idl);
            let ls = (ls + 32) as u8;
            scales_l[ib / 2] |= (ls & 0x0f) << (4 * (ib % 2));
            scales_h |= ((ls >> 4) as u16) << (2 * ib);
        }
        let mut qs = [0u8; 128];
        for (o, l) in qs.as_chunks_mut::<16>().0.iter_mut().zip(lb.iter()) {
            *o = pack(l);
        }
        BlockIQ4_XS {
            d: f32_to_f16(d),
            scales_h,
            scales_l,
            qs,
        }
    }

    /// The 6-bit scale of block `ib` (0..8), as stored (the scale is `d * (ls - 32)`).
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockIQ4_XS::quantize(&[0.5; 256]);
    /// assert!((0..8).all(|ib| b.block_scale(ib) == b.block_scale(0)));
    /// ```
    #[inline(always)]
    pub fn block_scale(&self, ib: usize) -> u8 {
        ((self.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f)
            | ((((self.scales_h >> (2 * ib)) & 3) as u8) << 4)
    }

    /// The 256 reconstructed weights (`dequantize_row_iq4_xs`: `dl = d * (ls - 32)`, then
    /// `dl * level`).
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockIQ4_XS::from_bytes(&[0u8; 136]);
    /// assert_eq!(b.dequantize(), [0.0; 256]);
    /// ```
    #[inline(always)]
    pub fn dequantize(&self) -> [f32; QK_K] {
        let d = f16_to_f32(self.d);
        let mut y = [0f32; QK_K];
        let (ys, _) = y.as_chunks_mut::<32>();
        let (qs, _) = self.qs.as_chunks::<16>();
        for ib in 0..8 {
            let dl = d * (self.block_scale(ib) as i32 - 32) as f32;
            for j in 0..16 {
                ys[ib][j] = dl * KV[(qs[ib][j] & 0x0f) as usize];
                ys[ib][j + 16] = dl * KV[(qs[ib][j] >> 4) as usize];
            }
        }
        y
    }

    /// The block as GGML stores it (little-endian).
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockIQ4_XS::quantize(&[1.0; 256]);
    /// assert_eq!(b.to_bytes().len(), 136);
    /// ```
    #[inline(always)]
    pub fn to_bytes(&self) -> [u8; 136] {
        let mut out = [0u8; 136];
        out[..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..4].copy_from_slice(&self.scales_h.to_le_bytes());
        out[4..8].copy_from_slice(&self.scales_l);
        out[8..].copy_from_slice(&self.qs);
        out
    }

    /// Reads a block from its GGML bytes.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockIQ4_XS::from_bytes(&[0u8; 136]);
    /// assert_eq!(b.block_scale(3), 0);
    /// ```
    #[inline(always)]
    pub fn from_bytes(b: &[u8; 136]) -> Self {
        let mut qs = [0u8; 128];
        qs.copy_from_slice(&b[8..]);
        BlockIQ4_XS {
            d: f16::from_le_bytes([b[0], b[1]]),
            scales_h: u16::from_le_bytes([b[2], b[3]]),
            scales_l: [b[4], b[5], b[6], b[7]],
            qs,
        }
    }
}
