//! Q6_K: 256 weights in 16 sub-blocks of 16, 6-bit codes, signed 8-bit sub-block scales.

use half::f16;

use crate::ggml::f16_bits::{f16_to_f32, f32_to_f16};

use super::{GROUP_MAX_EPS, QK_K, make_qx_quants, nearest_int, sub16};

/// One Q6_K super-block: `x ≈ d * scales[j] * (q - 32)` for sub-block `j`, 210 bytes.
///
/// ```
/// use modelopt_quantize::ggml::BlockQ6_K;
/// let x: [f32; 256] = std::array::from_fn(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0);
/// let b = BlockQ6_K::quantize(&x);
/// assert_eq!(BlockQ6_K::from_bytes(&b.to_bytes()), b);
/// let y = b.dequantize();
/// assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 0.03));
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ6_K {
    /// Low 4 bits of the codes.
    pub ql: [u8; 128],
    /// High 2 bits of the codes.
    pub qh: [u8; 64],
    /// Sub-block scales.
    pub scales: [i8; 16],
    /// Super-block scale.
    pub d: f16,
}

const _: () = assert!(std::mem::size_of::<BlockQ6_K>() == BlockQ6_K::TYPE_SIZE);

impl BlockQ6_K {
    /// The GGML type of this block.
    pub const TYPE: crate::ggml::GgmlType = crate::ggml::GgmlType::Q6_K;
    /// Weights per block.
    pub const BLOCK_SIZE: usize = QK_K;
    /// Bytes per block.
    pub const TYPE_SIZE: usize = 210;

    /// Quantizes 256 finite weights as `quantize_row_q6_K_ref` does: per 16-weight sub-block
    /// `make_qx_quants(16, 32, ..., rmse_type 1)`, scales to `i8` against the largest. The codes
    /// are those of the scale search, as in the reference bytes (see [`BlockQ4_K::quantize`]:
    /// llama.cpp's final re-derivation pass leaves them unchanged there).
    ///
    /// [`BlockQ4_K::quantize`]: crate::ggml::BlockQ4_K::quantize
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ6_K::quantize(&[0.0; 256]);
    /// assert_eq!(b.to_bytes(), [0u8; 210]);
    /// ```
    #[inline(always)]
    pub fn quantize(x: &[f32; QK_K]) -> Self {
        let mut l = [[0i8; 16]; 16];
        let mut scales = [0f32; 16];
        let mut max_scale = 0f32;
        let mut max_abs_scale = 0f32;
        for ib in 0..16 {
            let scale = make_qx_quants::<16>(32, sub16(x, ib), &mut l[ib]);
            scales[ib] = scale;
            let abs_scale = scale.abs();
            if abs_scale > max_abs_scale {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            return BlockQ6_K {
                ql: [0; 128],
                qh: [0; 64],
                scales: [0; 16],
                d: f32_to_f16(0.0),
            };
        }
        let iscale = -128.0 / max_scale;
        let d = f32_to_f16(1.0 / iscale);
        let mut sc = [0i8; 16];
        for ib in 0..16 {
            sc[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
        }
        Self::from_codes(&l, sc, d)
    }

    /// The block of the codes `l` (`0..64`, per 16-weight sub-block), scales `sc` and `d`.
    #[inline(always)]
    pub(crate) fn from_codes(l: &[[i8; 16]; 16], sc: [i8; 16], d: f16) -> Self {
        let lf = |i: usize| l[i / 16][i % 16] as u8;
        let mut ql = [0u8; 128];
        let mut qh = [0u8; 64];
        for h in 0..2 {
            let j = 128 * h;
            for k in 0..32 {
                let q1 = lf(j + k) & 0x0f;
                let q2 = lf(j + k + 32) & 0x0f;
                let q3 = lf(j + k + 64) & 0x0f;
                let q4 = lf(j + k + 96) & 0x0f;
                ql[64 * h + k] = q1 | (q3 << 4);
                ql[64 * h + k + 32] = q2 | (q4 << 4);
                qh[32 * h + k] = (lf(j + k) >> 4)
                    | ((lf(j + k + 32) >> 4) << 2)
                    | ((lf(j + k + 64) >> 4) << 4)
                    | ((lf(j + k + 96) >> 4) << 6);
            }
        }
        BlockQ6_K {
            ql,
            qh,
            scales: sc,
            d,
        }
    }

    /// The 256 reconstructed weights (`dequantize_row_q6_K`: `d * scale * q`, left to right).
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ6_K::quantize(&[-0.25; 256]);
    /// assert!(b.dequantize().iter().all(|v| (v + 0.25).abs() < 1e-3));
    /// ```
    #[inline(always)]
    pub fn dequantize(&self) -> [f32; QK_K] {
        let d = f16_to_f32(self.d);
        let mut y = [0f32; QK_K];
        for h in 0..2 {
            let (ql, qh, sc) = (
                &self.ql[64 * h..],
                &self.qh[32 * h..],
                &self.scales[8 * h..],
            );
            for k in 0..32 {
                let is = k / 16;
                let q1 = ((ql[k] & 0x0f) | ((qh[k] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[k + 32] & 0x0f) | (((qh[k] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[k] >> 4) | (((qh[k] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[k + 32] >> 4) | (((qh[k] >> 6) & 3) << 4)) as i32 - 32;
                let base = 128 * h + k;
                y[base] = d * sc[is] as f32 * q1 as f32;
                y[base + 32] = d * sc[is + 2] as f32 * q2 as f32;
                y[base + 64] = d * sc[is + 4] as f32 * q3 as f32;
                y[base + 96] = d * sc[is + 6] as f32 * q4 as f32;
            }
        }
        y
    }

    /// The block as GGML stores it (little-endian).
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ6_K::quantize(&[1.0; 256]);
    /// assert_eq!(b.to_bytes().len(), 210);
    /// ```
    #[inline(always)]
    pub fn to_bytes(&self) -> [u8; 210] {
        let mut out = [0u8; 210];
        out[..128].copy_from_slice(&self.ql);
        out[128..192].copy_from_slice(&self.qh);
        for (o, &s) in out[192..208].iter_mut().zip(&self.scales) {
            *o = s as u8;
        }
        out[208..].copy_from_slice(&self.d.to_le_bytes());
        out
    }

    /// Reads a block from its GGML bytes.
    ///
    /// ```
    /// let b = modelopt_quantize::ggml::BlockQ6_K::from_bytes(&[0u8; 210]);
    /// assert_eq!(b.dequantize(), [0.0; 256]);
    /// ```
    #[inline(always)]
    pub fn from_bytes(b: &[u8; 210]) -> Self {
        let mut ql = [0u8; 128];
        ql.copy_from_slice(&b[..128]);
        let mut qh = [0u8; 64];
        qh.copy_from_slice(&b[128..192]);
        let mut scales = [0i8; 16];
        for (s, &v) in scales.iter_mut().zip(&b[192..208]) {
            *s = v as i8;
        }
        BlockQ6_K {
            ql,
            qh,
            scales,
            d: f16::from_le_bytes([b[208], b[209]]),
        }
    }
}
