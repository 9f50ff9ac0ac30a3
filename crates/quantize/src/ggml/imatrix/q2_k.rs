//! Weighted Q2_K (`quantize_row_q2_K_impl` of `ggml-quants.c`).

use super::super::BlockQ2_K;
use super::super::f16_bits::f32_to_f16;
use super::super::k_quants::QK_K;
use super::super::k_quants::q2_k::pack_2bit;
use super::qkx3_x8;
use super::qp::make_qp_quants;
use super::{sum_squares, weights};

/// Per super-block: weights `qw * sqrt(sigma2 + x^2)` (`sigma2` the super-block's mean square),
/// `make_qkx3_quants(16, 3, ..., -0.9, 0.05, 36, false)` on the 16 sub-blocks side by side (8
/// per AVX2 register; with AVX-512 one super-block per register, two at a time), the scales
/// and mins to 4 bits by `make_qp_quants(16, 15, ..., sw)` (`sw` the sub-blocks' weight sums).
/// The codes are those of the search: c392e509's bytes hold them, not the ones its final loop
/// would recompute from the stored scales (see the `ggml` module docs).
#[inline(always)]
pub(super) fn quantize_row_q2_k<const AVX2: bool, const AVX512: bool>(
    x: &[f32],
    qw: &[f32],
    out: &mut [u8],
) {
    let (xs, _) = x.as_chunks::<QK_K>();
    let (ws, _) = qw.as_chunks::<QK_K>();
    let (os, _) = out.as_chunks_mut::<84>();
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if AVX512 {
        let (x2, _) = xs.as_chunks::<2>();
        let (w2, _) = ws.as_chunks::<2>();
        let (o2, _) = os.as_chunks_mut::<2>();
        for ((xp, wp), op) in x2.iter().zip(w2).zip(o2) {
            let p = [prepare(&xp[0], &wp[0]), prepare(&xp[1], &wp[1])];
            let xt = [p[0].0, p[1].0];
            let wt = [p[0].1, p[1].1];
            let mut lt = [[[0f32; 16]; 16]; 2];
            // SAFETY: `AVX512` is only true inside `encode_row_avx512`, after the CPU check.
            let (s, m) = unsafe {
                super::super::k_quants::search_avx512::make_qkx3_quants_x16::<16, 2>(
                    3, &xt, &wt, &mut lt, -0.9, 0.05, 36, false,
                )
            };
            for b in 0..2 {
                op[b] = finish(&s[b], &m[b], &lt[b], &p[b].2).to_bytes();
            }
        }
        done = 2 * x2.len();
    }
    for ((xb, qb), o) in xs.iter().zip(ws).zip(os.iter_mut()).skip(done) {
        let (xt, wt, sw) = prepare(xb, qb);
        // The 16 sub-blocks as two groups of 8 lanes (lanes are independent).
        let half = |a: &[[f32; 16]; 16], h: usize| -> [[f32; 8]; 16] {
            std::array::from_fn(|l| std::array::from_fn(|k| a[l][8 * h + k]))
        };
        let mut lt = [[0f32; 16]; 16];
        let mut scales = [0f32; 16];
        let mut mins = [0f32; 16];
        for h in 0..2 {
            let mut lh = [[0f32; 8]; 16];
            let (s, m) = qkx3_x8::<16, AVX2>(3, &half(&xt, h), &half(&wt, h), &mut lh);
            for k in 0..8 {
                scales[8 * h + k] = s[k];
                mins[8 * h + k] = m[k];
                for l in 0..16 {
                    lt[l][8 * h + k] = lh[l][k];
                }
            }
        }
        *o = finish(&scales, &mins, &lt, &sw).to_bytes();
    }
}

/// One super-block laid out for the search (element `l` of sub-block `j` at `[l][j]`), its
/// weights likewise, and the sub-blocks' weight sums.
type Prepared = ([[f32; 16]; 16], [[f32; 16]; 16], [f32; 16]);

#[inline(always)]
fn prepare(x: &[f32; QK_K], qw: &[f32; QK_K]) -> Prepared {
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
    (xt, wt, sw)
}

/// Scales and mins to 4 bits against `sw`, packed with the search's codes.
#[inline(always)]
fn finish(scales: &[f32; 16], mins: &[f32; 16], lt: &[[f32; 16]; 16], sw: &[f32; 16]) -> BlockQ2_K {
    let mut ls = [0u8; 16];
    let mut lm = [0u8; 16];
    // NaN when the weights are all zero (values whose squares underflow): c392e509's bytes.
    let dm = make_qp_quants::<16>(15, scales, &mut ls, sw);
    let mm = make_qp_quants::<16>(15, mins, &mut lm, sw);
    let sc: [u8; 16] = std::array::from_fn(|j| ls[j] | (lm[j] << 4));
    let l: [u8; QK_K] = std::array::from_fn(|i| lt[i % 16][i / 16] as u8);
    BlockQ2_K {
        scales: sc,
        qs: pack_2bit(&l),
        d: f32_to_f16(dm),
        dmin: f32_to_f16(mm),
    }
}
