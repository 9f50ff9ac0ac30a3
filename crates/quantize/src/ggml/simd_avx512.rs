//! AVX-512 row kernels for the simple block formats Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1.
//!
//! Each block is two `__m512` registers. The operations are the IEEE single-precision ones of
//! the portable kernels ([`BlockQ8_0::quantize`], [`BlockQ4_0::quantize`],
//! [`BlockQ4_1::quantize`], [`BlockQ5_0::quantize`], [`BlockQ5_1::quantize`]) in the same
//! order (a separate subtract, multiply and add, no FMA), the f16 conversion is `vcvtps2ph`
//! with round to nearest even (what `f32_to_f16` computes for finite values, overflow to ±Inf
//! included), so the bytes are the same. The block min/max keep llama.cpp's sequential
//! `if (v < min)` choice between `-0.0` and `+0.0`, and codes of overflowing scales (`1/d` = Inf, `x - min` = Inf, `0 * Inf`) come
//! out as the low byte of the conversion's `i32::MIN`, 0, as in the portable code. Unit tests
//! check the bytes against the portable kernels: ties, near-ties, signed zeros, subnormal and
//! f32-overflowing ranges.
//!
//! [`BlockQ8_0::quantize`]: super::BlockQ8_0::quantize
//! [`BlockQ4_0::quantize`]: super::BlockQ4_0::quantize
//! [`BlockQ4_1::quantize`]: super::BlockQ4_1::quantize
//! [`BlockQ5_0::quantize`]: super::BlockQ5_0::quantize
//! [`BlockQ5_1::quantize`]: super::BlockQ5_1::quantize

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

/// The first element of largest magnitude, with its sign (numpy `x[argmax(abs(x))]`), from the
/// absolute values of the two halves.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,f16c")]
#[inline]
fn first_abs_max(aa: __m512, ab: __m512, x: &[f32; 32]) -> f32 {
    let amax = _mm512_set1_ps(_mm512_reduce_max_ps(_mm512_max_ps(aa, ab)));
    let hits = (_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(aa, amax) as u32)
        | ((_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(ab, amax) as u32) << 16);
    x[(hits.trailing_zeros() as usize).min(31)]
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
        let max = first_abs_max(aa, ab, x);
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

/// Smallest and largest value of a block, with the sequential semantics of llama.cpp's
/// `if (v < min)` loop ([`super::simd::min_max_32`]): among equal values only `-0.0`/`+0.0`
/// differ, and then the first in element order wins.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,f16c")]
#[inline]
fn min_max_block(a: __m512, b: __m512, x: &[f32; 32]) -> (f32, f32) {
    let mut min = _mm512_reduce_min_ps(_mm512_min_ps(a, b));
    let mut max = _mm512_reduce_max_ps(_mm512_max_ps(a, b));
    if min == 0.0 || max == 0.0 {
        let zero = _mm512_setzero_ps();
        let zeros = (_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(a, zero) as u32)
            | ((_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(b, zero) as u32) << 16);
        let first = x[(zeros.trailing_zeros() as usize).min(31)];
        if min == 0.0 {
            min = first;
        }
        if max == 0.0 {
            max = first;
        }
    }
    (min, max)
}

/// f16 bits of `d` (low half) and `m` (high half), round to nearest even (`vcvtps2ph`): the
/// first four bytes of a Q4_1/Q5_1 block.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,f16c")]
#[inline]
fn f16_pair_bits(d: f32, m: f32) -> u32 {
    _mm_cvtsi128_si32(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ps(
        0.0, 0.0, m, d,
    ))) as u32
}

/// Codes `min(top, trunc((x - min) * id + 0.5))` of 16 weights (the Q4_1/Q5_1 rule: separate
/// subtract, multiply and add, then truncation).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,f16c")]
#[inline]
fn codes_with_min(v: __m512, min: __m512, id: __m512, top: __m512i) -> __m512i {
    let t = _mm512_add_ps(
        _mm512_mul_ps(_mm512_sub_ps(v, min), id),
        _mm512_set1_ps(0.5),
    );
    _mm512_min_epi32(_mm512_cvttps_epi32(t), top)
}

/// The 16 bytes `qs` of a block: low nibble of element `j`, high nibble of element `j + 16`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,f16c")]
#[inline]
fn nibbles(qa: __m512i, qb: __m512i) -> __m128i {
    // Truncating to bytes drops the bits of `qb << 4` above the nibble.
    _mm512_cvtepi32_epi8(_mm512_or_si512(
        _mm512_and_si512(qa, _mm512_set1_epi32(0x0f)),
        _mm512_slli_epi32::<4>(qb),
    ))
}

/// Quantizes a row to Q4_1 (`src.len()` a multiple of 32, `dst` 20 bytes a block), byte for
/// byte as [`super::BlockQ4_1::quantize`]. `Err(i)`: element `i` is not finite.
///
/// # Safety
/// The CPU must support AVX-512F/BW/DQ and F16C ([`available`]).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,f16c")]
pub(crate) unsafe fn quantize_row_q4_1(src: &[f32], dst: &mut [u8]) -> Result<(), usize> {
    let (xs, _) = src.as_chunks::<32>();
    let (os, _) = dst.as_chunks_mut::<20>();
    let fifteen = _mm512_set1_epi32(15);
    for (i, (x, o)) in xs.iter().zip(os).enumerate() {
        // SAFETY: `x` is 32 floats.
        let (a, b, _, _, bad) = unsafe { load_block(x.as_ptr()) };
        if bad {
            return Err(i * 32 + first_non_finite(x).unwrap_or(0));
        }
        let (min, max) = min_max_block(a, b, x);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let (vmin, vid) = (_mm512_set1_ps(min), _mm512_set1_ps(id));
        let qa = codes_with_min(a, vmin, vid, fifteen);
        let qb = codes_with_min(b, vmin, vid, fifteen);
        o[..4].copy_from_slice(&f16_pair_bits(d, min).to_le_bytes());
        // SAFETY: `o[4..20]` is 16 writable bytes.
        unsafe { _mm_storeu_si128(o.as_mut_ptr().add(4).cast(), nibbles(qa, qb)) };
    }
    Ok(())
}

/// The fifth bits of the codes of a block as the little-endian `u32` `qh`: bit `j` is bit 4 of
/// element `j`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,f16c")]
#[inline]
fn fifth_bits(qa: __m512i, qb: __m512i) -> u32 {
    let bit4 = _mm512_set1_epi32(0x10);
    (_mm512_test_epi32_mask(qa, bit4) as u32) | ((_mm512_test_epi32_mask(qb, bit4) as u32) << 16)
}

/// Quantizes a row to Q5_0 (`src.len()` a multiple of 32, `dst` 22 bytes a block), byte for
/// byte as [`super::BlockQ5_0::quantize`]. `Err(i)`: element `i` is not finite.
///
/// # Safety
/// The CPU must support AVX-512F/BW/DQ and F16C ([`available`]).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,f16c")]
pub(crate) unsafe fn quantize_row_q5_0(src: &[f32], dst: &mut [u8]) -> Result<(), usize> {
    let (xs, _) = src.as_chunks::<32>();
    let (os, _) = dst.as_chunks_mut::<22>();
    let half16 = _mm512_set1_ps(16.5);
    let top = _mm512_set1_epi32(31);
    for (i, (x, o)) in xs.iter().zip(os).enumerate() {
        // SAFETY: `x` is 32 floats.
        let (a, b, aa, ab, bad) = unsafe { load_block(x.as_ptr()) };
        if bad {
            return Err(i * 32 + first_non_finite(x).unwrap_or(0));
        }
        let max = first_abs_max(aa, ab, x);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let vid = _mm512_set1_ps(id);
        let qa = _mm512_min_epi32(
            _mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(a, vid), half16)),
            top,
        );
        let qb = _mm512_min_epi32(
            _mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(b, vid), half16)),
            top,
        );
        o[..2].copy_from_slice(&f16_bits(d).to_le_bytes());
        o[2..6].copy_from_slice(&fifth_bits(qa, qb).to_le_bytes());
        // SAFETY: `o[6..22]` is 16 writable bytes.
        unsafe { _mm_storeu_si128(o.as_mut_ptr().add(6).cast(), nibbles(qa, qb)) };
    }
    Ok(())
}

/// Quantizes a row to Q5_1 (`src.len()` a multiple of 32, `dst` 24 bytes a block), byte for
/// byte as [`super::BlockQ5_1::quantize`]. `Err(i)`: element `i` is not finite.
///
/// # Safety
/// The CPU must support AVX-512F/BW/DQ and F16C ([`available`]).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,f16c")]
pub(crate) unsafe fn quantize_row_q5_1(src: &[f32], dst: &mut [u8]) -> Result<(), usize> {
    let (xs, _) = src.as_chunks::<32>();
    let (os, _) = dst.as_chunks_mut::<24>();
    let top = _mm512_set1_epi32(31);
    for (i, (x, o)) in xs.iter().zip(os).enumerate() {
        // SAFETY: `x` is 32 floats.
        let (a, b, _, _, bad) = unsafe { load_block(x.as_ptr()) };
        if bad {
            return Err(i * 32 + first_non_finite(x).unwrap_or(0));
        }
        let (min, max) = min_max_block(a, b, x);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let (vmin, vid) = (_mm512_set1_ps(min), _mm512_set1_ps(id));
        let qa = codes_with_min(a, vmin, vid, top);
        let qb = codes_with_min(b, vmin, vid, top);
        o[..4].copy_from_slice(&f16_pair_bits(d, min).to_le_bytes());
        o[4..8].copy_from_slice(&fifth_bits(qa, qb).to_le_bytes());
        // SAFETY: `o[8..24]` is 16 writable bytes.
        unsafe { _mm_storeu_si128(o.as_mut_ptr().add(8).cast(), nibbles(qa, qb)) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ggml::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};

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
        // Subnormal (1/d overflows to Inf), tiny, ordinary, f16-overflowing and huge scales,
        // up to rows whose `max - min` overflows f32.
        for scale in [
            1e-44f32,
            1e-40,
            1e-30,
            1e-8,
            0.02,
            1.0,
            3e4,
            6e5,
            1e30,
            f32::MAX,
            f32::MAX / 1.5,
        ] {
            out.push((0..1024).map(|_| (next() * 2.0) * scale).collect());
        }
        // Offset blocks (min far from zero), all-positive and all-negative.
        out.push((0..1024).map(|_| 100.0 + next()).collect());
        out.push((0..1024).map(|_| -7.0 + next() * 1e-3).collect());
        // Signed zeros as the minimum (positive block) and as the maximum (negative block).
        out.push(
            (0..1024)
                .map(|i| match (i % 32, i % 3) {
                    (5, _) => 1.0,
                    (_, 0) => -0.0,
                    _ => 0.0,
                })
                .collect(),
        );
        out.push(
            (0..1024)
                .map(|i| match (i % 32, i % 3) {
                    (9, _) => -1.5,
                    (_, 1) => 0.0,
                    _ => -0.0,
                })
                .collect(),
        );
        // Min/max ties: `(x - min) * id + 0.5` integral with d = 1 (Q4_1: min -4, max 11;
        // Q5_1: min -4, max 27).
        for top in [15.0f32, 31.0] {
            out.push(
                (0..1024)
                    .map(|i| match i % 32 {
                        0 => -4.0,
                        1 => top - 4.0,
                        k => ((k * 7 + i / 32) as f32 % (2.0 * top)) * 0.5 - 4.0,
                    })
                    .collect(),
            );
        }
        // Near-ties with inexact scales: `x = min + (j + 0.5) * d` for random `min` and `d`, so
        // `(x - min) * id` rounds onto or next to `j + 0.5` (a fused multiply-add differs here).
        for top in [15usize, 31] {
            let mut row = Vec::with_capacity(1024);
            for _ in 0..32 {
                let (min, d) = (next() * 8.0, 0.01 + next().abs());
                row.push(min);
                row.push(min + top as f32 * d);
                for k in 2..32 {
                    row.push(min + ((k * 7) % top) as f32 * d + 0.5 * d);
                }
            }
            out.push(row);
        }
        // The same for the symmetric formats (Q4_0: d = max / -8, Q5_0: d = max / -16):
        // `x = (j + 0.5 - top) * d` next to the tie of `x * id + top + 0.5`.
        for top in [8usize, 16] {
            let mut row = Vec::with_capacity(1024);
            for _ in 0..32 {
                let max = next() * 8.0;
                let d = max / -(top as f32);
                row.push(max);
                for k in 1..32 {
                    row.push(d * (((k * 7) % (2 * top)) as f32 + 0.5 - top as f32));
                }
            }
            out.push(row);
        }
        // Halves from a min of zero with a scale that is not a power of two.
        out.push((0..1024).map(|i| (i % 31) as f32 * 0.5).collect());
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
            let mut a = vec![0u8; 32 * 20];
            // SAFETY: checked by `available`.
            unsafe { quantize_row_q4_1(&x, &mut a) }.unwrap();
            let want: Vec<u8> = x
                .as_chunks::<32>()
                .0
                .iter()
                .flat_map(|b| BlockQ4_1::quantize(b).to_bytes())
                .collect();
            assert_eq!(a, want, "q4_1 {:?}", &x[..4]);
            let mut a = vec![0u8; 32 * 22];
            // SAFETY: checked by `available`.
            unsafe { quantize_row_q5_0(&x, &mut a) }.unwrap();
            let want: Vec<u8> = x
                .as_chunks::<32>()
                .0
                .iter()
                .flat_map(|b| BlockQ5_0::quantize(b).to_bytes())
                .collect();
            assert_eq!(a, want, "q5_0 {:?}", &x[..4]);
            let mut a = vec![0u8; 32 * 24];
            // SAFETY: checked by `available`.
            unsafe { quantize_row_q5_1(&x, &mut a) }.unwrap();
            let want: Vec<u8> = x
                .as_chunks::<32>()
                .0
                .iter()
                .flat_map(|b| BlockQ5_1::quantize(b).to_bytes())
                .collect();
            assert_eq!(a, want, "q5_1 {:?}", &x[..4]);
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
            let mut q = vec![0u8; 4 * 20];
            // SAFETY: checked by `available`.
            assert_eq!(unsafe { quantize_row_q4_1(&x, &mut q) }, Err(77));
            let mut q = vec![0u8; 4 * 22];
            // SAFETY: checked by `available`.
            assert_eq!(unsafe { quantize_row_q5_0(&x, &mut q) }, Err(77));
            let mut q = vec![0u8; 4 * 24];
            // SAFETY: checked by `available`.
            assert_eq!(unsafe { quantize_row_q5_1(&x, &mut q) }, Err(77));
        }
    }
}
