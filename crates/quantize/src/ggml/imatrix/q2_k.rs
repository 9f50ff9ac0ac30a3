//! Weighted Q2_K (`quantize_row_q2_K_impl` of `ggml-quants.c`).

use super::super::BlockQ2_K;
use super::super::f16_bits::f32_to_f16;
use super::super::k_quants::QK_K;
use super::super::k_quants::q2_k::pack_2bit;
use super::super::k_quants::search::make_qkx3_quants_lanes;
use super::qp::make_qp_quants;
use super::{sum_squares, weights};

/// Per super-block: weights `qw * sqrt(sigma2 + x^2)` (`sigma2` the super-block's mean square),
/// `make_qkx3_quants(16, 3, ..., -0.9, 0.05, 36, false)` on the 16 sub-blocks side by side,
/// the scales and mins to 4 bits by `make_qp_quants(16, 15, ..., sw)` (`sw` the sub-blocks'
/// weight sums). The codes are those of the search: c392e509's bytes hold them, not the ones
/// its final loop would recompute from the stored scales (see the `ggml` module docs).
pub(super) fn quantize_row_q2_k(x: &[f32], qw: &[f32], out: &mut [u8]) {
    let (xs, _) = x.as_chunks::<QK_K>();
    let (ws, _) = qw.as_chunks::<QK_K>();
    let (os, _) = out.as_chunks_mut::<84>();
    for ((xb, qb), o) in xs.iter().zip(ws).zip(os) {
        *o = quantize_block(xb, qb).to_bytes();
    }
}

#[inline(always)]
fn quantize_block(x: &[f32; QK_K], qw: &[f32; QK_K]) -> BlockQ2_K {
    let sigma2 = sum_squares(x) / QK_K as f32;
    let mut xt = [[0f32; 16]; 16];
    let mut wt = [[0f32; 16]; 16];
    let mut sw = [0f32; 16];
    for (j, (xj, qj)) in x
        .as_chunks::<16>()
        .0
        .iter()
        .zip(qw.as_chunks::<16>().0)
        .enumerate()
    {
        let w = weights(xj, qj, sigma2);
        for l in 0..16 {
            sw[j] += w[l];
            xt[l][j] = xj[l];
            wt[l][j] = w[l];
        }
    }
    let mut lt = [[0f32; 16]; 16];
    let (scales, mins) =
        make_qkx3_quants_lanes::<16, 16>(3, &xt, &wt, &mut lt, -0.9, 0.05, 36, false);
    let mut ls = [0u8; 16];
    let mut lm = [0u8; 16];
    // NaN when the weights are all zero (values whose squares underflow): c392e509's bytes.
    let dm = make_qp_quants::<16>(15, &scales, &mut ls, &sw);
    let mm = make_qp_quants::<16>(15, &mins, &mut lm, &sw);
    let d = f32_to_f16(dm);
    let dmin = f32_to_f16(mm);
    let sc: [u8; 16] = std::array::from_fn(|j| ls[j] | (lm[j] << 4));
    let l: [u8; QK_K] = std::array::from_fn(|i| lt[i % 16][i / 16] as u8);
    BlockQ2_K {
        scales: sc,
        qs: pack_2bit(&l),
        d,
        dmin,
    }
}
