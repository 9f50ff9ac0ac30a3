//! AVX-512 builds of the NF4/FP4 block loops: a 4-step branchless binary search over the 15
//! thresholds held in one register (`vpermps`) for quantization, a 16-entry register lookup for
//! dequantization. Tested bit for bit against the portable loops in `bnb_kernel.rs`.

use std::arch::x86_64::*;

use super::bnb_kernel::{MIN_ABSMAX, Table4, quantize_short_block};
use crate::kernel::{NON_FINITE_BITS, abs_max_bits};

/// Codes of 16 scaled values: the number of thresholds `<= y` (4 halving steps; the thresholds
/// are sorted and the 16th is +inf), then the code of that position.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn codes16(y: __m512, thr: __m512, code_of: __m512i) -> __m512i {
    let mut p = _mm512_setzero_si512();
    for step in [8, 4, 2, 1] {
        let t = _mm512_permutexvar_ps(_mm512_add_epi32(p, _mm512_set1_epi32(step - 1)), thr);
        let m = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(y, t);
        p = _mm512_mask_add_epi32(p, m, p, _mm512_set1_epi32(step));
    }
    _mm512_permutexvar_epi32(p, code_of)
}

/// As `bnb_kernel::quantize_body`, with the full blocks vectorised by hand.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(crate) fn quantize_avx512(
    t: &Table4,
    xs: &[f32],
    block: usize,
    absmax: &mut [f32],
    packed: &mut [u8],
) -> bool {
    let mut th = [f32::INFINITY; 16];
    th[..15].copy_from_slice(t.thresholds());
    let code_of: [i32; 16] = t.codes().map(i32::from);
    // SAFETY: both arrays hold 16 elements.
    let (thr, codes) = unsafe {
        (
            _mm512_loadu_ps(th.as_ptr()),
            _mm512_loadu_si512(code_of.as_ptr().cast()),
        )
    };
    let weights = _mm_set1_epi16(0x0110); // bytes (16, 1): c[2i] * 16 + c[2i + 1]
    let mut bad = false;
    for (b, (x, a)) in xs.chunks(block).zip(absmax.iter_mut()).enumerate() {
        let bits = abs_max_bits(x);
        bad |= bits >= NON_FINITE_BITS;
        let am = f32::from_bits(bits);
        let out = &mut packed[b * block / 2..];
        if x.len() < block || !block.is_multiple_of(32) {
            *a = quantize_short_block(t, x, block, am, out);
            continue;
        }
        *a = am;
        let inv = _mm512_set1_ps(1.0 / am.max(MIN_ABSMAX));
        for (c, o) in x.chunks_exact(32).zip(out.chunks_exact_mut(16)) {
            // SAFETY: `c` holds 32 f32 and `o` 16 bytes.
            unsafe {
                let lo = codes16(_mm512_mul_ps(_mm512_loadu_ps(c.as_ptr()), inv), thr, codes);
                let hi = codes16(
                    _mm512_mul_ps(_mm512_loadu_ps(c.as_ptr().add(16)), inv),
                    thr,
                    codes,
                );
                let pl = _mm_maddubs_epi16(_mm512_cvtepi32_epi8(lo), weights);
                let ph = _mm_maddubs_epi16(_mm512_cvtepi32_epi8(hi), weights);
                _mm_storeu_si128(o.as_mut_ptr().cast(), _mm_packus_epi16(pl, ph));
            }
        }
    }
    bad
}

/// As `bnb_kernel::dequantize_body`, 16 outputs per register lookup.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(crate) fn dequantize_avx512(
    code: &[f32; 16],
    packed: &[u8],
    absmax: &[f32],
    block: usize,
    out: &mut [f32],
) {
    // SAFETY: `code` holds 16 f32.
    let tbl = unsafe { _mm512_loadu_ps(code.as_ptr()) };
    let shifts = _mm512_set_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);
    let nib = _mm512_set1_epi32(15);
    for (b, (o, &a)) in out.chunks_mut(block).zip(absmax).enumerate() {
        let bytes = &packed[b * block / 2..];
        let s = _mm512_set1_ps(a);
        let len = o.len();
        let mut oc = o.chunks_exact_mut(16);
        for (o16, b8) in (&mut oc).zip(bytes.chunks_exact(8)) {
            // SAFETY: `b8` holds 8 bytes and `o16` 16 f32.
            unsafe {
                let raw = _mm_loadl_epi64(b8.as_ptr().cast());
                let dup = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(raw, raw));
                let idx = _mm512_and_si512(_mm512_srlv_epi32(dup, shifts), nib);
                let v = _mm512_mul_ps(_mm512_permutexvar_ps(idx, tbl), s);
                _mm512_storeu_ps(o16.as_mut_ptr(), v);
            }
        }
        let done = len - oc.into_remainder().len();
        for (i, v) in o[done..].iter_mut().enumerate() {
            let byte = bytes[(done + i) / 2];
            let c = if (done + i) % 2 == 0 {
                byte >> 4
            } else {
                byte & 15
            };
            *v = code[usize::from(c)] * a;
        }
    }
}
