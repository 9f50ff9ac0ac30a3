//! The scale searches of the K-quants: `make_qkx2_quants`, `make_qx_quants`, `make_q3_quants`.

use std::array::from_fn;

use super::{GROUP_MAX_EPS, nearest_int};

/// `make_qx_quants` of ggml with `rmse_type = 1` and no importance weights (weights `x^2`):
/// symmetric codes `L` in `0..2*nmax` (stored `+ nmax`), 18 extra scales
/// `-(nmax + 0.1 * is) / max` for `is` in `-9..=9`, `is != 0`. Returns the scale.
#[inline(always)]
pub(crate) fn make_qx_quants<const N: usize>(nmax: i32, x: &[f32; N], l_out: &mut [i8; N]) -> f32 {
    let w: [f32; N] = from_fn(|i| x[i] * x[i]);
    make_qx_quants_weighted(nmax, x, &w, l_out)
}

/// `make_qx_quants` of ggml with `rmse_type = 1` and the weights `w` (its `quant_weights`
/// argument): as [`make_qx_quants`], each squared error weighted by `w[i]`.
#[inline(always)]
pub(crate) fn make_qx_quants_weighted<const N: usize>(
    nmax: i32,
    x: &[f32; N],
    w: &[f32; N],
    l_out: &mut [i8; N],
) -> f32 {
    const LANES: usize = 18;
    let mut max = 0f32;
    let mut amax = 0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out.fill(0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let iscale = -nmaxf / max;
    let mut sumlx = 0f32;
    let mut suml2 = 0f32;
    for i in 0..N {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l_out[i] = (l + nmax) as i8;
        let lf = l as f32;
        sumlx += w[i] * x[i] * lf;
        suml2 += w[i] * lf * lf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;

    let mut isc = [0f32; LANES];
    for (k, v) in isc.iter_mut().enumerate() {
        let is = if k < 9 { k as i32 - 9 } else { k as i32 - 8 };
        *v = -(nmaxf + 0.1 * is as f32) / max;
    }
    let mut slx = [0f32; LANES];
    let mut sl2 = [0f32; LANES];
    for (&xi, &wi) in x.iter().zip(w) {
        let wx = wi * xi;
        for k in 0..LANES {
            let l = nearest_int(isc[k] * xi).clamp(-nmax, nmax - 1) as f32;
            slx[k] += wx * l;
            sl2[k] += wi * l * l;
        }
    }
    let mut chosen = None;
    for k in 0..LANES {
        if sl2[k] > 0.0 && slx[k] * slx[k] > best * sl2[k] {
            chosen = Some(k);
            scale = slx[k] / sl2[k];
            best = scale * slx[k];
        }
    }
    if let Some(k) = chosen {
        for i in 0..N {
            let l = nearest_int(isc[k] * x[i]).clamp(-nmax, nmax - 1);
            l_out[i] = (l + nmax) as i8;
        }
    }
    scale
}

/// `make_q3_quants` of ggml with `do_rmse = true`: symmetric codes in `-nmax..nmax` refined
/// coordinate-wise (at most 5 sweeps) under weights `x^2`. Writes `L + nmax`; returns the scale.
#[inline(always)]
pub(crate) fn make_q3_quants<const N: usize>(nmax: i32, x: &[f32; N], l_out: &mut [i8; N]) -> f32 {
    let mut max = 0f32;
    let mut amax = 0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let mut l = [0i32; N];
    let mut sumlx = 0f32;
    let mut suml2 = 0f32;
    for i in 0..N {
        let li = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l[i] = li;
        let w = x[i] * x[i];
        sumlx += w * x[i] * li as f32;
        suml2 += w * li as f32 * li as f32;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for i in 0..N {
            let w = x[i] * x[i];
            let mut slx = sumlx - w * x[i] * l[i] as f32;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * l[i] as f32 * l[i] as f32;
                let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != l[i] {
                    slx += w * x[i] * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l[i] = new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    for i in 0..N {
        l_out[i] = (l[i] + nmax) as i8;
    }
    if suml2 > 0.0 { sumlx / suml2 } else { 0.0 }
}

/// Round to nearest, ties to even, in the float domain: equal to `nearest_int(v) as f32` for
/// `|v| <= 2^22` (the `+ 1.5 * 2^23` sum has unit spacing, so the adder does the rounding).
#[inline(always)]
fn rne(v: f32) -> f32 {
    (v + 12_582_912.0) - 12_582_912.0
}

/// `MAX(0, MIN(hi, l))` as two selects (no `clamp` assertion, so it vectorises).
#[inline(always)]
fn clamp0(l: f32, hi: f32) -> f32 {
    let l = if l > hi { hi } else { l };
    if l < 0.0 { 0.0 } else { l }
}

/// `make_qkx2_quants` of ggml for `LANES` independent groups at once (lane `k` of `xt[i]` is
/// element `i` of group `k`), e.g. the 8 sub-blocks of a Q4_K super-block. It fits
/// `x ≈ scale * L + min` (`L` in `0..=nmax`, `min <= 0`) minimising the weighted squared (or
/// absolute, `use_mad`) error over the candidate scales `(rmin + rdelta * is + nmax) /
/// (max - min)`, `is` in `0..=nstep`; an accepted candidate updates `min` for the next ones. Every lane runs C's exact
/// sequence of candidates, in C's order, with its own accept/reject decisions turned into
/// selects, so each lane is bit-identical to one scalar call while the work vectorises across
/// lanes. Writes the codes (as small integral floats) and returns `(scales, mins)` where
/// `mins` is `the_min` (`-min`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn make_qkx2_quants_lanes<const N: usize, const LANES: usize>(
    nmax: i32,
    xt: &[[f32; LANES]; N],
    wt: &[[f32; LANES]; N],
    l_out: &mut [[f32; LANES]; N],
    rmin: f32,
    rdelta: f32,
    nstep: usize,
    use_mad: bool,
) -> ([f32; LANES], [f32; LANES]) {
    make_qkx_quants_lanes::<N, LANES, false>(nmax, xt, wt, l_out, rmin, rdelta, nstep, use_mad)
}

/// `make_qkx3_quants` of ggml (what the importance-weighted K-quants and Q4_1/Q5_1 run), lane
/// by lane as [`make_qkx2_quants_lanes`]. The two searches differ only in how a candidate
/// code is rounded: `make_qkx3_quants` takes `v > 0 ? nearest_int(MIN(v, nmax)) : 0`, which
/// also maps a NaN or infinite `v` to a valid code.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn make_qkx3_quants_lanes<const N: usize, const LANES: usize>(
    nmax: i32,
    xt: &[[f32; LANES]; N],
    wt: &[[f32; LANES]; N],
    l_out: &mut [[f32; LANES]; N],
    rmin: f32,
    rdelta: f32,
    nstep: usize,
    use_mad: bool,
) -> ([f32; LANES], [f32; LANES]) {
    make_qkx_quants_lanes::<N, LANES, true>(nmax, xt, wt, l_out, rmin, rdelta, nstep, use_mad)
}

/// The candidate code of `make_qkx3_quants`: `v > 0 ? nearest_int(MIN(v, nmax)) : 0`.
#[inline(always)]
fn code3(v: f32, hi: f32) -> f32 {
    let m = if v < hi { v } else { hi };
    if v > 0.0 { rne(m) } else { 0.0 }
}

/// The body of [`make_qkx2_quants_lanes`] (`QKX3 = false`) and [`make_qkx3_quants_lanes`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn make_qkx_quants_lanes<const N: usize, const LANES: usize, const QKX3: bool>(
    nmax: i32,
    xt: &[[f32; LANES]; N],
    wt: &[[f32; LANES]; N],
    l_out: &mut [[f32; LANES]; N],
    rmin: f32,
    rdelta: f32,
    nstep: usize,
    use_mad: bool,
) -> ([f32; LANES], [f32; LANES]) {
    let nmaxf = nmax as f32;
    let mut min = xt[0];
    let mut max = xt[0];
    let mut sum_w = wt[0];
    let mut sum_x = [0f32; LANES];
    for k in 0..LANES {
        sum_x[k] = sum_w[k] * xt[0][k];
    }
    for i in 1..N {
        for k in 0..LANES {
            let x = xt[i][k];
            min[k] = if x < min[k] { x } else { min[k] };
            max[k] = if x > max[k] { x } else { max[k] };
            let w = wt[i][k];
            sum_w[k] += w;
            sum_x[k] += w * x;
        }
    }
    let mut flat = [false; LANES];
    let mut scale = [0f32; LANES];
    let mut iscale = [0f32; LANES];
    for k in 0..LANES {
        min[k] = if min[k] > 0.0 { 0.0 } else { min[k] };
        flat[k] = max[k] == min[k];
        iscale[k] = nmaxf / (max[k] - min[k]);
        scale[k] = 1.0 / iscale[k];
    }
    let mut best = [0f32; LANES];
    for i in 0..N {
        for k in 0..LANES {
            let x = xt[i][k];
            let l = clamp0(rne(iscale[k] * (x - min[k])), nmaxf);
            l_out[i][k] = l;
            let diff = scale[k] * l + min[k] - x;
            let diff = if use_mad { diff.abs() } else { diff * diff };
            best[k] += wt[i][k] * diff;
        }
    }
    let mut laux = [[0f32; LANES]; N];
    for is in 0..=nstep {
        let mut isc = [0f32; LANES];
        for k in 0..LANES {
            isc[k] = (rmin + rdelta * is as f32 + nmaxf) / (max[k] - min[k]);
        }
        // Whole-lane array expressions keep the accumulators in vector registers.
        let mut sum_l = [0f32; LANES];
        let mut sum_l2 = [0f32; LANES];
        let mut sum_xl = [0f32; LANES];
        for i in 0..N {
            let x = xt[i];
            let w = wt[i];
            let l: [f32; LANES] = from_fn(|k| {
                let v = isc[k] * (x[k] - min[k]);
                if QKX3 {
                    code3(v, nmaxf)
                } else {
                    clamp0(rne(v), nmaxf)
                }
            });
            laux[i] = l;
            let wl: [f32; LANES] = from_fn(|k| w[k] * l[k]);
            sum_l = from_fn(|k| sum_l[k] + wl[k]);
            sum_l2 = from_fn(|k| sum_l2[k] + wl[k] * l[k]);
            sum_xl = from_fn(|k| sum_xl[k] + wl[k] * x[k]);
        }
        let mut ts = [0f32; LANES];
        let mut tm = [0f32; LANES];
        let mut ok = [false; LANES];
        for k in 0..LANES {
            let d = sum_w[k] * sum_l2[k] - sum_l[k] * sum_l[k];
            let s = (sum_w[k] * sum_xl[k] - sum_x[k] * sum_l[k]) / d;
            let m = (sum_l2[k] * sum_x[k] - sum_l[k] * sum_xl[k]) / d;
            let pos = m > 0.0;
            tm[k] = if pos { 0.0 } else { m };
            ts[k] = if pos { sum_xl[k] / sum_l2[k] } else { s };
            ok[k] = d > 0.0 && !flat[k];
        }
        let mut err = [0f32; LANES];
        for i in 0..N {
            let (l, x, w) = (laux[i], xt[i], wt[i]);
            let diff: [f32; LANES] = from_fn(|k| ts[k] * l[k] + tm[k] - x[k]);
            let diff: [f32; LANES] = from_fn(|k| {
                if use_mad {
                    diff[k].abs()
                } else {
                    diff[k] * diff[k]
                }
            });
            err = from_fn(|k| err[k] + w[k] * diff[k]);
        }
        let mut take = [false; LANES];
        for k in 0..LANES {
            take[k] = ok[k] && err[k] < best[k];
            best[k] = if take[k] { err[k] } else { best[k] };
            scale[k] = if take[k] { ts[k] } else { scale[k] };
            min[k] = if take[k] { tm[k] } else { min[k] };
        }
        if take.iter().any(|&t| t) {
            for i in 0..N {
                for k in 0..LANES {
                    l_out[i][k] = if take[k] { laux[i][k] } else { l_out[i][k] };
                }
            }
        }
    }
    let mut the_min = [0f32; LANES];
    for k in 0..LANES {
        the_min[k] = -min[k];
        scale[k] = if flat[k] { 0.0 } else { scale[k] };
    }
    for row in l_out.iter_mut() {
        for k in 0..LANES {
            row[k] = if flat[k] { 0.0 } else { row[k] };
        }
    }
    (scale, the_min)
}
