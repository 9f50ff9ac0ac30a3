//! AVX-512 VNNI and AVX2 block kernels: one 32-bit lane per weight row (16 rows per panel),
//! same contract and same f32 operations as `portable::panel`.

use std::arch::x86_64::*;

use super::{BlockFormat, IQ4NL_U8, PR};

/// Records prefetched ahead of the one being multiplied.
const PREFETCH: usize = 4;

fn check(format: BlockFormat, panel: &[u8], nb: usize, codes: &[i8], scales: &[f32], sums: &[i32]) {
    let sums_per_block = if format == BlockFormat::Q4_K { 8 } else { 1 };
    assert!(panel.len() >= nb * format.record_bytes());
    assert!(codes.len() >= nb * format.block_size() && scales.len() >= nb);
    assert!(sums.len() >= nb * sums_per_block);
}

/// # Safety
/// The CPU must have AVX-512 F/BW/VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn panel_avx512(
    format: BlockFormat,
    panel: &[u8],
    nb: usize,
    codes: &[i8],
    scales: &[f32],
    sums: &[i32],
    out: &mut [f32; PR],
) {
    check(format, panel, nb, codes, scales, sums);
    let (rb, bs) = (format.record_bytes(), format.block_size());
    // SAFETY: `check` bounds every read: record `b` is `panel[b * rb .. (b + 1) * rb]` and the
    // offsets below stay inside a record; codes `[b * bs .. (b + 1) * bs]`.
    unsafe {
        let low = _mm512_set1_epi8(0x0f);
        let bcast = |p: *const i8| _mm512_set1_epi32(p.cast::<i32>().read_unaligned());
        let high = _mm512_set1_epi8(0xf0u8 as i8);
        // Two accumulators over the nibble vectors `v0..v1` of a record: low nibbles, and high
        // nibbles left in place (16 q, one AND instead of a shift and an AND; `vpdpbusd` does not
        // saturate), divided by 16 at the end (exact: every product is a multiple of 16).
        let nibbles = |rec: *const u8, x: *const i8, v0: usize, v1: usize| {
            let (mut a, mut b) = (_mm512_setzero_si512(), _mm512_setzero_si512());
            for v in v0..v1 {
                let w = _mm512_loadu_si512(rec.add(64 * v).cast());
                let lo = _mm512_and_si512(w, low);
                let hi = _mm512_and_si512(w, high);
                a = _mm512_dpbusd_epi32(a, lo, bcast(x.add(8 * v)));
                b = _mm512_dpbusd_epi32(b, hi, bcast(x.add(8 * v + 4)));
            }
            _mm512_add_epi32(a, _mm512_srai_epi32(b, 4))
        };
        let mut acc = _mm512_setzero_ps();
        for b in 0..nb {
            let rec = panel.as_ptr().add(b * rb);
            // Prefetch a few records ahead (a hint: never faults, any address is allowed).
            for line in (0..rb).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(rec.wrapping_add(PREFETCH * rb + line).cast());
            }
            let x = codes.as_ptr().add(b * bs);
            let dx = _mm512_set1_ps(scales[b]);
            match format {
                BlockFormat::Q8_0 => {
                    let (mut a, mut c) = (_mm512_setzero_si512(), _mm512_setzero_si512());
                    for g in (0..8).step_by(2) {
                        let w0 = _mm512_loadu_si512(rec.add(64 * g).cast());
                        let w1 = _mm512_loadu_si512(rec.add(64 * g + 64).cast());
                        a = _mm512_dpbusd_epi32(a, w0, bcast(x.add(4 * g)));
                        c = _mm512_dpbusd_epi32(c, w1, bcast(x.add(4 * g + 4)));
                    }
                    let isum =
                        _mm512_sub_epi32(_mm512_add_epi32(a, c), _mm512_set1_epi32(128 * sums[b]));
                    let dw = _mm512_cvtph_ps(_mm256_loadu_si256(rec.add(32 * PR).cast()));
                    acc = _mm512_add_ps(
                        acc,
                        _mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, dx)),
                    );
                }
                BlockFormat::Q4_0 | BlockFormat::Int4 { .. } => {
                    // A constant trip count for Q4_0 lets the nibble loop unroll.
                    let vectors = if format == BlockFormat::Q4_0 {
                        4
                    } else {
                        bs / 8
                    };
                    let dot = nibbles(rec, x, 0, vectors);
                    let isum = _mm512_sub_epi32(dot, _mm512_set1_epi32(8 * sums[b]));
                    let dw = if format == BlockFormat::Q4_0 {
                        _mm512_cvtph_ps(_mm256_loadu_si256(rec.add(16 * PR).cast()))
                    } else {
                        _mm512_loadu_ps(rec.add(bs / 2 * PR).cast())
                    };
                    acc = _mm512_add_ps(
                        acc,
                        _mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, dx)),
                    );
                }
                BlockFormat::IQ4_NL => {
                    // Levels + 128 looked up 16 at a time (the table in every 128-bit lane).
                    let lut = _mm512_broadcast_i32x4(_mm_loadu_si128(IQ4NL_U8.as_ptr().cast()));
                    let (mut a, mut c) = (_mm512_setzero_si512(), _mm512_setzero_si512());
                    for v in 0..4 {
                        let w = _mm512_loadu_si512(rec.add(64 * v).cast());
                        let lo = _mm512_shuffle_epi8(lut, _mm512_and_si512(w, low));
                        let hi = _mm512_shuffle_epi8(
                            lut,
                            _mm512_and_si512(_mm512_srli_epi16(w, 4), low),
                        );
                        a = _mm512_dpbusd_epi32(a, lo, bcast(x.add(8 * v)));
                        c = _mm512_dpbusd_epi32(c, hi, bcast(x.add(8 * v + 4)));
                    }
                    let isum =
                        _mm512_sub_epi32(_mm512_add_epi32(a, c), _mm512_set1_epi32(128 * sums[b]));
                    let dw = _mm512_cvtph_ps(_mm256_loadu_si256(rec.add(16 * PR).cast()));
                    acc = _mm512_add_ps(
                        acc,
                        _mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, dx)),
                    );
                }
                BlockFormat::Q4_K => {
                    let base = rec.add(128 * PR);
                    let (mut s1, mut s2) = (_mm512_setzero_si512(), _mm512_setzero_si512());
                    for j in 0..8 {
                        let dot = nibbles(rec, x, 4 * j, 4 * j + 4);
                        let sc =
                            _mm512_cvtepu8_epi32(_mm_loadu_si128(base.add(4 * PR + j * PR).cast()));
                        let m = _mm512_cvtepu8_epi32(_mm_loadu_si128(
                            base.add(12 * PR + j * PR).cast(),
                        ));
                        s1 = _mm512_add_epi32(s1, _mm512_mullo_epi32(sc, dot));
                        s2 = _mm512_add_epi32(
                            s2,
                            _mm512_mullo_epi32(m, _mm512_set1_epi32(sums[8 * b + j])),
                        );
                    }
                    let d = _mm512_cvtph_ps(_mm256_loadu_si256(base.cast()));
                    let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(base.add(2 * PR).cast()));
                    acc = _mm512_add_ps(
                        acc,
                        _mm512_mul_ps(_mm512_cvtepi32_ps(s1), _mm512_mul_ps(d, dx)),
                    );
                    acc = _mm512_sub_ps(
                        acc,
                        _mm512_mul_ps(_mm512_cvtepi32_ps(s2), _mm512_mul_ps(dmin, dx)),
                    );
                }
            }
        }
        _mm512_storeu_ps(out.as_mut_ptr(), acc);
    }
}

/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn panel_avx2(
    format: BlockFormat,
    panel: &[u8],
    nb: usize,
    codes: &[i8],
    scales: &[f32],
    sums: &[i32],
    out: &mut [f32; PR],
) {
    check(format, panel, nb, codes, scales, sums);
    let (rb, bs) = (format.record_bytes(), format.block_size());
    // SAFETY: as in `panel_avx512`; each half `h` reads the bytes `32 h .. 32 h + 32` of a
    // 64-byte vector and 8 of the 16 scales.
    unsafe {
        let low = _mm256_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        let bcast = |p: *const i8| _mm256_set1_epi32(p.cast::<i32>().read_unaligned());
        // u8 codes of at most 15 times s8: `vpmaddubsw` pairs stay below 2 * 15 * 128, exact.
        let small = |w: __m256i, x: __m256i| _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones);
        let nibbles = |rec: *const u8, x: *const i8, h: usize, v0: usize, v1: usize| {
            let mut a = _mm256_setzero_si256();
            for v in v0..v1 {
                let w = _mm256_loadu_si256(rec.add(64 * v + 32 * h).cast());
                let lo = _mm256_and_si256(w, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), low);
                a = _mm256_add_epi32(a, small(lo, bcast(x.add(8 * v))));
                a = _mm256_add_epi32(a, small(hi, bcast(x.add(8 * v + 4))));
            }
            a
        };
        for h in 0..2 {
            let mut acc = _mm256_setzero_ps();
            for b in 0..nb {
                let rec = panel.as_ptr().add(b * rb);
                let x = codes.as_ptr().add(b * bs);
                let dx = _mm256_set1_ps(scales[b]);
                match format {
                    BlockFormat::Q8_0 => {
                        // Codes up to 255 would saturate `vpmaddubsw`: low 7 bits and top bit apart.
                        let c128 = _mm256_set1_epi16(128);
                        let seven = _mm256_set1_epi8(0x7f);
                        let mut a = _mm256_setzero_si256();
                        for g in 0..8 {
                            let w = _mm256_loadu_si256(rec.add(64 * g + 32 * h).cast());
                            let xv = bcast(x.add(4 * g));
                            let wl = _mm256_and_si256(w, seven);
                            let wh = _mm256_and_si256(_mm256_srli_epi16(w, 7), _mm256_set1_epi8(1));
                            a = _mm256_add_epi32(
                                a,
                                _mm256_madd_epi16(_mm256_maddubs_epi16(wl, xv), ones),
                            );
                            a = _mm256_add_epi32(
                                a,
                                _mm256_madd_epi16(_mm256_maddubs_epi16(wh, xv), c128),
                            );
                        }
                        let isum = _mm256_sub_epi32(a, _mm256_set1_epi32(128 * sums[b]));
                        let dw = _mm256_cvtph_ps(_mm_loadu_si128(rec.add(32 * PR + 16 * h).cast()));
                        acc = _mm256_add_ps(
                            acc,
                            _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, dx)),
                        );
                    }
                    BlockFormat::Q4_0 | BlockFormat::Int4 { .. } => {
                        let dot = nibbles(rec, x, h, 0, bs / 8);
                        let isum = _mm256_sub_epi32(dot, _mm256_set1_epi32(8 * sums[b]));
                        let dw = if format == BlockFormat::Q4_0 {
                            _mm256_cvtph_ps(_mm_loadu_si128(rec.add(16 * PR + 16 * h).cast()))
                        } else {
                            _mm256_loadu_ps(rec.add(bs / 2 * PR + 32 * h).cast())
                        };
                        acc = _mm256_add_ps(
                            acc,
                            _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, dx)),
                        );
                    }
                    BlockFormat::IQ4_NL => {
                        // Levels + 128 reach 241: low 7 bits and top bit apart, as for Q8_0.
                        let lut =
                            _mm256_broadcastsi128_si256(_mm_loadu_si128(IQ4NL_U8.as_ptr().cast()));
                        let c128 = _mm256_set1_epi16(128);
                        let seven = _mm256_set1_epi8(0x7f);
                        let mut a = _mm256_setzero_si256();
                        for v in 0..4 {
                            let w = _mm256_loadu_si256(rec.add(64 * v + 32 * h).cast());
                            let lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(w, low));
                            let hi = _mm256_shuffle_epi8(
                                lut,
                                _mm256_and_si256(_mm256_srli_epi16(w, 4), low),
                            );
                            for (u, xv) in
                                [(lo, bcast(x.add(8 * v))), (hi, bcast(x.add(8 * v + 4)))]
                            {
                                let ul = _mm256_and_si256(u, seven);
                                let uh =
                                    _mm256_and_si256(_mm256_srli_epi16(u, 7), _mm256_set1_epi8(1));
                                a = _mm256_add_epi32(
                                    a,
                                    _mm256_madd_epi16(_mm256_maddubs_epi16(ul, xv), ones),
                                );
                                a = _mm256_add_epi32(
                                    a,
                                    _mm256_madd_epi16(_mm256_maddubs_epi16(uh, xv), c128),
                                );
                            }
                        }
                        let isum = _mm256_sub_epi32(a, _mm256_set1_epi32(128 * sums[b]));
                        let dw = _mm256_cvtph_ps(_mm_loadu_si128(rec.add(16 * PR + 16 * h).cast()));
                        acc = _mm256_add_ps(
                            acc,
                            _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, dx)),
                        );
                    }
                    BlockFormat::Q4_K => {
                        let base = rec.add(128 * PR);
                        let (mut s1, mut s2) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                        for j in 0..8 {
                            let dot = nibbles(rec, x, h, 4 * j, 4 * j + 4);
                            let sc = _mm256_cvtepu8_epi32(_mm_loadl_epi64(
                                base.add(4 * PR + j * PR + 8 * h).cast(),
                            ));
                            let m = _mm256_cvtepu8_epi32(_mm_loadl_epi64(
                                base.add(12 * PR + j * PR + 8 * h).cast(),
                            ));
                            s1 = _mm256_add_epi32(s1, _mm256_mullo_epi32(sc, dot));
                            s2 = _mm256_add_epi32(
                                s2,
                                _mm256_mullo_epi32(m, _mm256_set1_epi32(sums[8 * b + j])),
                            );
                        }
                        let d = _mm256_cvtph_ps(_mm_loadu_si128(base.add(16 * h).cast()));
                        let dmin =
                            _mm256_cvtph_ps(_mm_loadu_si128(base.add(2 * PR + 16 * h).cast()));
                        acc = _mm256_add_ps(
                            acc,
                            _mm256_mul_ps(_mm256_cvtepi32_ps(s1), _mm256_mul_ps(d, dx)),
                        );
                        acc = _mm256_sub_ps(
                            acc,
                            _mm256_mul_ps(_mm256_cvtepi32_ps(s2), _mm256_mul_ps(dmin, dx)),
                        );
                    }
                }
            }
            _mm256_storeu_ps(out.as_mut_ptr().add(8 * h), acc);
        }
    }
}
