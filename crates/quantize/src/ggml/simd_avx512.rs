//! AVX-512 row kernels for Q8_0 and Q4_0, the two formats with a throughput target.
//!
//! Each block is two `__m512` registers. The operations are the IEEE single-precision ones of
//! the portable kernels ([`BlockQ8_0::quantize`], [`BlockQ4_0::quantize`]) in the same order (a
//! separate multiply and add, no FMA), the f16 conversion is `vcvtps2ph` with round to nearest
//! even (what `f32_to_f16` computes for finite values), so the bytes are the same; unit tests
//! check them against the portable kernels, ties and signed zeros included.
//!
//! [`BlockQ8_0::quantize`]: super::BlockQ8_0::quantize
//! [`BlockQ4_0::quantize`]: super::BlockQ4_0::quantize

use std::arch::x86_64::*;

use super::simd::first_non_finite;

/// Whether this CPU runs the kernels of this module.
pub(crate) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("f16c")
}

/// The two halves of a 32-float block, their absolute values, and whether any is non-finite.
///
/// # Safety
/// `p` points to 32 readable floats.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,f16c")]
#[inline]
unsafe fn load_block(p: *const f32) -> (__m512, __m512, __m512, __m512, bool) {
    // SAFETY: the caller guarantees 32 readable floats at `p`.
    let (a, b) = unsafe { (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16))) };
    let abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fff_ffff));
    let aa = _mm512_and_ps(a, abs_mask);
    let ab = _mm512_and_ps(b, abs_mask);
    let inf = _mm512_set1_ps(f32::INFINITY);
    // Not less than +Inf (unordered included): Inf or NaN.
    let bad =
        _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(aa, inf) | _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(ab, inf);
    (a, b, aa, ab, bad != 0)
}

/// f32 -> f16 bits, round to nearest even (`vcvtps2ph`).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,f16c")]
#[inline]
fn f16_bits(v: f32) -> u16 {
    _mm_extract_epi16::<0>(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(v))) as u16
}

/// `roundf` (half away from zero) of each lane: `t = trunc(v)`, plus `±1` where `|v - t| >= 0.5`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,f16c")]
#[inline]
fn round_half_away(v: __m512) -> __m512 {
    let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v);
    let abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fff_ffff));
    let frac = _mm512_and_ps(_mm512_sub_ps(v, t), abs_mask);
    let up = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(frac, _mm512_set1_ps(0.5));
    // copysign(1, v): the sign bit of v on 1.0.
    let one = _mm512_or_ps(_mm512_set1_ps(1.0), _mm512_andnot_ps(abs_mask, v));
    _mm512_mask_add_ps(t, up, t, one)
}

/// Quantizes a row to Q8_0 (`src.len()` a multiple of 32, `dst` 34 bytes a block), byte for
/// byte as [`super::BlockQ8_0::quantize`]. `Err(i)`: element `i` is not finite.
///
/// # Safety
/// The CPU must support AVX-512F/BW/DQ and F16C ([`available`]).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,f16c")]
pub(crate) unsafe fn quantize_row_q8_0(src: &[f32], dst: &mut [u8]) -> Result<(), usize> {
    let (xs, _) = src.as_chunks::<32>();
    let (os, _) = dst.as_chunks_mut::<34>();
    for (i, (x, o)) in xs.iter().zip(os).enumerate() {
        // SAFETY: `x` is 32 floats.
        let (a, b, aa, ab, bad) = unsafe { load_block(x.as_ptr()) };
        if bad {
            return Err(i * 32 + first_non_finite(x).unwrap_or(0));
        }
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(aa, ab));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let vid = _mm512_set1_ps(id);
        let qa = _mm512_cvttps_epi32(round_half_away(_mm512_mul_ps(a, vid)));
        let qb = _mm512_cvttps_epi32(round_half_away(_mm512_mul_ps(b, vid)));
        o[..2].copy_from_slice(&f16_bits(d).to_le_bytes());
        // SAFETY: `o[2..34]` is 32 writable bytes; each store writes 16.
        unsafe {
            _mm_storeu_si128(o.as_mut_ptr().add(2).cast(), _mm512_cvtepi32_epi8(qa));
            _mm_storeu_si128(o.as_mut_ptr().add(18).cast(), _mm512_cvtepi32_epi8(qb));
        }
    }
    Ok(())
}

/// Quantizes a row to Q4_0 (`src.len()` a multiple of 32, `dst` 18 bytes a block), byte for
/// byte as [`super::BlockQ4_0::quantize`]. `Err(i)`: element `i` is not finite.
///
/// # Safety
/// The CPU must support AVX-512F/BW/DQ and F16C ([`available`]).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,f16c")]
pub(crate) unsafe fn quantize_row_q4_0(src: &[f32], dst: &mut [u8]) -> Result<(), usize> {
    let (xs, _) = src.as_chunks::<32>();
    let (os, _) = dst.as_chunks_mut::<18>();
    let half8 = _mm512_set1_ps(8.5);
    let fifteen = _mm512_set1_epi32(15);
    for (i, (x, o)) in xs.iter().zip(os).enumerate() {
        // SAFETY: `x` is 32 floats.
        let (a, b, aa, ab, bad) = unsafe { load_block(x.as_ptr()) };
        if bad {
            return Err(i * 32 + first_non_finite(x).unwrap_or(0));
        }
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(aa, ab));
        // The first element of largest magnitude, with its sign.
        let hits = (_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(aa, _mm512_set1_ps(amax)) as u32)
            | ((_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(ab, _mm512_set1_ps(amax)) as u32) << 16);
        let max = x[(hits.trailing_zeros() as usize).min(31)];
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let vid = _mm512_set1_ps(id);
        let qa = _mm512_min_epi32(
            _mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(a, vid), half8)),
            fifteen,
        );
        let qb = _mm512_min_epi32(
            _mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(b, vid), half8)),
            fifteen,
        );
        let packed = _mm512_or_si512(qa, _mm512_slli_epi32::<4>(qb));
        o[..2].copy_from_slice(&f16_bits(d).to_le_bytes());
        // SAFETY: `o[2..18]` is 16 writable bytes.
        unsafe { _mm_storeu_si128(o.as_mut_ptr().add(2).cast(), _mm512_cvtepi32_epi8(packed)) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ggml::{BlockQ4_0, BlockQ8_0};

    /// Rows of awkward blocks: ties at every half, signed zeros, equal ±maxima, tiny and huge
    /// scales, random noise.
    fn rows() -> Vec<Vec<f32>> {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let mut out = Vec::new();
        for scale in [1e-30f32, 1e-8, 0.02, 1.0, 3e4, 6e5, 1e30] {
            out.push((0..1024).map(|_| next() * scale).collect());
        }
        out.push(vec![0.0; 1024]);
        out.push(
            (0..1024)
                .map(|i| if i % 3 == 0 { -0.0 } else { 0.0 })
                .collect(),
        );
        out.push(vec![0.5; 1024]);
        out.push(vec![-0.25; 1024]);
        // Q8_0 ties: 127 and half-integers; Q4_0 ties at x * id + 8.5 integral.
        out.push(
            (0..1024)
                .map(|i| match i % 32 {
                    0 => 127.0,
                    k => (k as f32 - 16.0) * 0.5,
                })
                .collect(),
        );
        out.push((0..1024).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect());
        out.push(
            (0..1024)
                .map(|i| match i % 32 {
                    3 => 2.0,
                    20 => -2.0,
                    _ => next(),
                })
                .collect(),
        );
        out
    }

    #[test]
    fn kernels_match_portable_blocks() {
        if !available() {
            return;
        }
        for x in rows() {
            let mut a = vec![0u8; 32 * 34];
            // SAFETY: checked by `available`.
            unsafe { quantize_row_q8_0(&x, &mut a) }.unwrap();
            let want: Vec<u8> = x
                .as_chunks::<32>()
                .0
                .iter()
                .flat_map(|b| BlockQ8_0::quantize(b).to_bytes())
                .collect();
            assert_eq!(a, want, "q8_0 {:?}", &x[..4]);
            let mut a = vec![0u8; 32 * 18];
            // SAFETY: checked by `available`.
            unsafe { quantize_row_q4_0(&x, &mut a) }.unwrap();
            let want: Vec<u8> = x
                .as_chunks::<32>()
                .0
                .iter()
                .flat_map(|b| BlockQ4_0::quantize(b).to_bytes())
                .collect();
            assert_eq!(a, want, "q4_0 {:?}", &x[..4]);
        }
    }

    #[test]
    fn non_finite_is_reported_at_its_index() {
        if !available() {
            return;
        }
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut x = vec![0.25f32; 128];
            x[77] = bad;
            let mut q = vec![0u8; 4 * 34];
            // SAFETY: checked by `available`.
            assert_eq!(unsafe { quantize_row_q8_0(&x, &mut q) }, Err(77));
            let mut q = vec![0u8; 4 * 18];
            // SAFETY: checked by `available`.
            assert_eq!(unsafe { quantize_row_q4_0(&x, &mut q) }, Err(77));
        }
    }
}
