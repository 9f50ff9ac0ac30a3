//! Weighted Q3_K (`quantize_row_q3_K_impl` of `ggml-quants.c`).

use super::super::BlockQ3_K;
use super::super::f16_bits::f32_to_f16;
use super::super::k_quants::search::make_qx_quants_weighted;
use super::super::k_quants::{QK_K, sub16};
use super::{sum_squares, weights};

/// Per super-block: weights `qw * sqrt(sigma2 + x^2)` (`sigma2` twice the super-block's mean
/// square), `make_qx_quants(16, 4, ...)` per sub-block, the 16 scales to signed 6 bits by
/// `make_qx_quants(16, 32, scales, ..., sw)`; the codes are those of the search (as in
/// c392e509's bytes).
pub(super) fn quantize_row_q3_k(x: &[f32], qw: &[f32], out: &mut [u8]) {
    let (xs, _) = x.as_chunks::<QK_K>();
    let (ws, _) = qw.as_chunks::<QK_K>();
    let (os, _) = out.as_chunks_mut::<110>();
    for ((xb, qb), o) in xs.iter().zip(ws).zip(os) {
        *o = quantize_block(xb, qb).to_bytes();
    }
}

#[inline(always)]
fn quantize_block(x: &[f32; QK_K], qw: &[f32; QK_K]) -> BlockQ3_K {
    let sigma2 = 2.0 * sum_squares(x) / QK_K as f32;
    let mut l = [[0i8; 16]; 16];
    let mut scales = [0f32; 16];
    let mut sw = [0f32; 16];
    for j in 0..16 {
        let w = weights(sub16(x, j), sub16(qw, j), sigma2);
        let mut sumw = 0f32;
        for v in w {
            sumw += v;
        }
        sw[j] = sumw;
        scales[j] = make_qx_quants_weighted::<16>(4, sub16(x, j), &w, &mut l[j]);
    }
    let mut ls = [0i8; 16];
    let d_block = make_qx_quants_weighted::<16>(32, &scales, &sw, &mut ls);
    let mut sc = [0u8; 12];
    for j in 0..16 {
        let v = ls[j] as i32;
        if j < 8 {
            sc[j] = (v & 0x0f) as u8;
        } else {
            sc[j - 8] |= ((v & 0x0f) << 4) as u8;
        }
        sc[j % 4 + 8] |= ((v >> 4) << (2 * (j / 4))) as u8;
    }
    let d = f32_to_f16(d_block);
    BlockQ3_K::from_codes(&l, sc, d)
}
