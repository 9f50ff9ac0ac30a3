//! Weighted Q4_K and Q5_K (`quantize_row_q4_K_impl`, `quantize_row_q5_K_impl` of
//! `ggml-quants.c`), which differ only in `nmax` (15, 31), a `MIN(63, .)` on the 6-bit codes of
//! Q5_K, and the packing of the codes.

use super::super::f16_bits::f32_to_f16;
use super::super::k_quants::q4_k::Search8x32;
use super::super::k_quants::search::make_qkx3_quants_lanes;
use super::super::k_quants::{QK_K, pack_scale_min_k4};
use super::super::{BlockQ4_K, BlockQ5_K};
use super::qp::make_qp_quants;
use super::{sum_squares, weights};

/// `quantize_row_q4_K_impl` with importance.
pub(super) fn quantize_row_q4_k(x: &[f32], qw: &[f32], out: &mut [u8]) {
    let (xs, _) = x.as_chunks::<QK_K>();
    let (ws, _) = qw.as_chunks::<QK_K>();
    let (os, _) = out.as_chunks_mut::<144>();
    for ((xb, qb), o) in xs.iter().zip(ws).zip(os) {
        *o = BlockQ4_K::from_search(search_8x32::<15, false>(xb, qb)).to_bytes();
    }
}

/// `quantize_row_q5_K_impl` with importance.
pub(super) fn quantize_row_q5_k(x: &[f32], qw: &[f32], out: &mut [u8]) {
    let (xs, _) = x.as_chunks::<QK_K>();
    let (ws, _) = qw.as_chunks::<QK_K>();
    let (os, _) = out.as_chunks_mut::<176>();
    for ((xb, qb), o) in xs.iter().zip(ws).zip(os) {
        *o = BlockQ5_K::from_search(search_8x32::<31, true>(xb, qb)).to_bytes();
    }
}

/// Per super-block: weights `qw * sqrt(sigma2 + x^2)` (`sigma2` twice the super-block's mean
/// square), `make_qkx3_quants(32, NMAX, ..., -0.9, 0.05, 36, false)` on the 8 sub-blocks side by
/// side, scales and mins to 6 bits by `make_qp_quants(8, 63, ..., sw)`; the codes are those of
/// the search (as in c392e509's bytes). `CLAMP63`: Q5_K's `MIN(63, .)` on those codes.
#[inline(always)]
fn search_8x32<const NMAX: i32, const CLAMP63: bool>(
    x: &[f32; QK_K],
    qw: &[f32; QK_K],
) -> Search8x32 {
    let sigma2 = 2.0 * sum_squares(x) / QK_K as f32;
    let mut xt = [[0f32; 8]; 32];
    let mut wt = [[0f32; 8]; 32];
    let mut sw = [0f32; 8];
    for (j, (xj, qj)) in x
        .as_chunks::<32>()
        .0
        .iter()
        .zip(qw.as_chunks::<32>().0)
        .enumerate()
    {
        let w = weights(xj, qj, sigma2);
        let mut sumw = 0f32;
        for l in 0..32 {
            sumw += w[l];
            xt[l][j] = xj[l];
            wt[l][j] = w[l];
        }
        sw[j] = sumw;
    }
    let mut lt = [[0f32; 8]; 32];
    let (scales, mins) =
        make_qkx3_quants_lanes::<32, 8>(NMAX, &xt, &wt, &mut lt, -0.9, 0.05, 36, false);
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    let d_block = make_qp_quants::<8>(63, &scales, &mut ls, &sw);
    let m_block = make_qp_quants::<8>(63, &mins, &mut lm, &sw);
    if CLAMP63 {
        ls = ls.map(|v| v.min(63));
        lm = lm.map(|v| v.min(63));
    }
    let packed = pack_scale_min_k4(&ls, &lm);
    let d = f32_to_f16(d_block);
    let dmin = f32_to_f16(m_block);
    let l: [[u8; 32]; 8] = std::array::from_fn(|j| std::array::from_fn(|i| lt[i][j] as u8));
    (l, packed, d, dmin)
}
