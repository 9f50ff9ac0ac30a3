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
const LANES: usize = 16;

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
#[inline(always)]
pub(crate) fn abs_max_bits(xs: &[f32]) -> u32 {
    let mut acc = [0u32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            acc[i] = acc[i].max(c[i].to_bits() & 0x7FFF_FFFF);
        }
    }
    let tail = chunks.remainder().iter().map(|x| x.to_bits() & 0x7FFF_FFFF);
    acc.into_iter().chain(tail).fold(0, u32::max)
}

/// `(min, max, abs_max_bits)` of a non-empty run.
#[inline(always)]
pub(crate) fn min_max(xs: &[f32]) -> (f32, f32, u32) {
    let mut lo = [f32::INFINITY; LANES];
    let mut hi = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            lo[i] = if c[i] < lo[i] { c[i] } else { lo[i] };
            hi[i] = if c[i] > hi[i] { c[i] } else { hi[i] };
        }
    }
    let (mut mn, mut mx) = (f32::INFINITY, f32::NEG_INFINITY);
    for (&a, &b) in lo.iter().zip(&hi) {
        mn = mn.min(a);
        mx = mx.max(b);
    }
    for &x in chunks.remainder() {
        mn = mn.min(x);
        mx = mx.max(x);
    }
    (mn, mx, abs_max_bits(xs))
}

/// Quantizes a run into one code per byte.
#[inline(always)]
pub(crate) fn quantize_run(xs: &[f32], p: &RunParams, out: &mut [u8]) {
    for (o, &x) in out.iter_mut().zip(xs) {
        *o = code_byte(x, p);
    }
}

/// Quantizes a run of even length into two codes per byte (low nibble = even element).
#[inline(always)]
pub(crate) fn quantize_run_packed(xs: &[f32], p: &RunParams, out: &mut [u8]) {
    let mut xc = xs.chunks_exact(32);
    let mut oc = out.chunks_exact_mut(16);
    for (x, o) in (&mut xc).zip(&mut oc) {
        let mut c = [0u8; 32];
        for i in 0..32 {
            c[i] = code_byte(x[i], p);
        }
        for i in 0..16 {
            o[i] = (c[2 * i] & 0x0F) | (c[2 * i + 1] << 4);
        }
    }
    for (x, o) in xc.remainder().chunks_exact(2).zip(oc.into_remainder()) {
        *o = (code_byte(x[0], p) & 0x0F) | (code_byte(x[1], p) << 4);
    }
}

/// Outputs of [`quantize_blocks`]: codes (packed when `packed`), one scale and zero point per block.
pub(crate) struct BlockOut<'a> {
    pub codes: &'a mut [u8],
    pub scales: &'a mut [f32],
    pub zero_points: &'a mut [i32],
    pub packed: bool,
}

#[inline(always)]
fn quantize_blocks_body(
    xs: &[f32],
    block: usize,
    s: &CheckedScheme,
    out: BlockOut<'_>,
) -> Option<usize> {
    let per_block_bytes = if out.packed { block / 2 } else { block };
    let blocks = xs
        .chunks_exact(block)
        .zip(out.codes.chunks_exact_mut(per_block_bytes))
        .zip(out.scales.iter_mut().zip(out.zero_points.iter_mut()));
    for (b, ((run, codes), (scale_out, zp_out))) in blocks.enumerate() {
        let (lo, hi, bits) = if s.mode == QuantMode::Affine {
            min_max(run)
        } else {
            let bits = abs_max_bits(run);
            let a = f32::from_bits(bits);
            (-a, a, bits)
        };
        if bits >= NON_FINITE_BITS {
            return Some(b);
        }
        let (scale, zp) = s.params_for_range(lo, hi);
        *scale_out = scale;
        *zp_out = zp;
        let p = RunParams::new(scale, zp, s);
        if out.packed {
            quantize_run_packed(run, &p, codes);
        } else {
            quantize_run(run, &p, codes);
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
    quantize_blocks_body(xs, block, s, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn quantize_blocks_avx2(
    xs: &[f32],
    block: usize,
    s: &CheckedScheme,
    out: BlockOut<'_>,
) -> Option<usize> {
    quantize_blocks_body(xs, block, s, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn quantize_blocks_avx512(
    xs: &[f32],
    block: usize,
    s: &CheckedScheme,
    out: BlockOut<'_>,
) -> Option<usize> {
    quantize_blocks_body(xs, block, s, out)
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
/// range. `block` must divide `xs.len()` and be even when packing. Returns the index of the
/// first block holding a non-finite value, if any (its outputs are then unspecified).
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
            assert_eq!(quantize_blocks(isa, &xs, 32, &s, out), Some(1));
        }
    }
}
