//! Weighted Q4_K and Q5_K (`quantize_row_q4_K_impl`, `quantize_row_q5_K_impl` of
//! `ggml-quants.c`), which differ only in `nmax` (15, 31), a `MIN(63, .)` on the 6-bit codes of
//! Q5_K, and the packing of the codes.
//!
//! Per super-block: weights `qw * sqrt(sigma2 + x^2)` (`sigma2` twice the super-block's mean
//! square), `make_qkx3_quants(32, nmax, ..., -0.9, 0.05, 36, false)` on the 8 sub-blocks side by
//! side (with AVX-512: four super-blocks, 32 lanes, at a time), scales and mins to 6 bits by
//! `make_qp_quants(8, 63, ..., sw)`; the codes are those of the search (as in c392e509's bytes).

use super::super::f16_bits::f32_to_f16;
use super::super::k_quants::q4_k::Search8x32;
use super::super::k_quants::{QK_K, pack_scale_min_k4};
use super::super::{BlockQ4_K, BlockQ5_K};
use super::qkx3_x8;
use super::qp::make_qp_quants;
use super::{sum_squares, weights};

/// `quantize_row_q4_K_impl` with importance.
#[inline(always)]
pub(super) fn quantize_row_q4_k<const AVX2: bool, const AVX512: bool>(
    x: &[f32],
    qw: &[f32],
    out: &mut [u8],
) {
    quantize_row::<15, false, 144, AVX2, AVX512>(x, qw, out, |s| {
        BlockQ4_K::from_search(s).to_bytes()
    });
}

/// `quantize_row_q5_K_impl` with importance.
#[inline(always)]
pub(super) fn quantize_row_q5_k<const AVX2: bool, const AVX512: bool>(
    x: &[f32],
    qw: &[f32],
    out: &mut [u8],
) {
    quantize_row::<31, true, 176, AVX2, AVX512>(x, qw, out, |s| {
        BlockQ5_K::from_search(s).to_bytes()
    });
}

#[inline(always)]
fn quantize_row<
    const NMAX: i32,
    const CLAMP63: bool,
    const S: usize,
    const AVX2: bool,
    const AVX512: bool,
>(
    x: &[f32],
    qw: &[f32],
    out: &mut [u8],
    pack: impl Fn(Search8x32) -> [u8; S],
) {
    let (xs, _) = x.as_chunks::<QK_K>();
    let (ws, _) = qw.as_chunks::<QK_K>();
    let (os, _) = out.as_chunks_mut::<S>();
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if AVX512 {
        let (x4, _) = xs.as_chunks::<4>();
        let (w4, _) = ws.as_chunks::<4>();
        let (o4, _) = os.as_chunks_mut::<4>();
        for ((xg, wg), og) in x4.iter().zip(w4).zip(o4) {
            // Super-block `b` in lanes `8 * (b % 2)..` of register `b / 2`.
            let mut xt = [[[0f32; 16]; 32]; 2];
            let mut wt = [[[0f32; 16]; 32]; 2];
            let mut sw = [[0f32; 8]; 4];
            let sigma2 = sigma2_x4(xg);
            for b in 0..4 {
                let (g, off) = (b / 2, 8 * (b % 2));
                fill(
                    &xg[b], &wg[b], sigma2[b], &mut xt[g], &mut wt[g], off, &mut sw[b],
                );
            }
            let mut lt = [[[0f32; 16]; 32]; 2];
            // SAFETY: `AVX512` is only true inside `encode_row_avx512`, after the CPU check.
            let (s, m) = unsafe {
                super::super::k_quants::search_avx512::make_qkx3_quants_x16::<32, 2>(
                    NMAX, &xt, &wt, &mut lt, -0.9, 0.05, 36, false,
                )
            };
            for b in 0..4 {
                let (g, off) = (b / 2, 8 * (b % 2));
                let scales: [f32; 8] = std::array::from_fn(|j| s[g][off + j]);
                let mins: [f32; 8] = std::array::from_fn(|j| m[g][off + j]);
                let mut l = [[0u8; 32]; 8];
                for (i, row) in lt[g].iter().enumerate() {
                    for j in 0..8 {
                        l[j][i] = row[off + j] as u8;
                    }
                }
                og[b] = pack(finish::<CLAMP63>(&scales, &mins, l, &sw[b]));
            }
        }
        done = 4 * x4.len();
    }
    for ((xb, qb), o) in xs.iter().zip(ws).zip(os.iter_mut()).skip(done) {
        let mut xt = [[0f32; 8]; 32];
        let mut wt = [[0f32; 8]; 32];
        let mut sw = [0f32; 8];
        let sigma2 = 2.0 * sum_squares(xb) / QK_K as f32;
        fill(xb, qb, sigma2, &mut xt, &mut wt, 0, &mut sw);
        let mut lt = [[0f32; 8]; 32];
        let (scales, mins) = qkx3_x8::<32, AVX2>(NMAX, &xt, &wt, &mut lt);
        let l: [[u8; 32]; 8] = std::array::from_fn(|j| std::array::from_fn(|i| lt[i][j] as u8));
        *o = pack(finish::<CLAMP63>(&scales, &mins, l, &sw));
    }
}

/// `sigma2 = 2 * sum(x^2) / QK_K` of four super-blocks, their sums run in lockstep (each in
/// C's order; four independent chains instead of one after the other).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn sigma2_x4(xg: &[[f32; QK_K]; 4]) -> [f32; 4] {
    let mut s = [0f32; 4];
    for i in 0..QK_K {
        for (sb, xb) in s.iter_mut().zip(xg) {
            *sb += xb[i] * xb[i];
        }
    }
    s.map(|v| 2.0 * v / QK_K as f32)
}

/// Lays one super-block out for the search: element `i` of sub-block `j` at `xt[i][off + j]`,
/// its weight `qw * sqrt(sigma2 + x^2)` likewise, and the sub-blocks' weight sums in `sw`.
#[inline(always)]
fn fill<const L: usize>(
    x: &[f32; QK_K],
    qw: &[f32; QK_K],
    sigma2: f32,
    xt: &mut [[f32; L]; 32],
    wt: &mut [[f32; L]; 32],
    off: usize,
    sw: &mut [f32; 8],
) {
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
            xt[l][off + j] = xj[l];
            wt[l][off + j] = w[l];
        }
        sw[j] = sumw;
    }
}

/// Scales and mins to 6 bits by `make_qp_quants(8, 63, ..., sw)`, packed with the codes.
/// `CLAMP63`: Q5_K's `MIN(63, .)` on the 6-bit codes.
#[inline(always)]
fn finish<const CLAMP63: bool>(
    scales: &[f32; 8],
    mins: &[f32; 8],
    l: [[u8; 32]; 8],
    sw: &[f32; 8],
) -> Search8x32 {
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    let d_block = make_qp_quants::<8>(63, scales, &mut ls, sw);
    let m_block = make_qp_quants::<8>(63, mins, &mut lm, sw);
    if CLAMP63 {
        ls = ls.map(|v| v.min(63));
        lm = lm.map(|v| v.min(63));
    }
    let packed = pack_scale_min_k4(&ls, &lm);
    (l, packed, f32_to_f16(d_block), f32_to_f16(m_block))
}
