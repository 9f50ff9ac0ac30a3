//! The hot loops: range reduction and quantization of contiguous runs.
//!
//! Written as plain loops over fixed-width lanes so the compiler vectorises them; the fused
//! block kernel is compiled three times (baseline, AVX2, AVX-512) and chosen at run time. The
//! baseline build is the scalar reference the others are tested against.

use crate::scheme::{CheckedScheme, QuantMode};

/// `1.5 * 2^23`: adding it to `|y| < 2^22` rounds `y` to an integer, ties to even (the FPU's
/// default rounding), and leaves that integer in the low mantissa bits.
const MAGIC: f32 = 12_582_912.0;
/// Bits of `|x|` at or above this are ±Inf or NaN.
pub(crate) const NON_FINITE_BITS: u32 = 0x7F80_0000;

/// Per-run constants of the quantization map `code = clamp(round(x / s)) + z`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunParams {
    inv: f32,
    lo: f32,
    hi: f32,
    zp: i32,
}

impl RunParams {
    #[inline(always)]
    pub(crate) fn new(scale: f32, zp: i32, s: &CheckedScheme) -> Self {
        // torch multiplies by the f32 reciprocal (`quantize_val`), and so do we. Clamping to the
        // integer bounds before rounding equals rounding then clamping.
        RunParams {
            inv: 1.0 / scale,
            lo: (s.qmin - zp) as f32,
            hi: (s.qmax - zp) as f32,
            zp,
        }
    }
}

/// The code of `x` as a byte: two's complement for signed codes.
#[inline(always)]
fn code_byte(x: f32, p: &RunParams) -> u8 {
    let y = x * p.inv;
    let y = if y < p.lo { p.lo } else { y };
    let y = if y > p.hi { p.hi } else { y };
    // MAGIC's bit pattern ends in a zero byte, so the low byte is round(y) mod 256.
    ((y + MAGIC).to_bits() as u8).wrapping_add(p.zp as u8)
}

/// Largest `|x|` as raw bits (>= [`NON_FINITE_BITS`] when a NaN or Inf is present).
///
/// An integer max over the sign-cleared bits: the ordering of non-negative floats, NaN above
/// Inf, and a reduction LLVM vectorises at every ISA level (a lane-array version did not under
/// AVX-512).
#[inline(always)]
pub(crate) fn abs_max_bits(xs: &[f32]) -> u32 {
    xs.iter()
        .fold(0u32, |m, x| m.max(x.to_bits() & 0x7FFF_FFFF))
}

/// `(min, max, abs_max_bits)` of a non-empty run (min and max ignore NaN; the bits flag it).
#[inline(always)]
pub(crate) fn min_max(xs: &[f32]) -> (f32, f32, u32) {
    let (lo, hi) = xs
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| {
            (l.min(x), h.max(x))
        });
    (lo, hi, abs_max_bits(xs))
}

/// Quantizes a run into one code per byte.
#[inline(always)]
pub(crate) fn quantize_run(xs: &[f32], p: &RunParams, out: &mut [u8]) {
    for (o, &x) in out.iter_mut().zip(xs) {
        *o = code_byte(x, p);
    }
}

/// The code of `x` in the low bits of a `u32` (two's complement when signed).
#[inline(always)]
fn code_u32(x: f32, p: &RunParams) -> u32 {
    let y = x * p.inv;
    let y = if y < p.lo { p.lo } else { y };
    let y = if y > p.hi { p.hi } else { y };
    (y + MAGIC).to_bits().wrapping_add(p.zp as u32)
}

/// Quantizes a run of even length into two codes per byte (low nibble = even element).
///
/// Each output byte is computed from its two inputs in 32-bit lanes and narrowed once; building
/// a byte array first and combining neighbouring bytes got scalarised by the compiler.
#[inline(always)]
pub(crate) fn quantize_run_packed(xs: &[f32], p: &RunParams, out: &mut [u8]) {
    let mut xc = xs.chunks_exact(32);
    let mut oc = out.chunks_exact_mut(16);
    for (x, o) in (&mut xc).zip(&mut oc) {
        for i in 0..16 {
            let (a, b) = (code_u32(x[2 * i], p), code_u32(x[2 * i + 1], p));
            o[i] = ((a & 0x0F) | ((b & 0x0F) << 4)) as u8;
        }
    }
    for (x, o) in xc.remainder().chunks_exact(2).zip(oc.into_remainder()) {
        let (a, b) = (code_u32(x[0], p), code_u32(x[1], p));
        *o = ((a & 0x0F) | ((b & 0x0F) << 4)) as u8;
    }
}

/// Outputs of [`quantize_blocks`]: codes (packed when `packed`), one scale and zero point per block.
pub(crate) struct BlockOut<'a> {
    pub codes: &'a mut [u8],
    pub scales: &'a mut [f32],
    pub zero_points: &'a mut [i32],
    pub packed: bool,
}

/// Elements processed per tile: small blocks are handled a tile at a time (ranges, then all the
/// tile's parameters, then codes), so the per-block divisions overlap instead of stalling each
/// block, and the tile is still in L1 for the second pass.
const TILE: usize = 4096;

/// Dispatches to a build specialised for the common group sizes (fixed-length inner loops are
/// unrolled and vectorised without remainder handling), or the general one.
#[inline(always)]
fn quantize_blocks_body(
    xs: &[f32],
    block: usize,
    s: &CheckedScheme,
    out: BlockOut<'_>,
    abs_max: impl Fn(&[f32]) -> u32 + Copy,
    range: impl Fn(&[f32]) -> (f32, f32, u32) + Copy,
) -> Option<usize> {
    match block {
        32 => quantize_blocks_sized::<32>(xs, 32, s, out, abs_max, range),
        64 => quantize_blocks_sized::<64>(xs, 64, s, out, abs_max, range),
        128 => quantize_blocks_sized::<128>(xs, 128, s, out, abs_max, range),
        _ => quantize_blocks_sized::<0>(xs, block, s, out, abs_max, range),
    }
}

/// The tiled kernel; `G` is the block length when known at compile time, 0 otherwise.
#[inline(always)]
fn quantize_blocks_sized<const G: usize>(
    xs: &[f32],
    block: usize,
    s: &CheckedScheme,
    out: BlockOut<'_>,
    abs_max: impl Fn(&[f32]) -> u32,
    range: impl Fn(&[f32]) -> (f32, f32, u32),
) -> Option<usize> {
    let block = if G == 0 { block } else { G };
    let per_block_bytes = if out.packed { block / 2 } else { block };
    let per_tile = (TILE / block).max(1);
    let mut lo = vec![0f32; per_tile];
    let mut hi = vec![0f32; per_tile];
    let mut params = vec![
        RunParams {
            inv: 0.0,
            lo: 0.0,
            hi: 0.0,
            zp: 0
        };
        per_tile
    ];
    let tiles = xs
        .chunks(per_tile * block)
        .zip(out.codes.chunks_mut(per_tile * per_block_bytes))
        .zip(
            out.scales
                .chunks_mut(per_tile)
                .zip(out.zero_points.chunks_mut(per_tile)),
        );
    for (t, ((tile, codes), (scales, zero_points))) in tiles.enumerate() {
        let mut bad = 0u32;
        for ((run, l), h) in tile.chunks_exact(block).zip(&mut lo).zip(&mut hi) {
            let bits;
            (*l, *h, bits) = if s.mode == QuantMode::Affine {
                range(run)
            } else {
                let bits = abs_max(run);
                let a = f32::from_bits(bits);
                (-a, a, bits)
            };
            bad = bad.max(bits);
        }
        if bad >= NON_FINITE_BITS {
            return Some(t * per_tile);
        }
        for ((((l, h), scale), zp), rp) in lo
            .iter()
            .zip(&hi)
            .zip(scales.iter_mut())
            .zip(zero_points.iter_mut())
            .zip(&mut params)
        {
            (*scale, *zp) = s.params_for_range(*l, *h);
            *rp = RunParams::new(*scale, *zp, s);
        }
        let runs = tile
            .chunks_exact(block)
            .zip(codes.chunks_exact_mut(per_block_bytes))
            .zip(&params);
        for ((run, codes), rp) in runs {
            if out.packed {
                quantize_run_packed(run, rp, codes);
            } else {
                quantize_run(run, rp, codes);
            }
        }
    }
    None
}

fn quantize_blocks_baseline(
    xs: &[f32],
    block: usize,
    s: &CheckedScheme,
    out: BlockOut<'_>,
) -> Option<usize> {
    quantize_blocks_body(xs, block, s, out, abs_max_bits, min_max)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn quantize_blocks_avx2(
    xs: &[f32],
    block: usize,
    s: &CheckedScheme,
    out: BlockOut<'_>,
) -> Option<usize> {
    quantize_blocks_body(xs, block, s, out, abs_max_bits, min_max)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn quantize_blocks_avx512(
    xs: &[f32],
    block: usize,
    s: &CheckedScheme,
    out: BlockOut<'_>,
) -> Option<usize> {
    // The plain reductions are compiled poorly for short fixed-length blocks at this level
    // (vectorised across blocks with gathers), so they use explicit AVX-512.
    quantize_blocks_body(
        xs,
        block,
        s,
        out,
        |run| abs_max_bits_avx512(run),
        |run| min_max_avx512(run),
    )
}

/// [`abs_max_bits`] with AVX-512F intrinsics: 16-lane unsigned max of the sign-cleared bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn abs_max_bits_avx512(xs: &[f32]) -> u32 {
    use std::arch::x86_64::{
        _mm512_and_si512, _mm512_castps_si512, _mm512_loadu_ps, _mm512_max_epu32,
        _mm512_reduce_max_epu32, _mm512_set1_epi32, _mm512_setzero_si512,
    };
    let mask = _mm512_set1_epi32(0x7FFF_FFFF);
    let mut acc = _mm512_setzero_si512();
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        // SAFETY: `c` is 16 contiguous, initialised f32 values; the load is unaligned.
        let v = unsafe { _mm512_loadu_ps(c.as_ptr()) };
        acc = _mm512_max_epu32(acc, _mm512_and_si512(_mm512_castps_si512(v), mask));
    }
    let m = _mm512_reduce_max_epu32(acc);
    chunks
        .remainder()
        .iter()
        .fold(m, |m, x| m.max(x.to_bits() & 0x7FFF_FFFF))
}

/// [`min_max`] with AVX-512F intrinsics (NaN ignored by min/max, flagged by the abs-max bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn min_max_avx512(xs: &[f32]) -> (f32, f32, u32) {
    use std::arch::x86_64::{
        _mm512_and_si512, _mm512_castps_si512, _mm512_loadu_ps, _mm512_max_epu32, _mm512_max_ps,
        _mm512_min_ps, _mm512_reduce_max_epu32, _mm512_reduce_max_ps, _mm512_reduce_min_ps,
        _mm512_set1_epi32, _mm512_set1_ps, _mm512_setzero_si512,
    };
    let mask = _mm512_set1_epi32(0x7FFF_FFFF);
    let mut bits = _mm512_setzero_si512();
    let mut lo = _mm512_set1_ps(f32::INFINITY);
    let mut hi = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        // SAFETY: `c` is 16 contiguous, initialised f32 values; the load is unaligned.
        let v = unsafe { _mm512_loadu_ps(c.as_ptr()) };
        // vminps/vmaxps return the second operand when either is NaN: keep the accumulator.
        lo = _mm512_min_ps(v, lo);
        hi = _mm512_max_ps(v, hi);
        bits = _mm512_max_epu32(bits, _mm512_and_si512(_mm512_castps_si512(v), mask));
    }
    let (mut mn, mut mx) = (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi));
    let mut b = _mm512_reduce_max_epu32(bits);
    for &x in chunks.remainder() {
        mn = mn.min(x);
        mx = mx.max(x);
        b = b.max(x.to_bits() & 0x7FFF_FFFF);
    }
    (mn, mx, b)
}

/// Which build of the kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// The best build this CPU supports.
    pub(crate) fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
            {
                return Isa::Avx512;
            }
            if is_x86_feature_detected!("avx2") {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    }

    /// Every build this CPU can run (for tests).
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Isa> {
        let mut v = vec![Isa::Baseline];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") {
                v.push(Isa::Avx2);
            }
            if Isa::detect() == Isa::Avx512 {
                v.push(Isa::Avx512);
            }
        }
        v
    }
}

/// Quantizes `xs` as consecutive blocks of `block` elements, each with parameters from its own
/// range. `block` must divide `xs.len()` and be even when packing. Returns the index of a block
/// at or before the first one holding a non-finite value, if any (outputs are then unspecified).
pub(crate) fn quantize_blocks(
    isa: Isa,
    xs: &[f32],
    block: usize,
    s: &CheckedScheme,
    out: BlockOut<'_>,
) -> Option<usize> {
    match isa {
        Isa::Baseline => quantize_blocks_baseline(xs, block, s, out),
        // SAFETY: `Isa::detect` returned this variant only after confirming the CPU features.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { quantize_blocks_avx2(xs, block, s, out) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { quantize_blocks_avx512(xs, block, s, out) },
    }
}

/// Codes of consecutive `block`-element blocks with known parameters (`scales[b]`,
/// `zero_points[b]` for block `b`), packed two per byte when `packed` (then `block` is even).
#[inline(always)]
fn quantize_blocks_given_body(
    xs: &[f32],
    block: usize,
    s: &CheckedScheme,
    scales: &[f32],
    zero_points: &[i32],
    codes: &mut [u8],
    packed: bool,
) {
    let per_block_bytes = if packed { block / 2 } else { block };
    let blocks = xs
        .chunks_exact(block)
        .zip(codes.chunks_exact_mut(per_block_bytes))
        .zip(scales.iter().zip(zero_points));
    for ((run, out), (&scale, &zp)) in blocks {
        let rp = RunParams::new(scale, zp, s);
        if packed {
            quantize_run_packed(run, &rp, out);
        } else {
            quantize_run(run, &rp, out);
        }
    }
}

fn quantize_blocks_given_baseline(
    xs: &[f32],
    block: usize,
    s: &CheckedScheme,
    scales: &[f32],
    zero_points: &[i32],
    codes: &mut [u8],
    packed: bool,
) {
    quantize_blocks_given_body(xs, block, s, scales, zero_points, codes, packed)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn quantize_blocks_given_avx2(
    xs: &[f32],
    block: usize,
    s: &CheckedScheme,
    scales: &[f32],
    zero_points: &[i32],
    codes: &mut [u8],
    packed: bool,
) {
    quantize_blocks_given_body(xs, block, s, scales, zero_points, codes, packed)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn quantize_blocks_given_avx512(
    xs: &[f32],
    block: usize,
    s: &CheckedScheme,
    scales: &[f32],
    zero_points: &[i32],
    codes: &mut [u8],
    packed: bool,
) {
    quantize_blocks_given_body(xs, block, s, scales, zero_points, codes, packed)
}

/// Quantizes finite `xs` as consecutive blocks with given parameters (one per block) into
/// `codes` (two per byte when `packed`; `block` must then be even).
pub(crate) fn quantize_blocks_given(
    isa: Isa,
    xs: &[f32],
    block: usize,
    s: &CheckedScheme,
    params: (&[f32], &[i32]),
    codes: &mut [u8],
    packed: bool,
) {
    let (scales, zps) = params;
    match isa {
        Isa::Baseline => quantize_blocks_given_baseline(xs, block, s, scales, zps, codes, packed),
        // SAFETY: `Isa::detect` returned this variant only after confirming the CPU features.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe {
            quantize_blocks_given_avx2(xs, block, s, scales, zps, codes, packed)
        },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe {
            quantize_blocks_given_avx512(xs, block, s, scales, zps, codes, packed)
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QuantScheme;

    fn run(isa: Isa, xs: &[f32], block: usize, s: &CheckedScheme) -> (Vec<u8>, Vec<f32>, Vec<i32>) {
        let nb = xs.len() / block;
        let packed = s.is_packed();
        let mut codes = vec![0u8; if packed { xs.len() / 2 } else { xs.len() }];
        let (mut sc, mut zp) = (vec![0f32; nb], vec![0i32; nb]);
        let r = quantize_blocks(
            isa,
            xs,
            block,
            s,
            BlockOut {
                codes: &mut codes,
                scales: &mut sc,
                zero_points: &mut zp,
                packed,
            },
        );
        assert_eq!(r, None);
        (codes, sc, zp)
    }

    #[test]
    fn simd_builds_equal_baseline() {
        // Deterministic pseudo-random data with exact ties and extremes mixed in.
        let mut state = 12345u32;
        let mut xs: Vec<f32> = (0..4096)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect();
        for (i, x) in xs.iter_mut().enumerate().step_by(7) {
            *x = (i % 9) as f32 * 0.5 - 2.0;
        }
        for (mode, signed, bits) in [
            (QuantMode::Symmetric, true, 8),
            (QuantMode::Symmetric, true, 4),
            (QuantMode::SymmetricFullRange, false, 8),
            (QuantMode::Affine, true, 3),
            (QuantMode::Affine, false, 8),
        ] {
            let s = QuantScheme::new(bits)
                .mode(mode)
                .signed(signed)
                .check()
                .unwrap();
            for block in [32, 128, 4096] {
                let want = run(Isa::Baseline, &xs, block, &s);
                for isa in Isa::available() {
                    assert_eq!(
                        run(isa, &xs, block, &s),
                        want,
                        "{isa:?} {mode:?} {bits} {block}"
                    );
                }
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx512_abs_max_equals_scalar() {
        if !is_x86_feature_detected!("avx512f") {
            return;
        }
        let mut xs: Vec<f32> = (0..300).map(|i| ((i * 37) % 101) as f32 - 50.5).collect();
        for len in [0, 1, 15, 16, 17, 32, 100, 300] {
            // SAFETY: avx512f was detected above.
            assert_eq!(
                unsafe { abs_max_bits_avx512(&xs[..len]) },
                abs_max_bits(&xs[..len])
            );
        }
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -1e30] {
            xs[200] = bad;
            // SAFETY: as above.
            assert_eq!(unsafe { abs_max_bits_avx512(&xs) }, abs_max_bits(&xs));
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx512_min_max_equals_scalar() {
        if !is_x86_feature_detected!("avx512f") {
            return;
        }
        let xs: Vec<f32> = (0..300)
            .map(|i| ((i * 53) % 97) as f32 * 0.25 - 11.0)
            .collect();
        for len in [1, 15, 16, 17, 32, 100, 300] {
            // SAFETY: avx512f was detected above.
            assert_eq!(
                unsafe { min_max_avx512(&xs[..len]) },
                min_max(&xs[..len]),
                "{len}"
            );
        }
        let mut ys = xs.clone();
        ys[40] = f32::NAN;
        // SAFETY: as above.
        let (lo, hi, bits) = unsafe { min_max_avx512(&ys) };
        assert_eq!((lo, hi), (min_max(&xs).0, min_max(&xs).1));
        assert!(bits >= NON_FINITE_BITS);
    }

    #[test]
    fn reports_block_with_non_finite() {
        let mut xs = vec![1.0f32; 64];
        xs[40] = f32::NAN;
        let s = QuantScheme::int8().check().unwrap();
        for isa in Isa::available() {
            let (mut c, mut sc, mut z) = (vec![0u8; 64], vec![0f32; 2], vec![0i32; 2]);
            let out = BlockOut {
                codes: &mut c,
                scales: &mut sc,
                zero_points: &mut z,
                packed: false,
            };
            assert!(quantize_blocks(isa, &xs, 32, &s, out).is_some());
        }
    }
}
