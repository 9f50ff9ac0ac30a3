//! AVX-512 version of [`make_qkx2_quants_lanes`] (and of `make_qkx3_quants_lanes`): 16 lanes
//! per `__m512`, `G` registers side by side.
//!
//! The search is a chain of dependent sums per lane (C's summation order must be kept), so its
//! speed is bound by add latency, not by arithmetic. Two super-blocks fill one register (8
//! sub-blocks each) and `G` independent registers interleave their chains. Every operation is
//! the IEEE single-precision operation of the portable version, in the same order, with the
//! same selects; a unit test checks it against the portable version bit for bit.
//!
//! [`make_qkx2_quants_lanes`]: super::search::make_qkx2_quants_lanes

use std::arch::x86_64::*;

/// `G` groups of 16 lanes: element `i` of lane `k` of group `g` is `xt[g][i][k]`.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512DQ.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512dq")]
pub(crate) unsafe fn make_qkx2_quants_x16<const N: usize, const G: usize>(
    nmax: i32,
    xt: &[[[f32; 16]; N]; G],
    wt: &[[[f32; 16]; N]; G],
    l_out: &mut [[[f32; 16]; N]; G],
    rmin: f32,
    rdelta: f32,
    nstep: usize,
    use_mad: bool,
) -> ([[f32; 16]; G], [[f32; 16]; G]) {
    // SAFETY: the caller checked the CPU.
    unsafe { make_qkx_quants_x16::<N, G, false>(nmax, xt, wt, l_out, rmin, rdelta, nstep, use_mad) }
}

/// AVX-512 version of [`make_qkx3_quants_lanes`] (the weighted K-quants' search), laid out as
/// [`make_qkx2_quants_x16`].
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512DQ.
///
/// [`make_qkx3_quants_lanes`]: super::search::make_qkx3_quants_lanes
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512dq")]
pub(crate) unsafe fn make_qkx3_quants_x16<const N: usize, const G: usize>(
    nmax: i32,
    xt: &[[[f32; 16]; N]; G],
    wt: &[[[f32; 16]; N]; G],
    l_out: &mut [[[f32; 16]; N]; G],
    rmin: f32,
    rdelta: f32,
    nstep: usize,
    use_mad: bool,
) -> ([[f32; 16]; G], [[f32; 16]; G]) {
    // SAFETY: the caller checked the CPU.
    unsafe { make_qkx_quants_x16::<N, G, true>(nmax, xt, wt, l_out, rmin, rdelta, nstep, use_mad) }
}

/// The body of both; `QKX3` picks `make_qkx3_quants`' candidate code
/// `v > 0 ? nearest_int(MIN(v, nmax)) : 0` over the clamp of `make_qkx2_quants`.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn make_qkx_quants_x16<const N: usize, const G: usize, const QKX3: bool>(
    nmax: i32,
    xt: &[[[f32; 16]; N]; G],
    wt: &[[[f32; 16]; N]; G],
    l_out: &mut [[[f32; 16]; N]; G],
    rmin: f32,
    rdelta: f32,
    nstep: usize,
    use_mad: bool,
) -> ([[f32; 16]; G], [[f32; 16]; G]) {
    // SAFETY: every pointer below comes from a live `[f32; 16]`, read or written whole.
    let ld = |a: &[f32; 16]| unsafe { _mm512_loadu_ps(a.as_ptr()) };
    let nmaxf = nmax as f32;
    let vnmax = _mm512_set1_ps(nmaxf);
    let zero = _mm512_setzero_ps();
    let abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fff_ffff));
    // Round to nearest even in one instruction: equal to the portable `(v + 1.5 * 2^23) -
    // 1.5 * 2^23` for |v| < 2^22, and every larger value is clamped to 0 or nmax either way.
    let rne =
        |v: __m512| _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
    // `if l > hi {hi}` then `if l < 0 {0}`: min/max give the same values (codes are never -0).
    let clamp = |l: __m512| _mm512_max_ps(_mm512_min_ps(l, vnmax), zero);
    // make_qkx3_quants' candidate code: MIN(v, nmax) is `v < nmax ? v : nmax` (NaN -> nmax) as
    // `min_ps(v, nmax)`, then 0 unless v > 0 (NaN -> 0).
    let code3 = |v: __m512| {
        _mm512_maskz_mov_ps(
            _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, zero),
            rne(_mm512_min_ps(v, vnmax)),
        )
    };
    let candidate = |v: __m512| if QKX3 { code3(v) } else { clamp(rne(v)) };
    let err_of = |d: __m512| {
        if use_mad {
            _mm512_and_ps(d, abs_mask)
        } else {
            _mm512_mul_ps(d, d)
        }
    };

    let mut min = [zero; G];
    let mut max = [zero; G];
    let mut sum_w = [zero; G];
    let mut sum_x = [zero; G];
    for g in 0..G {
        let x0 = ld(&xt[g][0]);
        min[g] = x0;
        max[g] = x0;
        sum_w[g] = ld(&wt[g][0]);
        sum_x[g] = _mm512_mul_ps(sum_w[g], x0);
    }
    for i in 1..N {
        for g in 0..G {
            let x = ld(&xt[g][i]);
            let w = ld(&wt[g][i]);
            min[g] = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, min[g]), min[g], x);
            max[g] = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, max[g]), max[g], x);
            sum_w[g] = _mm512_add_ps(sum_w[g], w);
            sum_x[g] = _mm512_add_ps(sum_x[g], _mm512_mul_ps(w, x));
        }
    }
    let mut flat = [0u16; G];
    // Lanes whose codes come from a candidate (recomputed with `candidate`, else with the
    // first pass's clamp).
    let mut took = [0u16; G];
    let mut scale = [zero; G];
    let mut best = [zero; G];
    // The codes are not kept: each lane remembers the `iscale` and `min` its best codes came
    // from and recomputes them at the end with the same operations (`clamp(rne(iscale * (x -
    // min)))`), which saves blending 32 registers whenever a lane takes a candidate.
    let mut code_isc = [zero; G];
    let mut code_min = [zero; G];
    for g in 0..G {
        min[g] = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(min[g], zero), min[g], zero);
        flat[g] = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(max[g], min[g]);
        let iscale = _mm512_div_ps(vnmax, _mm512_sub_ps(max[g], min[g]));
        scale[g] = _mm512_div_ps(_mm512_set1_ps(1.0), iscale);
        code_isc[g] = iscale;
        code_min[g] = min[g];
        for i in 0..N {
            let x = ld(&xt[g][i]);
            let l = clamp(rne(_mm512_mul_ps(iscale, _mm512_sub_ps(x, min[g]))));
            let diff = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(scale[g], l), min[g]), x);
            best[g] = _mm512_add_ps(best[g], _mm512_mul_ps(ld(&wt[g][i]), err_of(diff)));
        }
    }
    // `x - min` per element, renewed when a lane takes a candidate (its `min` changes): the
    // same value C computes in every candidate, without the subtraction in the hot loop.
    let mut xm = [[zero; N]; G];
    for g in 0..G {
        for i in 0..N {
            xm[g][i] = _mm512_sub_ps(ld(&xt[g][i]), min[g]);
        }
    }
    let mut laux = [[zero; N]; G];
    for is in 0..=nstep {
        let num = _mm512_set1_ps(rmin + rdelta * is as f32 + nmaxf);
        let mut isc = [zero; G];
        for g in 0..G {
            isc[g] = _mm512_div_ps(num, _mm512_sub_ps(max[g], min[g]));
        }
        let mut sum_l = [zero; G];
        let mut sum_l2 = [zero; G];
        let mut sum_xl = [zero; G];
        for i in 0..N {
            for g in 0..G {
                let x = ld(&xt[g][i]);
                let l = candidate(_mm512_mul_ps(isc[g], xm[g][i]));
                laux[g][i] = l;
                let wl = _mm512_mul_ps(ld(&wt[g][i]), l);
                sum_l[g] = _mm512_add_ps(sum_l[g], wl);
                sum_l2[g] = _mm512_add_ps(sum_l2[g], _mm512_mul_ps(wl, l));
                sum_xl[g] = _mm512_add_ps(sum_xl[g], _mm512_mul_ps(wl, x));
            }
        }
        let mut ts = [zero; G];
        let mut tm = [zero; G];
        let mut ok = [0u16; G];
        for g in 0..G {
            let d = _mm512_sub_ps(
                _mm512_mul_ps(sum_w[g], sum_l2[g]),
                _mm512_mul_ps(sum_l[g], sum_l[g]),
            );
            let s = _mm512_div_ps(
                _mm512_sub_ps(
                    _mm512_mul_ps(sum_w[g], sum_xl[g]),
                    _mm512_mul_ps(sum_x[g], sum_l[g]),
                ),
                d,
            );
            let m = _mm512_div_ps(
                _mm512_sub_ps(
                    _mm512_mul_ps(sum_l2[g], sum_x[g]),
                    _mm512_mul_ps(sum_l[g], sum_xl[g]),
                ),
                d,
            );
            let pos = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(m, zero);
            tm[g] = _mm512_mask_blend_ps(pos, m, zero);
            ts[g] = _mm512_mask_blend_ps(pos, s, _mm512_div_ps(sum_xl[g], sum_l2[g]));
            ok[g] = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(d, zero) & !flat[g];
        }
        let mut err = [zero; G];
        for i in 0..N {
            for g in 0..G {
                let diff = _mm512_sub_ps(
                    _mm512_add_ps(_mm512_mul_ps(ts[g], laux[g][i]), tm[g]),
                    ld(&xt[g][i]),
                );
                err[g] = _mm512_add_ps(err[g], _mm512_mul_ps(ld(&wt[g][i]), err_of(diff)));
            }
        }
        for g in 0..G {
            let take = ok[g] & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(err[g], best[g]);
            if take != 0 {
                took[g] |= take;
                best[g] = _mm512_mask_blend_ps(take, best[g], err[g]);
                scale[g] = _mm512_mask_blend_ps(take, scale[g], ts[g]);
                code_isc[g] = _mm512_mask_blend_ps(take, code_isc[g], isc[g]);
                code_min[g] = _mm512_mask_blend_ps(take, code_min[g], min[g]);
                min[g] = _mm512_mask_blend_ps(take, min[g], tm[g]);
                for i in 0..N {
                    xm[g][i] = _mm512_sub_ps(ld(&xt[g][i]), min[g]);
                }
            }
        }
    }
    let mut out_scale = [[0f32; 16]; G];
    let mut out_min = [[0f32; 16]; G];
    for g in 0..G {
        let sc = _mm512_mask_blend_ps(flat[g], scale[g], zero);
        let the_min = _mm512_xor_ps(min[g], _mm512_set1_ps(-0.0)); // -min, signed zeros included
        // SAFETY: stores into whole `[f32; 16]` arrays.
        unsafe {
            _mm512_storeu_ps(out_scale[g].as_mut_ptr(), sc);
            _mm512_storeu_ps(out_min[g].as_mut_ptr(), the_min);
            for i in 0..N {
                let x = ld(&xt[g][i]);
                let v = _mm512_mul_ps(code_isc[g], _mm512_sub_ps(x, code_min[g]));
                let l = _mm512_mask_blend_ps(took[g], clamp(rne(v)), candidate(v));
                _mm512_storeu_ps(
                    l_out[g][i].as_mut_ptr(),
                    _mm512_mask_blend_ps(flat[g], l, zero),
                );
            }
        }
    }
    (out_scale, out_min)
}

/// Transposes a 16 x 16 matrix of 32-bit values held as 16 rows (unpack within 128-bit lanes,
/// then move 128-bit lanes: 64 shuffles, no memory round trip).
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose_16x16(r: [__m512; 16]) -> [__m512; 16] {
    let mut t = [_mm512_setzero_ps(); 16];
    for k in 0..8 {
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    // u[4a + c]: rows 4a..4a+4, in 128-bit lane q column c + 4q.
    let mut u = [_mm512_setzero_ps(); 16];
    for a in 0..4 {
        let pd = |v: __m512| _mm512_castps_pd(v);
        let (t0, t1, t2, t3) = (
            pd(t[4 * a]),
            pd(t[4 * a + 1]),
            pd(t[4 * a + 2]),
            pd(t[4 * a + 3]),
        );
        u[4 * a] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        u[4 * a + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        u[4 * a + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        u[4 * a + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    // v: for rows 0..8 (h = 0) and 8..16 (h = 1), columns c and c + 8 (0x88), c + 4 and
    // c + 12 (0xdd), rows 4h..4h+4 then 4h+4..4h+8 in each.
    let mut v = [[_mm512_setzero_ps(); 8]; 2];
    for h in 0..2 {
        for c in 0..4 {
            let (lo, hi) = (u[8 * h + c], u[8 * h + 4 + c]);
            v[h][c] = _mm512_shuffle_f32x4::<0x88>(lo, hi);
            v[h][4 + c] = _mm512_shuffle_f32x4::<0xdd>(lo, hi);
        }
    }
    let mut out = [_mm512_setzero_ps(); 16];
    for c in 0..4 {
        out[c] = _mm512_shuffle_f32x4::<0x88>(v[0][c], v[1][c]);
        out[c + 8] = _mm512_shuffle_f32x4::<0xdd>(v[0][c], v[1][c]);
        out[c + 4] = _mm512_shuffle_f32x4::<0x88>(v[0][4 + c], v[1][4 + c]);
        out[c + 12] = _mm512_shuffle_f32x4::<0xdd>(v[0][4 + c], v[1][4 + c]);
    }
    out
}

/// Two registers of 16 lanes by 32 elements: four super-blocks' sub-blocks side by side.
pub(crate) type Pairs = [[[f32; 16]; 32]; 2];

/// Four super-blocks of 256 weights laid out for [`make_qkx2_quants_x16`] with `G = 2`: lane
/// `8 * (b % 2) + j` of register `b / 2` holds sub-block `j` (32 weights) of super-block `b`.
/// Returns the weights side by side (`xt[g][i]` is element `i` of every lane) and the K-quant
/// importance `sqrt(mean(x^2)) + |x|` of each (the sum of squares in C's order).
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn transpose_8x32_x4(xs: &[[f32; 256]; 4]) -> (Pairs, Pairs) {
    let abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fff_ffff));
    let mut xt = [[[0f32; 16]; 32]; 2];
    let mut wt = [[[0f32; 16]; 32]; 2];
    for g in 0..2 {
        // Sixteen floats at a time: chunk 2m + half is half `half` of sub-block m (lane m).
        let pair = [&xs[2 * g], &xs[2 * g + 1]];
        let chunk = |c: usize| {
            let src: &[f32; 16] = &pair[c / 16].as_chunks::<16>().0[c % 16];
            // SAFETY: a whole `[f32; 16]` read.
            unsafe { _mm512_loadu_ps(src.as_ptr()) }
        };
        let first = transpose_16x16(std::array::from_fn(|m| chunk(2 * m)));
        let second = transpose_16x16(std::array::from_fn(|m| chunk(2 * m + 1)));
        let rows = |i: usize| if i < 16 { first[i] } else { second[i - 16] };
        let mut sum_x2 = _mm512_setzero_ps();
        for i in 0..32 {
            sum_x2 = _mm512_add_ps(sum_x2, _mm512_mul_ps(rows(i), rows(i)));
        }
        let av_x = _mm512_sqrt_ps(_mm512_div_ps(sum_x2, _mm512_set1_ps(32.0)));
        for i in 0..32 {
            let row = rows(i);
            // SAFETY: whole `[f32; 16]` stores.
            unsafe {
                _mm512_storeu_ps(xt[g][i].as_mut_ptr(), row);
                _mm512_storeu_ps(
                    wt[g][i].as_mut_ptr(),
                    _mm512_add_ps(av_x, _mm512_and_ps(row, abs_mask)),
                );
            }
        }
    }
    (xt, wt)
}

/// The codes of [`make_qkx2_quants_x16`] in the layout of [`transpose_8x32_x4`] back per
/// super-block and sub-block: `out[b][j][i]`.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn codes_8x32_x4(lt: &Pairs) -> [[[u8; 32]; 8]; 4] {
    let mut out = [[[0u8; 32]; 8]; 4];
    for g in 0..2 {
        // SAFETY: whole `[f32; 16]` reads.
        let row = |i: usize| unsafe { _mm512_loadu_ps(lt[g][i].as_ptr()) };
        for half in 0..2 {
            // Back to one register per lane (sub-block): elements 16 * half.. of each.
            let per_lane = transpose_16x16(std::array::from_fn(|i| row(16 * half + i)));
            for (m, v) in per_lane.iter().enumerate() {
                let bytes = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(*v));
                let dst = &mut out[2 * g + m / 8][m % 8][16 * half..16 * half + 16];
                // SAFETY: a 16-byte store into a 16-byte slice.
                unsafe { _mm_storeu_si128(dst.as_mut_ptr().cast(), bytes) };
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::search::{make_qkx2_quants_lanes, make_qkx3_quants_lanes};
    use super::*;

    #[test]
    fn transpose_16x16_transposes() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let m: [[f32; 16]; 16] =
            std::array::from_fn(|r| std::array::from_fn(|c| (16 * r + c) as f32));
        // SAFETY: feature checked above; whole-array loads and stores.
        let t = unsafe {
            let rows = std::array::from_fn(|r| _mm512_loadu_ps(m[r].as_ptr()));
            let out = transpose_16x16(rows);
            let mut t = [[0f32; 16]; 16];
            for r in 0..16 {
                _mm512_storeu_ps(t[r].as_mut_ptr(), out[r]);
            }
            t
        };
        for r in 0..16 {
            for c in 0..16 {
                assert_eq!(t[r][c], m[c][r], "({r}, {c})");
            }
        }
    }

    /// The intrinsics kernel against the portable one on random sub-blocks, flat lanes included.
    #[test]
    fn matches_portable_kernel() {
        if !(std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq"))
        {
            return;
        }
        let mut s = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        for trial in 0..100 {
            let mut xt = [[[0f32; 16]; 32]; 2];
            let mut wt = [[[0f32; 16]; 32]; 2];
            for g in 0..2 {
                for i in 0..32 {
                    for k in 0..16 {
                        let v = match (trial + k + g) % 5 {
                            0 => 0.25,                    // flat lane
                            1 => next().abs() * 3.0,      // only positive
                            2 => (next() * 16.0).round(), // ties
                            _ => next() * (1 + i % 3) as f32,
                        };
                        xt[g][i][k] = v;
                        wt[g][i][k] = 0.1 + v.abs();
                    }
                }
            }
            for (nmax, rmin, use_mad) in [(15, -1.0, false), (31, -0.5, false), (3, -0.5, true)] {
                let mut lb = [[[0f32; 16]; 32]; 2];
                // SAFETY: features checked above.
                let (bs, bm) = unsafe {
                    make_qkx2_quants_x16::<32, 2>(nmax, &xt, &wt, &mut lb, rmin, 0.1, 20, use_mad)
                };
                for g in 0..2 {
                    let mut la = [[0f32; 16]; 32];
                    let (a_s, a_m) = make_qkx2_quants_lanes::<32, 16>(
                        nmax, &xt[g], &wt[g], &mut la, rmin, 0.1, 20, use_mad,
                    );
                    assert_eq!(la, lb[g]);
                    assert_eq!(a_s.map(f32::to_bits), bs[g].map(f32::to_bits));
                    assert_eq!(a_m.map(f32::to_bits), bm[g].map(f32::to_bits));
                }
                // make_qkx3_quants, as the weighted K-quants run it (every 5th trial: each trial
                // already holds every kind of lane; the debug-build portable search is slow).
                if trial % 5 != 0 {
                    continue;
                }
                let mut lb = [[[0f32; 16]; 32]; 2];
                // SAFETY: features checked above.
                let (bs, bm) = unsafe {
                    make_qkx3_quants_x16::<32, 2>(nmax, &xt, &wt, &mut lb, -0.9, 0.05, 36, use_mad)
                };
                for g in 0..2 {
                    let mut la = [[0f32; 16]; 32];
                    let (a_s, a_m) = make_qkx3_quants_lanes::<32, 16>(
                        nmax, &xt[g], &wt[g], &mut la, -0.9, 0.05, 36, use_mad,
                    );
                    assert_eq!(la, lb[g]);
                    assert_eq!(a_s.map(f32::to_bits), bs[g].map(f32::to_bits));
                    assert_eq!(a_m.map(f32::to_bits), bm[g].map(f32::to_bits));
                }
            }
        }
    }
}
