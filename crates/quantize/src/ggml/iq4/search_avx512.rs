//! AVX-512 kernels of the IQ4 scale search: the 16 candidate scales of a block as the 16
//! lanes of one register, and the nearest-level lookup as in-register table permutes.
//!
//! Same IEEE single-precision operations as [`sums_portable`](super::sums_portable) and
//! [`best_index`](super::best_index) in the same order (separate multiply and add, no FMA), so
//! the results are bit-identical; unit-tested against them in the parent module.

use std::arch::x86_64::*;

use super::{KV, LANES};

/// The tables of the nearest-level step: levels, `val[min(i, 14)]`, `val[min(i + 1, 15)]`.
struct Tables {
    kv: __m512,
    lo: __m512,
    hi: __m512,
}

#[target_feature(enable = "avx512f,avx512bw,avx512dq")]
#[inline]
fn tables() -> Tables {
    let lo: [f32; 16] = std::array::from_fn(|i| KV[i.min(14)]);
    let hi: [f32; 16] = std::array::from_fn(|i| KV[(i + 1).min(15)]);
    // SAFETY: reading 16 floats from 16-element arrays.
    unsafe {
        Tables {
            kv: _mm512_loadu_ps(KV.as_ptr()),
            lo: _mm512_loadu_ps(lo.as_ptr()),
            hi: _mm512_loadu_ps(hi.as_ptr()),
        }
    }
}

/// Per lane: the nearest level's index (`best_index`) and value.
#[target_feature(enable = "avx512f,avx512bw,avx512dq")]
#[inline]
fn nearest(al: __m512, t: &Tables) -> (__m512i, __m512) {
    // Branch-free binary search for the largest i with !(al < val[i]) (NaN passes).
    let m = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(al, _mm512_set1_ps(KV[8]));
    let mut idx = _mm512_maskz_mov_epi32(m, _mm512_set1_epi32(8));
    for step in [4, 2, 1] {
        let probe = _mm512_add_epi32(idx, _mm512_set1_epi32(step));
        let v = _mm512_permutexvar_ps(probe, t.kv);
        let m = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(al, v);
        idx = _mm512_mask_mov_epi32(idx, m, probe);
    }
    let lo = _mm512_permutexvar_ps(idx, t.lo);
    let hi = _mm512_permutexvar_ps(idx, t.hi);
    let take_lo = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_sub_ps(al, lo), _mm512_sub_ps(hi, al));
    let i_lo = _mm512_min_epi32(idx, _mm512_set1_epi32(14));
    let i_hi = _mm512_min_epi32(
        _mm512_add_epi32(idx, _mm512_set1_epi32(1)),
        _mm512_set1_epi32(15),
    );
    (
        _mm512_mask_blend_epi32(take_lo, i_hi, i_lo),
        _mm512_mask_blend_ps(take_lo, hi, lo),
    )
}

/// [`sums_portable`](super::sums_portable) with one lane per candidate.
///
/// # Safety
/// The CPU must support AVX-512F/BW/DQ.
#[target_feature(enable = "avx512f,avx512bw,avx512dq")]
pub(super) fn sums(
    x: &[f32; 32],
    w: &[f32; 32],
    id: &[f32; LANES],
) -> ([f32; LANES], [f32; LANES]) {
    let t = tables();
    // SAFETY: `id` has 16 floats.
    let ids = unsafe { _mm512_loadu_ps(id.as_ptr()) };
    let mut sqx = _mm512_setzero_ps();
    let mut sq2 = _mm512_setzero_ps();
    for j in 0..32 {
        let xv = _mm512_set1_ps(x[j]);
        let (_, q) = nearest(_mm512_mul_ps(ids, xv), &t);
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
    let t = tables();
    let idv = _mm512_set1_ps(id);
    let mut out = [0u8; 32];
    for h in 0..2 {
        // SAFETY: 16 floats at offset 0 or 16 of a 32-float block; 16 bytes at the same
        // offset of a 32-byte output.
        unsafe {
            let xv = _mm512_loadu_ps(x.as_ptr().add(16 * h));
            let (l, _) = nearest(_mm512_mul_ps(idv, xv), &t);
            _mm_storeu_si128(out.as_mut_ptr().add(16 * h).cast(), _mm512_cvtepi32_epi8(l));
        }
    }
    out
}
