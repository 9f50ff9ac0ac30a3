//! `make_qp_quants` of ggml: the weighted search that quantizes the (non-negative) sub-block
//! scales and mins of the weighted Q2_K, Q4_K and Q5_K to `0..=nmax` against one super-block
//! scale.

use super::super::k_quants::nearest_int;

/// Fits `x ≈ scale * L` (`L` in `0..=nmax`) minimising `sum qw * (x - scale * L)^2`: the
/// best of 9 starting scales `(nmax + 0.1 * is) / max`, then up to 5 sweeps of coordinate
/// descent, as llama.cpp c392e509 has it. Writes the codes (as C's `uint8_t`: a negative code wraps) and returns the scale.
#[inline(always)]
pub(super) fn make_qp_quants<const N: usize>(
    nmax: i32,
    x: &[f32; N],
    l_out: &mut [u8; N],
    qw: &[f32; N],
) -> f32 {
    let mut max = 0f32;
    for &v in x {
        max = if max > v { max } else { v };
    }
    // c392e509 tests `!max` here (later llama.cpp: `max < GROUP_MAX_EPS`), so tiny scales go
    // on to the search; with all-zero weights that ends in 0/0 = NaN, which its bytes hold.
    if max == 0.0 {
        l_out.fill(0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / max;
    for i in 0..N {
        l_out[i] = nearest_int(iscale * x[i]) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0f32;
    for i in 0..N {
        let diff = x[i] - scale * l_out[i] as f32;
        best_mse += qw[i] * diff * diff;
    }
    for is in -4i32..=4 {
        if is == 0 {
            continue;
        }
        let iscale_is = (0.1 * is as f32 + nmaxf) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0f32;
        for i in 0..N {
            let l = nearest_int(iscale_is * x[i]).min(nmax);
            let diff = x[i] - scale_is * l as f32;
            mse += qw[i] * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    let mut sumlx = 0f32;
    let mut suml2 = 0f32;
    for i in 0..N {
        let l = nearest_int(iscale * x[i]).min(nmax);
        l_out[i] = l as u8;
        let lf = l as f32;
        sumlx += qw[i] * x[i] * lf;
        suml2 += qw[i] * lf * lf;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for i in 0..N {
            let w = qw[i];
            let li = l_out[i] as f32;
            let mut slx = sumlx - w * x[i] * li;
            let mut sl2 = suml2 - w * li * li;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(x[i] * sl2 / slx).min(nmax);
                if new_l != l_out[i] as i32 {
                    let nl = new_l as f32;
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l_out[i] = new_l as u8;
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
    // c392e509 divides unguarded (later llama.cpp returns 0 when `suml2 == 0`).
    sumlx / suml2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_zero_scales_give_zero() {
        let mut l = [7u8; 8];
        assert_eq!(make_qp_quants(63, &[0.0; 8], &mut l, &[1.0; 8]), 0.0);
        assert_eq!(l, [0; 8]);
    }

    #[test]
    fn exact_multiples_are_found() {
        // x = 0.5 * L for L = 0..=7 with nmax 7: the fit is exact.
        let x: [f32; 8] = std::array::from_fn(|i| 0.5 * i as f32);
        let mut l = [0u8; 8];
        let s = make_qp_quants(7, &x, &mut l, &[1.0; 8]);
        assert_eq!(s, 0.5);
        assert_eq!(l, [0, 1, 2, 3, 4, 5, 6, 7]);
    }
}
