//! AVX2 version of [`make_qkx2_quants_lanes`] (and of `make_qkx3_quants_lanes`, which differs
//! only in the rounding of a candidate code) for 8 lanes (one `__m256` per quantity).
//!
//! LLVM does not keep the per-lane accumulators of the portable version in vector registers,
//! so this spells the same operations out with intrinsics. Every operation is the IEEE
//! single-precision operation the portable code performs, in the same order, with the same
//! select semantics; a unit test checks it against the portable version bit for bit.
//!
//! [`make_qkx2_quants_lanes`]: super::search::make_qkx2_quants_lanes

use std::arch::x86_64::*;

/// # Safety
/// The CPU must support AVX2.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn make_qkx2_quants_x8<const N: usize>(
    nmax: i32,
    xt: &[[f32; 8]; N],
    wt: &[[f32; 8]; N],
    l_out: &mut [[f32; 8]; N],
    rmin: f32,
    rdelta: f32,
    nstep: usize,
    use_mad: bool,
) -> ([f32; 8], [f32; 8]) {
    // SAFETY: the caller checked AVX2.
    unsafe { make_qkx_quants_x8::<N, false>(nmax, xt, wt, l_out, rmin, rdelta, nstep, use_mad) }
}

/// AVX2 version of [`make_qkx3_quants_lanes`] for 8 lanes.
///
/// # Safety
/// The CPU must support AVX2.
///
/// [`make_qkx3_quants_lanes`]: super::search::make_qkx3_quants_lanes
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn make_qkx3_quants_x8<const N: usize>(
    nmax: i32,
    xt: &[[f32; 8]; N],
    wt: &[[f32; 8]; N],
    l_out: &mut [[f32; 8]; N],
    rmin: f32,
    rdelta: f32,
    nstep: usize,
    use_mad: bool,
) -> ([f32; 8], [f32; 8]) {
    // SAFETY: the caller checked AVX2.
    unsafe { make_qkx_quants_x8::<N, true>(nmax, xt, wt, l_out, rmin, rdelta, nstep, use_mad) }
}

/// The body of both: `QKX3` picks `make_qkx3_quants`' candidate code
/// `v > 0 ? nearest_int(MIN(v, nmax)) : 0` over `make_qkx2_quants`' clamp.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn make_qkx_quants_x8<const N: usize, const QKX3: bool>(
    nmax: i32,
    xt: &[[f32; 8]; N],
    wt: &[[f32; 8]; N],
    l_out: &mut [[f32; 8]; N],
    rmin: f32,
    rdelta: f32,
    nstep: usize,
    use_mad: bool,
) -> ([f32; 8], [f32; 8]) {
    // SAFETY: every pointer below comes from a live `[f32; 8]`, read or written whole.
    let ld = |a: &[f32; 8]| unsafe { _mm256_loadu_ps(a.as_ptr()) };
    let nmaxf = nmax as f32;
    let vnmax = _mm256_set1_ps(nmaxf);
    let zero = _mm256_setzero_ps();
    let magic = _mm256_set1_ps(12_582_912.0);
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let rne = |v: __m256| _mm256_sub_ps(_mm256_add_ps(v, magic), magic);
    // `if l > hi {hi}` then `if l < 0 {0}`: min/max give the same values (codes are never -0).
    let clamp = |l: __m256| _mm256_max_ps(_mm256_min_ps(l, vnmax), zero);
    let err_of = |d: __m256| {
        if use_mad {
            _mm256_and_ps(d, abs_mask)
        } else {
            _mm256_mul_ps(d, d)
        }
    };

    let x0 = ld(&xt[0]);
    let mut min = x0;
    let mut max = x0;
    let mut sum_w = ld(&wt[0]);
    let mut sum_x = _mm256_mul_ps(sum_w, x0);
    for i in 1..N {
        let x = ld(&xt[i]);
        let w = ld(&wt[i]);
        min = _mm256_blendv_ps(min, x, _mm256_cmp_ps::<_CMP_LT_OQ>(x, min));
        max = _mm256_blendv_ps(max, x, _mm256_cmp_ps::<_CMP_GT_OQ>(x, max));
        sum_w = _mm256_add_ps(sum_w, w);
        sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(w, x));
    }
    min = _mm256_blendv_ps(min, zero, _mm256_cmp_ps::<_CMP_GT_OQ>(min, zero));
    let flat = _mm256_cmp_ps::<_CMP_EQ_OQ>(max, min);
    let iscale = _mm256_div_ps(vnmax, _mm256_sub_ps(max, min));
    let mut scale = _mm256_div_ps(_mm256_set1_ps(1.0), iscale);
    let mut best = zero;
    let mut lv = [zero; N];
    for i in 0..N {
        let x = ld(&xt[i]);
        let l = clamp(rne(_mm256_mul_ps(iscale, _mm256_sub_ps(x, min))));
        lv[i] = l;
        let diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, l), min), x);
        best = _mm256_add_ps(best, _mm256_mul_ps(ld(&wt[i]), err_of(diff)));
    }
    let mut laux = [zero; N];
    for is in 0..=nstep {
        let num = _mm256_set1_ps(rmin + rdelta * is as f32 + nmaxf);
        let isc = _mm256_div_ps(num, _mm256_sub_ps(max, min));
        let mut sum_l = zero;
        let mut sum_l2 = zero;
        let mut sum_xl = zero;
        for i in 0..N {
            let x = ld(&xt[i]);
            let v = _mm256_mul_ps(isc, _mm256_sub_ps(x, min));
            let l = if QKX3 {
                // MIN(v, nmax) is `v < nmax ? v : nmax` (NaN -> nmax), as `min_ps(v, nmax)`;
                // then 0 unless v > 0 (NaN -> 0).
                let r = rne(_mm256_min_ps(v, vnmax));
                _mm256_and_ps(r, _mm256_cmp_ps::<_CMP_GT_OQ>(v, zero))
            } else {
                clamp(rne(v))
            };
            laux[i] = l;
            let wl = _mm256_mul_ps(ld(&wt[i]), l);
            sum_l = _mm256_add_ps(sum_l, wl);
            sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wl, l));
            sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wl, x));
        }
        let d = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
        let s = _mm256_div_ps(
            _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)),
            d,
        );
        let m = _mm256_div_ps(
            _mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)),
            d,
        );
        let pos = _mm256_cmp_ps::<_CMP_GT_OQ>(m, zero);
        let tm = _mm256_blendv_ps(m, zero, pos);
        let ts = _mm256_blendv_ps(s, _mm256_div_ps(sum_xl, sum_l2), pos);
        let ok = _mm256_andnot_ps(flat, _mm256_cmp_ps::<_CMP_GT_OQ>(d, zero));
        let mut err = zero;
        for i in 0..N {
            let diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(ts, laux[i]), tm), ld(&xt[i]));
            err = _mm256_add_ps(err, _mm256_mul_ps(ld(&wt[i]), err_of(diff)));
        }
        let take = _mm256_and_ps(ok, _mm256_cmp_ps::<_CMP_LT_OQ>(err, best));
        if _mm256_movemask_ps(take) != 0 {
            best = _mm256_blendv_ps(best, err, take);
            scale = _mm256_blendv_ps(scale, ts, take);
            min = _mm256_blendv_ps(min, tm, take);
            for i in 0..N {
                lv[i] = _mm256_blendv_ps(lv[i], laux[i], take);
            }
        }
    }
    scale = _mm256_blendv_ps(scale, zero, flat);
    let the_min = _mm256_xor_ps(min, _mm256_set1_ps(-0.0)); // -min, signed zeros included
    let mut out_scale = [0f32; 8];
    let mut out_min = [0f32; 8];
    // SAFETY: stores into whole local `[f32; 8]` arrays.
    unsafe {
        _mm256_storeu_ps(out_scale.as_mut_ptr(), scale);
        _mm256_storeu_ps(out_min.as_mut_ptr(), the_min);
        for i in 0..N {
            _mm256_storeu_ps(l_out[i].as_mut_ptr(), _mm256_blendv_ps(lv[i], zero, flat));
        }
    }
    (out_scale, out_min)
}

#[cfg(test)]
mod tests {
    use super::super::search::{make_qkx2_quants_lanes, make_qkx3_quants_lanes};
    use super::*;

    /// The intrinsics kernel against the portable one on random sub-blocks, flat lanes included.
    #[test]
    fn matches_portable_kernel() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let mut s = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        for trial in 0..200 {
            let mut xt = [[0f32; 8]; 32];
            for (i, row) in xt.iter_mut().enumerate() {
                for (k, v) in row.iter_mut().enumerate() {
                    *v = match (trial + k) % 5 {
                        0 => 0.25,                    // flat lane
                        1 => next().abs() * 3.0,      // only positive
                        2 => (next() * 16.0).round(), // ties
                        _ => next() * (1 + i % 3) as f32,
                    };
                }
            }
            let mut wt = [[0f32; 8]; 32];
            for i in 0..32 {
                for k in 0..8 {
                    wt[i][k] = 0.1 + xt[i][k].abs();
                }
            }
            for (nmax, rmin, use_mad) in [(15, -1.0, false), (31, -0.5, false), (3, -0.5, true)] {
                let (mut la, mut lb) = ([[0f32; 8]; 32], [[0f32; 8]; 32]);
                let a = make_qkx2_quants_lanes::<32, 8>(
                    nmax, &xt, &wt, &mut la, rmin, 0.1, 20, use_mad,
                );
                // SAFETY: AVX2 checked above.
                let b = unsafe {
                    make_qkx2_quants_x8::<32>(nmax, &xt, &wt, &mut lb, rmin, 0.1, 20, use_mad)
                };
                assert_eq!(la, lb);
                assert_eq!(a.0.map(f32::to_bits), b.0.map(f32::to_bits));
                assert_eq!(a.1.map(f32::to_bits), b.1.map(f32::to_bits));
                // make_qkx3_quants, as the weighted K-quants run it (every 5th trial: each trial
                // already holds every kind of lane; the debug-build portable search is slow).
                if trial % 5 != 0 {
                    continue;
                }
                let (mut la, mut lb) = ([[0f32; 8]; 32], [[0f32; 8]; 32]);
                let a = make_qkx3_quants_lanes::<32, 8>(
                    nmax, &xt, &wt, &mut la, -0.9, 0.05, 36, use_mad,
                );
                // SAFETY: AVX2 checked above.
                let b = unsafe {
                    make_qkx3_quants_x8::<32>(nmax, &xt, &wt, &mut lb, -0.9, 0.05, 36, use_mad)
                };
                assert_eq!(la, lb);
                assert_eq!(a.0.map(f32::to_bits), b.0.map(f32::to_bits));
                assert_eq!(a.1.map(f32::to_bits), b.1.map(f32::to_bits));
            }
        }
    }
}
