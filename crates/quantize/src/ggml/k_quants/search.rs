//! The scale searches of the K-quants: `make_qkx2_quants`, `make_qx_quants`, `make_q3_quants`.

use super::{GROUP_MAX_EPS, nearest_int};

/// `make_qkx2_quants` of ggml: fits `x ≈ scale * L + min` (`L` in `0..=nmax`, `min <= 0`) with
/// weighted squared (or absolute, `use_mad`) error, trying `nstep + 1` scales
/// `(rmin + rdelta * is + nmax) / (max - min)`. Writes `L`; returns `(scale, -min)`.
///
/// `LANES` (>= `nstep + 1`) candidates run side by side; each lane accumulates its sums in
/// element order exactly as the C loop does, and the winner is chosen in C's order.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn make_qkx2_quants<const N: usize, const LANES: usize>(
    nmax: i32,
    x: &[f32; N],
    weights: &[f32; N],
    l_out: &mut [u8; N],
    rmin: f32,
    rdelta: f32,
    nstep: usize,
    use_mad: bool,
) -> (f32, f32) {
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..N {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out.fill(0);
        return (0.0, -min);
    }
    let nmaxf = nmax as f32;
    let iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..N {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l_out[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        let diff = if use_mad { diff.abs() } else { diff * diff };
        best_error += weights[i] * diff;
    }
    if nstep < 1 {
        return (scale, -min);
    }

    // Candidates after an accepted one see the new `min` (C updates it inside the loop), so
    // evaluate all remaining candidates speculatively with the current `min`, accept the first
    // that wins, and re-run the rest with the updated `min`.
    let mut first = 0usize;
    while first <= nstep {
        let mut isc = [0f32; LANES];
        for (k, v) in isc.iter_mut().enumerate() {
            *v = (rmin + rdelta * (first + k) as f32 + nmaxf) / (max - min);
        }
        // Pass 1: the candidate codes and their weighted sums.
        let mut lv = [[0f32; LANES]; N];
        let mut sum_l = [0f32; LANES];
        let mut sum_l2 = [0f32; LANES];
        let mut sum_xl = [0f32; LANES];
        for i in 0..N {
            let xm = x[i] - min;
            let w = weights[i];
            let xi = x[i];
            let row = &mut lv[i];
            for k in 0..LANES {
                let l = nearest_int(isc[k] * xm).clamp(0, nmax) as f32;
                row[k] = l;
                let wl = w * l;
                sum_l[k] += wl;
                sum_l2[k] += wl * l;
                sum_xl[k] += wl * xi;
            }
        }
        // The least-squares scale and min of each candidate.
        let mut this_scale = [0f32; LANES];
        let mut this_min = [0f32; LANES];
        let mut valid = [false; LANES];
        for k in 0..LANES {
            let d = sum_w * sum_l2[k] - sum_l[k] * sum_l[k];
            let mut ts = (sum_w * sum_xl[k] - sum_x * sum_l[k]) / d;
            let mut tm = (sum_l2[k] * sum_x - sum_l[k] * sum_xl[k]) / d;
            if tm > 0.0 {
                tm = 0.0;
                ts = sum_xl[k] / sum_l2[k];
            }
            this_scale[k] = ts;
            this_min[k] = tm;
            valid[k] = d > 0.0;
        }
        // Pass 2: the error of each candidate.
        let mut err = [0f32; LANES];
        for i in 0..N {
            let w = weights[i];
            let xi = x[i];
            let row = &lv[i];
            for k in 0..LANES {
                let diff = this_scale[k] * row[k] + this_min[k] - xi;
                let diff = if use_mad { diff.abs() } else { diff * diff };
                err[k] += w * diff;
            }
        }
        let count = (nstep + 1 - first).min(LANES);
        match (0..count).find(|&k| valid[k] && err[k] < best_error) {
            Some(k) => {
                for i in 0..N {
                    l_out[i] = lv[i][k] as u8;
                }
                best_error = err[k];
                scale = this_scale[k];
                min = this_min[k];
                first += k + 1;
            }
            None => first += count,
        }
    }
    (scale, -min)
}

/// `make_qx_quants` of ggml with `rmse_type = 1` and no importance weights (weights `x^2`):
/// symmetric codes `L` in `0..2*nmax` (stored `+ nmax`), 18 extra scales
/// `-(nmax + 0.1 * is) / max` for `is` in `-9..=9`, `is != 0`. Returns the scale.
#[inline(always)]
pub(crate) fn make_qx_quants<const N: usize>(nmax: i32, x: &[f32; N], l_out: &mut [i8; N]) -> f32 {
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
        let w = x[i] * x[i];
        let lf = l as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
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
    for i in 0..N {
        let xi = x[i];
        let w = xi * xi;
        let wx = w * xi;
        for k in 0..LANES {
            let l = nearest_int(isc[k] * xi).clamp(-nmax, nmax - 1) as f32;
            slx[k] += wx * l;
            sl2[k] += w * l * l;
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
