//! Weighted Q4_0, Q4_1, Q5_0, Q5_1 (`quantize_row_q{4,5}_{0,1}_impl` of `ggml-quants.c`).
//!
//! Every 32-weight block gets the weights `qw * sqrt(sigma2 + x^2)`, `sigma2` the mean square
//! of the whole row. The symmetric types search their scale with `make_qx_quants` (`nmax` 8 or
//! 16), the ones with a min with `make_qkx3_quants` (`nmax` 15 or 31, `-0.9 + 0.05 * is`, 36
//! steps), eight blocks side by side.

use super::super::f16_bits::f32_to_f16;
use super::super::k_quants::search::{make_qkx3_quants_lanes, make_qx_quants_weighted};
use super::super::q4::pack_nibbles;
use super::super::q5::pack5;
use super::super::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1};
use super::{sum_squares, weights};

/// `sigma2` of the legacy kernels: the row's mean square.
#[inline(always)]
fn sigma2(x: &[f32]) -> f32 {
    sum_squares(x) / x.len() as f32
}

/// Runs `make_qx_quants(32, nmax, ...)` on every block; `emit(block, scale, codes)`.
#[inline(always)]
fn symmetric_blocks(nmax: i32, x: &[f32], qw: &[f32], mut emit: impl FnMut(usize, f32, [u8; 32])) {
    let s2 = sigma2(x);
    let (xs, _) = x.as_chunks::<32>();
    let (ws, _) = qw.as_chunks::<32>();
    for (b, (xb, qb)) in xs.iter().zip(ws).enumerate() {
        let w = weights(xb, qb, s2);
        let mut l = [0i8; 32];
        let d = make_qx_quants_weighted::<32>(nmax, xb, &w, &mut l);
        emit(b, d, l.map(|v| v as u8));
    }
}

/// Runs `make_qkx3_quants(32, nmax, ..., -0.9, 0.05, 36, false)` on every block, eight at a
/// time; `emit(block, scale, the_min, codes)`.
#[inline(always)]
fn affine_blocks(
    nmax: i32,
    x: &[f32],
    qw: &[f32],
    mut emit: impl FnMut(usize, f32, f32, [u8; 32]),
) {
    let s2 = sigma2(x);
    let (xs, _) = x.as_chunks::<32>();
    let (ws, _) = qw.as_chunks::<32>();
    let (x8, x_rest) = xs.as_chunks::<8>();
    let (w8, w_rest) = ws.as_chunks::<8>();
    for (g, (xg, qg)) in x8.iter().zip(w8).enumerate() {
        let mut xt = [[0f32; 8]; 32];
        let mut wt = [[0f32; 8]; 32];
        for k in 0..8 {
            let w = weights(&xg[k], &qg[k], s2);
            for i in 0..32 {
                xt[i][k] = xg[k][i];
                wt[i][k] = w[i];
            }
        }
        let mut lt = [[0f32; 8]; 32];
        let (d, m) =
            make_qkx3_quants_lanes::<32, 8>(nmax, &xt, &wt, &mut lt, -0.9, 0.05, 36, false);
        for k in 0..8 {
            emit(
                8 * g + k,
                d[k],
                m[k],
                std::array::from_fn(|i| lt[i][k] as u8),
            );
        }
    }
    let done = 8 * x8.len();
    for (b, (xb, qb)) in x_rest.iter().zip(w_rest).enumerate() {
        let w = weights(xb, qb, s2);
        let xt: [[f32; 1]; 32] = std::array::from_fn(|i| [xb[i]]);
        let wt: [[f32; 1]; 32] = std::array::from_fn(|i| [w[i]]);
        let mut lt = [[0f32; 1]; 32];
        let (d, m) =
            make_qkx3_quants_lanes::<32, 1>(nmax, &xt, &wt, &mut lt, -0.9, 0.05, 36, false);
        emit(
            done + b,
            d[0],
            m[0],
            std::array::from_fn(|i| lt[i][0] as u8),
        );
    }
}

/// `quantize_row_q4_0_impl`: codes `L + 8` from `make_qx_quants(32, 8, ...)`, `d` its scale.
pub(super) fn quantize_row_q4_0(x: &[f32], qw: &[f32], out: &mut [u8]) {
    let (os, _) = out.as_chunks_mut::<18>();
    symmetric_blocks(8, x, qw, |b, d, l| {
        os[b] = BlockQ4_0 {
            d: f32_to_f16(d),
            qs: pack_nibbles(&l),
        }
        .to_bytes();
    });
}

/// `quantize_row_q5_0_impl`: codes `L + 16` from `make_qx_quants(32, 16, ...)`.
pub(super) fn quantize_row_q5_0(x: &[f32], qw: &[f32], out: &mut [u8]) {
    let (os, _) = out.as_chunks_mut::<22>();
    symmetric_blocks(16, x, qw, |b, d, l| {
        let (qh, qs) = pack5(&l);
        os[b] = BlockQ5_0 {
            d: f32_to_f16(d),
            qh,
            qs,
        }
        .to_bytes();
    });
}

/// `quantize_row_q4_1_impl`: `make_qkx3_quants(32, 15, ...)`, `m = -the_min`.
pub(super) fn quantize_row_q4_1(x: &[f32], qw: &[f32], out: &mut [u8]) {
    let (os, _) = out.as_chunks_mut::<20>();
    affine_blocks(15, x, qw, |b, d, the_min, l| {
        os[b] = BlockQ4_1 {
            d: f32_to_f16(d),
            m: f32_to_f16(-the_min),
            qs: pack_nibbles(&l),
        }
        .to_bytes();
    });
}

/// `quantize_row_q5_1_impl`: `make_qkx3_quants(32, 31, ...)`, `m = -the_min`.
pub(super) fn quantize_row_q5_1(x: &[f32], qw: &[f32], out: &mut [u8]) {
    let (os, _) = out.as_chunks_mut::<24>();
    affine_blocks(31, x, qw, |b, d, the_min, l| {
        let (qh, qs) = pack5(&l);
        os[b] = BlockQ5_1 {
            d: f32_to_f16(d),
            m: f32_to_f16(-the_min),
            qh,
            qs,
        }
        .to_bytes();
    });
}
