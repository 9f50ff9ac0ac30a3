//! AVX-512 VNNI and AVX2 int8 panel kernels (same contract as `portable::panel`).

use std::arch::x86_64::*;

use super::NR;

/// Checks the slice bounds the pointer arithmetic below relies on (once per call).
fn check(x: &[u8], stride: usize, rows: usize, w: &[i8], g1: usize, tile: &[i32]) {
    assert!(rows >= 1 && (rows - 1) * stride + 4 * g1 <= x.len());
    assert!(g1 * 4 * NR <= w.len() && rows * NR <= tile.len());
}

/// VNNI kernel for `MR` rows: `4 * MR` accumulators of 16 lanes (a 64-row panel per row),
/// weights loaded once per k-group and shared by the rows, activations broadcast 4 bytes at a
/// time. `vpdpbusd` adds four u8 x s8 products per lane without saturation.
///
/// # Safety
/// The CPU must have AVX-512 F/BW/VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn vnni<const MR: usize>(
    x: &[u8],
    stride: usize,
    w: &[i8],
    g0: usize,
    g1: usize,
    tile: &mut [i32],
) {
    check(x, stride, MR, w, g1, tile);
    let (xp, wp, tp) = (x.as_ptr(), w.as_ptr(), tile.as_mut_ptr());
    // SAFETY: `check` bounds every offset read or written below: rows `i < MR` read
    // `x[i * stride + 4g .. + 4]` with `g < g1`, weights `w[g * 256 .. + 256]`, tile `[i * 64 .. + 64]`.
    unsafe {
        let mut acc = [[_mm512_setzero_si512(); 4]; MR];
        for (i, a) in acc.iter_mut().enumerate() {
            for (j, v) in a.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(tp.add(i * NR + 16 * j).cast());
            }
        }
        if MR == 1 {
            // One row: a second set of accumulators for odd k-groups hides vpdpbusd latency.
            let mut odd = [_mm512_setzero_si512(); 4];
            let mut g = g0;
            while g + 2 <= g1 {
                let xa = _mm512_set1_epi32(xp.add(4 * g).cast::<i32>().read_unaligned());
                let xb = _mm512_set1_epi32(xp.add(4 * g + 4).cast::<i32>().read_unaligned());
                let p = wp.add(g * 4 * NR);
                for j in 0..4 {
                    let wa = _mm512_loadu_si512(p.add(64 * j).cast());
                    let wb = _mm512_loadu_si512(p.add(4 * NR + 64 * j).cast());
                    acc[0][j] = _mm512_dpbusd_epi32(acc[0][j], xa, wa);
                    odd[j] = _mm512_dpbusd_epi32(odd[j], xb, wb);
                }
                g += 2;
            }
            if g < g1 {
                let xa = _mm512_set1_epi32(xp.add(4 * g).cast::<i32>().read_unaligned());
                let p = wp.add(g * 4 * NR);
                for (j, o) in odd.iter_mut().enumerate() {
                    *o = _mm512_dpbusd_epi32(*o, xa, _mm512_loadu_si512(p.add(64 * j).cast()));
                }
            }
            for (a, o) in acc[0].iter_mut().zip(odd) {
                *a = _mm512_add_epi32(*a, o);
            }
        } else {
            for g in g0..g1 {
                let p = wp.add(g * 4 * NR);
                let wv = [
                    _mm512_loadu_si512(p.cast()),
                    _mm512_loadu_si512(p.add(64).cast()),
                    _mm512_loadu_si512(p.add(128).cast()),
                    _mm512_loadu_si512(p.add(192).cast()),
                ];
                for (i, a) in acc.iter_mut().enumerate() {
                    let xv = _mm512_set1_epi32(
                        xp.add(i * stride + 4 * g).cast::<i32>().read_unaligned(),
                    );
                    for j in 0..4 {
                        a[j] = _mm512_dpbusd_epi32(a[j], xv, wv[j]);
                    }
                }
            }
        }
        for (i, a) in acc.iter().enumerate() {
            for (j, v) in a.iter().enumerate() {
                _mm512_storeu_si512(tp.add(i * NR + 16 * j).cast(), *v);
            }
        }
    }
}

/// AVX2 kernel for one row. `vpmaddubsw` (u8 x s8 pairs summed to i16) saturates when both
/// products are large (255 * -128 * 2), so the activation byte is split into its low 7 bits
/// (pairs at most 2 * 127 * 128 = 32512, exact) and its top bit (0 or 1), and the two partial
/// products are widened by `vpmaddwd` with 1 and 128: exact for every u8 x s8 input.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn avx2_row(x: &[u8], w: &[i8], g0: usize, g1: usize, tile: &mut [i32]) {
    check(x, 0, 1, w, g1, tile);
    let (xp, wp, tp) = (x.as_ptr(), w.as_ptr(), tile.as_mut_ptr());
    // SAFETY: bounds checked by `check` as in `vnni`.
    unsafe {
        let mut acc = [_mm256_setzero_si256(); 8];
        for (j, v) in acc.iter_mut().enumerate() {
            *v = _mm256_loadu_si256(tp.add(8 * j).cast());
        }
        let ones = _mm256_set1_epi16(1);
        let c128 = _mm256_set1_epi16(128);
        for g in g0..g1 {
            let xd = xp.add(4 * g).cast::<u32>().read_unaligned();
            let lo = _mm256_set1_epi32((xd & 0x7f7f_7f7f) as i32);
            let hi = _mm256_set1_epi32(((xd >> 7) & 0x0101_0101) as i32);
            let p = wp.add(g * 4 * NR);
            for (j, a) in acc.iter_mut().enumerate() {
                let wv = _mm256_loadu_si256(p.add(32 * j).cast());
                let pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, wv), ones);
                let ph = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, wv), c128);
                *a = _mm256_add_epi32(*a, _mm256_add_epi32(pl, ph));
            }
        }
        for (j, v) in acc.iter().enumerate() {
            _mm256_storeu_si256(tp.add(8 * j).cast(), *v);
        }
    }
}
