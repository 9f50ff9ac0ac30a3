//! AVX-512 kernels of the IQ4 scale search: the 16 candidate scales of a block as the 16
//! lanes of one register, and the nearest-level lookup as in-register table permutes.
//!
//! Same IEEE single-precision operations as [`sums_portable`](super::sums_portable) and
//! [`best_index`](super::best_index) in the same order (separate multiply and add, no FMA), so
//! the results are bit-identical; unit-tested against them in the parent module.

use std::arch::x86_64::*;

use super::{KV, LANES, THRESHOLDS};

/// Buckets of the level lookup in [`sums`]: `b = trunc((a + 136) * BUCKET)`, clamped to
/// 0..=31, splits [-136, 136] into 32 buckets of width 8.5. The thresholds of
/// [`THRESHOLDS`] are at least 11.5 apart, so a bucket widened by 1 on each side (far more than
/// the rounding of `b`) holds at most one: the level index is `L0[b]`, plus one if `a` reaches
/// that threshold `TH[b]`.
const BUCKET: f32 = 32.0 / 272.0;

/// Per bucket: the number of thresholds below it (`L0`), the one inside it or NaN (`TH`).
const BUCKETS: ([usize; 32], [f32; 32]) = {
    let mut l0 = [0usize; 32];
    // NaN where no threshold is left: `a >= NaN` is false even for +Inf.
    let mut th = [f32::NAN; 32];
    let mut b = 0;
    while b < 32 {
        let lo = b as f64 / BUCKET as f64 - 136.0 - 1.0;
        let mut i = 0;
        while i < 15 {
            if (THRESHOLDS[i] as f64) <= lo {
                l0[b] = i + 1;
            }
            i += 1;
        }
        if l0[b] < 15 {
            th[b] = THRESHOLDS[l0[b]];
        }
        b += 1;
    }
    (l0, th)
};

/// The bucket tables as register pairs: `L0`, `TH`, `val[L0]`, `val[min(L0 + 1, 15)]`.
struct Buckets {
    l0: (__m512i, __m512i),
    th: (__m512, __m512),
    qa: (__m512, __m512),
    qb: (__m512, __m512),
}

/// `L0` as the i32 lanes of the index lookup.
const L0: [i32; 32] = {
    let mut t = [0i32; 32];
    let mut b = 0;
    while b < 32 {
        t[b] = BUCKETS.0[b] as i32;
        b += 1;
    }
    t
};

const QA: [f32; 32] = {
    let mut t = [0f32; 32];
    let mut b = 0;
    while b < 32 {
        t[b] = KV[BUCKETS.0[b]];
        b += 1;
    }
    t
};

const QB: [f32; 32] = {
    let mut t = [0f32; 32];
    let mut b = 0;
    while b < 32 {
        let i = BUCKETS.0[b] + 1;
        t[b] = KV[if i > 15 { 15 } else { i }];
        b += 1;
    }
    t
};

#[target_feature(enable = "avx512f,avx512bw,avx512dq")]
#[inline]
fn buckets() -> Buckets {
    // SAFETY: two loads of 16 floats from each 32-float table.
    let pair = |t: &[f32; 32]| unsafe {
        (
            _mm512_loadu_ps(t.as_ptr()),
            _mm512_loadu_ps(t.as_ptr().add(16)),
        )
    };
    // SAFETY: as above, 32 i32s.
    let l0 = unsafe {
        (
            _mm512_loadu_si512(L0.as_ptr().cast()),
            _mm512_loadu_si512(L0.as_ptr().add(16).cast()),
        )
    };
    Buckets {
        l0,
        th: pair(&BUCKETS.1),
        qa: pair(&QA),
        qb: pair(&QB),
    }
}

/// Per lane: the bucket of `a` and whether `a` reaches that bucket's threshold, so that
/// `best_index(a) = L0[b] + up`. NaN: `min` gives 135 for it, bucket 31 (index 15, as C gives);
/// -Inf converts to `i32::MIN`, bucket 0.
#[target_feature(enable = "avx512f,avx512bw,avx512dq")]
#[inline]
fn bucket(a: __m512, t: &Buckets) -> (__m512i, __mmask16) {
    // Above 135 is bucket 31 (no threshold above 101.5); below -136 bucket 0 (none below -115.5).
    let ac = _mm512_min_ps(a, _mm512_set1_ps(135.0));
    let b = _mm512_cvttps_epi32(_mm512_mul_ps(
        _mm512_add_ps(ac, _mm512_set1_ps(136.0)),
        _mm512_set1_ps(BUCKET),
    ));
    let b = _mm512_max_epi32(b, _mm512_setzero_si512());
    let up = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(a, _mm512_permutex2var_ps(t.th.0, b, t.th.1));
    (b, up)
}

/// The nearest level's value per lane, `KV[best_index(a)]`, for `|a| <= 135`: the bucket
/// as in [`bucket`] without its clamps, since `(a + 136) * BUCKET` is then in (0.1, 31.9). The search products qualify: `|id * x| <= 134 * (1 + 2^-23)^2` since
/// `|id| <= 134 / |max|` and `|x| <= |max|`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq")]
#[inline]
fn nearest_value_in_range(a: __m512, t: &Buckets) -> __m512 {
    let b = _mm512_cvttps_epi32(_mm512_mul_ps(
        _mm512_add_ps(a, _mm512_set1_ps(136.0)),
        _mm512_set1_ps(BUCKET),
    ));
    let up = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(a, _mm512_permutex2var_ps(t.th.0, b, t.th.1));
    _mm512_mask_blend_ps(
        up,
        _mm512_permutex2var_ps(t.qa.0, b, t.qa.1),
        _mm512_permutex2var_ps(t.qb.0, b, t.qb.1),
    )
}

/// `best_index(a)` per lane.
#[target_feature(enable = "avx512f,avx512bw,avx512dq")]
#[inline]
fn nearest_index(a: __m512, t: &Buckets) -> __m512i {
    let (b, up) = bucket(a, t);
    let l0 = _mm512_permutex2var_epi32(t.l0.0, b, t.l0.1);
    _mm512_mask_add_epi32(l0, up, l0, _mm512_set1_epi32(1))
}

/// The 16 candidate inverse scales of [`candidates`](super::candidates), by one vector
/// division (IEEE, so the same quotients).
///
/// # Safety
/// The CPU must support AVX-512F/BW/DQ.
#[target_feature(enable = "avx512f,avx512bw,avx512dq")]
pub(super) fn candidates(max: f32) -> [f32; LANES] {
    let num: [f32; LANES] = std::array::from_fn(|t| {
        if t == 0 {
            1.0
        } else {
            (t as i32 - 8 - 127) as f32
        }
    });
    let mut den = [max; LANES];
    den[0] = -max / KV[0];
    let mut id = [0f32; LANES];
    // SAFETY: 16-float arrays.
    unsafe {
        let q = _mm512_div_ps(_mm512_loadu_ps(num.as_ptr()), _mm512_loadu_ps(den.as_ptr()));
        _mm512_storeu_ps(id.as_mut_ptr(), q);
    }
    id
}

/// [`sums_portable`](super::sums_portable) with one lane per candidate; the candidates times
/// any finite weight give finite products (|id * x| <= ~135).
///
/// # Safety
/// The CPU must support AVX-512F/BW/DQ.
#[target_feature(enable = "avx512f,avx512bw,avx512dq")]
pub(super) fn sums(
    x: &[f32; 32],
    w: &[f32; 32],
    id: &[f32; LANES],
) -> ([f32; LANES], [f32; LANES]) {
    let t = buckets();
    // SAFETY: `id` has 16 floats.
    let ids = unsafe { _mm512_loadu_ps(id.as_ptr()) };
    let mut sqx = _mm512_setzero_ps();
    let mut sq2 = _mm512_setzero_ps();
    for j in 0..32 {
        let xv = _mm512_set1_ps(x[j]);
        let q = nearest_value_in_range(_mm512_mul_ps(ids, xv), &t);
        let wq = _mm512_mul_ps(_mm512_set1_ps(w[j]), q);
        sqx = _mm512_add_ps(sqx, _mm512_mul_ps(wq, xv));
        sq2 = _mm512_add_ps(sq2, _mm512_mul_ps(wq, q));
    }
    let (mut a, mut b) = ([0f32; LANES], [0f32; LANES]);
    // SAFETY: 16-float destinations.
    unsafe {
        _mm512_storeu_ps(a.as_mut_ptr(), sqx);
        _mm512_storeu_ps(b.as_mut_ptr(), sq2);
    }
    (a, b)
}

/// `best_index(id * x[j])` for the 32 weights of a block.
///
/// # Safety
/// The CPU must support AVX-512F/BW/DQ.
#[target_feature(enable = "avx512f,avx512bw,avx512dq")]
pub(super) fn indices(x: &[f32; 32], id: f32) -> [u8; 32] {
    let t = buckets();
    let idv = _mm512_set1_ps(id);
    let mut out = [0u8; 32];
    for h in 0..2 {
        // SAFETY: 16 floats at offset 0 or 16 of a 32-float block; 16 bytes at the same
        // offset of a 32-byte output.
        unsafe {
            let xv = _mm512_loadu_ps(x.as_ptr().add(16 * h));
            let l = nearest_index(_mm512_mul_ps(idv, xv), &t);
            _mm_storeu_si128(out.as_mut_ptr().add(16 * h).cast(), _mm512_cvtepi32_epi8(l));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ggml::iq4::best_index;

    /// The bucketed lookups against `best_index` on a sweep past both ends of the table and
    /// on every f32 within 300 ulps of each threshold and bucket edge.
    #[test]
    fn nearest_value_is_best_index() {
        if !crate::ggml::simd_avx512::available() {
            return;
        }
        let mut a: Vec<f32> = (-200_000..200_000)
            .map(|k| k as f32 * 1e-3 + 3e-4)
            .collect();
        a.extend([1e30, -1e30, f32::MAX, f32::MIN, 0.0, -0.0, 136.0, -136.0]);
        a.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 135.0, -137.0]);
        while !a.len().is_multiple_of(16) {
            a.push(f32::NAN);
        }
        let edges = (0..=32).map(|b| b as f32 / BUCKET - 136.0);
        for c in THRESHOLDS.into_iter().chain(edges) {
            for d in 0..300u32 {
                a.push(f32::from_bits(c.to_bits().wrapping_add(d)));
                a.push(f32::from_bits(c.to_bits().wrapping_sub(d)));
            }
        }
        for chunk in a.chunks_exact(16) {
            let mut in_range = [0f32; 16];
            let mut idx = [0i32; 16];
            // SAFETY: AVX-512 checked above; 16-element buffers.
            unsafe {
                let t = buckets();
                let v = _mm512_loadu_ps(chunk.as_ptr());
                _mm512_storeu_ps(in_range.as_mut_ptr(), nearest_value_in_range(v, &t));
                _mm512_storeu_si512(idx.as_mut_ptr().cast(), nearest_index(v, &t));
            }
            for (k, x) in chunk.iter().enumerate() {
                let want = best_index(*x);
                assert_eq!(idx[k], want as i32, "{x}");
                if x.abs() <= 135.0 {
                    assert_eq!(in_range[k], KV[want as usize], "{x}");
                }
            }
        }
    }
}
