//! Small branch-free helpers shared by the block kernels, written so the compiler vectorises them.

/// Largest `|x|` of a 32-value block (lane-wise, then reduced; exact since `max` is associative).
#[inline(always)]
pub(crate) fn abs_max_32(x: &[f32; 32]) -> f32 {
    let mut m = [0f32; 8];
    for c in x.chunks_exact(8) {
        for k in 0..8 {
            let a = c[k].abs();
            m[k] = if a > m[k] { a } else { m[k] };
        }
    }
    m.into_iter()
        .fold(0f32, |acc, v| if v > acc { v } else { acc })
}

/// Smallest and largest value of a 32-value block, with llama.cpp's sequential semantics
/// (`if v < min`): among equal values (only `-0.0`/`+0.0` can differ) the first one wins.
#[inline(always)]
pub(crate) fn min_max_32(x: &[f32; 32]) -> (f32, f32) {
    let mut lo = [f32::MAX; 8];
    let mut hi = [-f32::MAX; 8];
    for c in x.chunks_exact(8) {
        for k in 0..8 {
            lo[k] = if c[k] < lo[k] { c[k] } else { lo[k] };
            hi[k] = if c[k] > hi[k] { c[k] } else { hi[k] };
        }
    }
    let mut min = lo
        .into_iter()
        .fold(f32::MAX, |a, v| if v < a { v } else { a });
    let mut max = hi
        .into_iter()
        .fold(-f32::MAX, |a, v| if v > a { v } else { a });
    // Signed zeros compare equal: take the first one in element order, as the sequential loop does.
    if min == 0.0 {
        min = first_zero(x);
    }
    if max == 0.0 {
        max = first_zero(x);
    }
    (min, max)
}

#[inline(always)]
fn first_zero(x: &[f32; 32]) -> f32 {
    x.iter().copied().find(|v| *v == 0.0).unwrap_or(0.0)
}

/// Index of the first element with the largest `|x|` (numpy `argmax(abs(x))`).
#[inline(always)]
pub(crate) fn first_abs_max_index_32(x: &[f32; 32]) -> usize {
    let amax = abs_max_32(x);
    let mut idx = [32u32; 8];
    for (ci, c) in x.chunks_exact(8).enumerate() {
        for k in 0..8 {
            let j = (ci * 8 + k) as u32;
            let hit = c[k].abs() == amax && idx[k] == 32;
            idx[k] = if hit { j } else { idx[k] };
        }
    }
    idx.into_iter().min().unwrap_or(0).min(31) as usize
}

/// Whether every value of `x` is finite (no NaN, no ±Inf), by the exponent bits.
#[inline(always)]
pub(crate) fn all_finite(x: &[f32]) -> bool {
    let mut m = [0u32; 8];
    let (chunks, rest) = x.as_chunks::<8>();
    for c in chunks {
        for k in 0..8 {
            let b = c[k].to_bits() & 0x7fff_ffff;
            m[k] = m[k].max(b);
        }
    }
    let tail = rest
        .iter()
        .map(|v| v.to_bits() & 0x7fff_ffff)
        .max()
        .unwrap_or(0);
    m.into_iter().max().unwrap_or(0).max(tail) < 0x7f80_0000
}

/// Index of the first non-finite value of `x`, if any.
pub(crate) fn first_non_finite(x: &[f32]) -> Option<usize> {
    x.iter().position(|v| !v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_first_of_equal_magnitudes() {
        let mut x = [0f32; 32];
        x[5] = -2.0;
        x[20] = 2.0;
        assert_eq!(first_abs_max_index_32(&x), 5);
        assert_eq!(first_abs_max_index_32(&[0.0; 32]), 0);
    }

    #[test]
    fn min_max_keeps_first_signed_zero() {
        let mut x = [1f32; 32];
        x[3] = -0.0;
        x[4] = 0.0;
        let (min, _) = min_max_32(&x);
        assert!(min == 0.0 && min.is_sign_negative());
    }

    #[test]
    fn finiteness() {
        let mut x = vec![1f32; 37];
        assert!(all_finite(&x));
        x[36] = f32::INFINITY;
        assert!(!all_finite(&x));
        assert_eq!(first_non_finite(&x), Some(36));
        x[36] = f32::NAN;
        assert!(!all_finite(&x));
    }
}

/// The `i32` of an integral `v` with `|v| < 2^22`, by the `+ 1.5 * 2^23` trick (a float add and
/// integer ops, so it vectorises where a saturating `as i32` does not).
#[inline(always)]
pub(crate) fn int_of(v: f32) -> i32 {
    ((v + 12_582_912.0).to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// `roundf`: to nearest, ties away from zero, written branch-free (`v - trunc(v)` is exact).
#[inline(always)]
pub(crate) fn round_half_away(v: f32) -> f32 {
    let t = v.trunc();
    if (v - t).abs() >= 0.5 {
        t + 1f32.copysign(v)
    } else {
        t
    }
}

#[cfg(test)]
mod rounding_tests {
    use super::*;

    #[test]
    fn round_half_away_matches_std() {
        for v in [
            0.5f32,
            -0.5,
            1.5,
            -1.5,
            2.5,
            0.49999997,
            -0.49999997,
            126.5,
            -127.4,
            0.0,
            -0.0,
        ] {
            assert_eq!(round_half_away(v), v.round(), "{v}");
            assert_eq!(int_of(round_half_away(v)), v.round() as i32, "{v}");
        }
        for i in 0..100_000 {
            let v = (i as f32 - 50_000.0) * 0.00317;
            assert_eq!(round_half_away(v), v.round(), "{v}");
            assert_eq!(int_of(v.trunc()), v as i32, "{v}");
        }
    }
}
