//! Weighted Q6_K (`quantize_row_q6_K_impl` of `ggml-quants.c`).

use super::super::BlockQ6_K;
use super::super::f16_bits::f32_to_f16;
use super::super::k_quants::search::make_qx_quants_weighted;
use super::super::k_quants::{GROUP_MAX_EPS, QK_K, nearest_int, sub16};

/// Per super-block: `make_qx_quants(16, 32, ..., qw)` per sub-block with the raw importance as
/// weights (llama.cpp's `sigma2` variant is commented out there), the scales to `i8` against the
/// largest in magnitude; the codes are those of the search (as in c392e509's bytes).
pub(super) fn quantize_row_q6_k(x: &[f32], qw: &[f32], out: &mut [u8]) {
    let (xs, _) = x.as_chunks::<QK_K>();
    let (ws, _) = qw.as_chunks::<QK_K>();
    let (os, _) = out.as_chunks_mut::<210>();
    for ((xb, qb), o) in xs.iter().zip(ws).zip(os) {
        *o = quantize_block(xb, qb).to_bytes();
    }
}

#[inline(always)]
fn quantize_block(x: &[f32; QK_K], qw: &[f32; QK_K]) -> BlockQ6_K {
    let mut l = [[0i8; 16]; 16];
    let mut scales = [0f32; 16];
    let mut max_scale = 0f32;
    let mut max_abs_scale = 0f32;
    for ib in 0..16 {
        let scale = make_qx_quants_weighted::<16>(32, sub16(x, ib), sub16(qw, ib), &mut l[ib]);
        scales[ib] = scale;
        if scale.abs() > max_abs_scale {
            max_abs_scale = scale.abs();
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
    let sc: [i8; 16] = std::array::from_fn(|ib| nearest_int(iscale * scales[ib]).min(127) as i8);
    BlockQ6_K::from_codes(&l, sc, d)
}
