//! The NF4/FP4 hot loops: blockwise absmax, threshold counting, nibble packing, and the
//! dequantization by a 256-entry byte-pair table.
//!
//! Written as fixed-width loops the compiler vectorises, compiled for AVX-512, AVX2 and the
//! baseline ISA, chosen at run time; the tests check the builds agree byte for byte.

use super::grid::Grid;
use crate::kernel::{Isa, NON_FINITE_BITS, abs_max_bits};

/// bitsandbytes clamps the absmax to this before taking its reciprocal (`clamp(min=1e-38)`).
pub(crate) const MIN_ABSMAX: f32 = 1e-38;

/// A 16-level code prepared for quantization: the sorted grid's thresholds and the code of each
/// sorted position.
#[derive(Debug, Clone)]
pub(crate) struct Table4 {
    thresholds: [f32; 15],
    code_of: [u8; 16],
    /// `code_of[i + 1] - code_of[i]` (wrapping): the code is `code_of[0]` plus the steps of
    /// the thresholds passed, which vectorises like the plain count.
    steps: [u8; 15],
}

impl Table4 {
    pub(crate) fn new(code: &[f32; 16]) -> Table4 {
        // Stable sort: of equal levels (FP4's two zeros) the lower code comes first.
        let mut order: Vec<u8> = (0..16).collect();
        order.sort_by(|&a, &b| {
            code[usize::from(a)]
                .total_cmp(&code[usize::from(b)])
                .then(a.cmp(&b))
        });
        let sorted: Vec<f32> = order.iter().map(|&i| code[usize::from(i)]).collect();
        let grid = Grid::from_sorted(sorted);
        let mut thresholds = [f32::INFINITY; 15];
        thresholds.copy_from_slice(grid.thresholds());
        let mut code_of = [0u8; 16];
        code_of.copy_from_slice(&order);
        let mut steps = [0u8; 15];
        for (i, s) in steps.iter_mut().enumerate() {
            *s = code_of[i + 1].wrapping_sub(code_of[i]);
        }
        Table4 {
            thresholds,
            code_of,
            steps,
        }
    }

    pub(crate) fn thresholds(&self) -> &[f32; 15] {
        &self.thresholds
    }

    pub(crate) fn codes(&self) -> [u8; 16] {
        self.code_of
    }

    #[inline(always)]
    fn code(&self, y: f32) -> u8 {
        self.thresholds
            .iter()
            .zip(&self.steps)
            .fold(self.code_of[0], |c, (&t, &s)| {
                c.wrapping_add(if y >= t { s } else { 0 })
            })
    }
}

/// Quantizes consecutive blocks of `xs` (the last may be shorter); returns whether a NaN or Inf
/// was met (outputs are then unspecified).
pub(crate) fn quantize(
    t: &Table4,
    xs: &[f32],
    block: usize,
    absmax: &mut [f32],
    packed: &mut [u8],
) -> bool {
    match Isa::detect() {
        Isa::Baseline => quantize_body(t, xs, block, absmax, packed),
        // SAFETY: `Isa::detect` returned this variant only after confirming the CPU features.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { quantize_avx2(t, xs, block, absmax, packed) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { super::bnb_simd::quantize_avx512(t, xs, block, absmax, packed) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn quantize_avx2(
    t: &Table4,
    xs: &[f32],
    block: usize,
    absmax: &mut [f32],
    packed: &mut [u8],
) -> bool {
    quantize_body(t, xs, block, absmax, packed)
}

#[inline(always)]
fn quantize_body(
    t: &Table4,
    xs: &[f32],
    block: usize,
    absmax: &mut [f32],
    packed: &mut [u8],
) -> bool {
    let mut bad = false;
    for (b, (x, a)) in xs.chunks(block).zip(absmax.iter_mut()).enumerate() {
        let bits = abs_max_bits(x);
        bad |= bits >= NON_FINITE_BITS;
        let am = f32::from_bits(bits);
        let out = &mut packed[b * block / 2..];
        if x.len() < block {
            *a = quantize_short_block(t, x, block, am, out);
            continue;
        }
        *a = am;
        let inv = 1.0 / am.max(MIN_ABSMAX);
        let mut pairs = x.chunks_exact(32);
        for (c, o) in (&mut pairs).zip(out.chunks_exact_mut(16)) {
            let mut q = [0u8; 32];
            for (qi, &v) in q.iter_mut().zip(c) {
                *qi = t.code(v * inv);
            }
            for (i, oi) in o.iter_mut().enumerate() {
                *oi = (q[2 * i] << 4) | (q[2 * i + 1] & 15);
            }
        }
        let rest = pairs.remainder();
        let done = (x.len() - rest.len()) / 2;
        for (i, p) in rest.chunks(2).enumerate() {
            let hi = t.code(p[0] * inv);
            let lo = t.code(p.get(1).map_or(0.0, |v| v * inv));
            out[done + i] = (hi << 4) | lo;
        }
    }
    bad
}

/// One block outside the vector loop; returns the absmax to store. bitsandbytes' last, shorter
/// block stores the clamped absmax and divides by it; a full block multiplies by the reciprocal.
#[inline(always)]
pub(crate) fn quantize_short_block(
    t: &Table4,
    x: &[f32],
    block: usize,
    am: f32,
    out: &mut [u8],
) -> f32 {
    let short = x.len() < block;
    let stored = if short { am.max(MIN_ABSMAX) } else { am };
    let inv = 1.0 / am.max(MIN_ABSMAX);
    for (i, p) in x.chunks(2).enumerate() {
        let scale = |v: f32| if short { v / stored } else { v * inv };
        let hi = t.code(scale(p[0]));
        let lo = t.code(p.get(1).map_or(0.0, |&v| scale(v)));
        out[i] = (hi << 4) | lo;
    }
    stored
}

/// Dequantizes consecutive blocks: `out[i] = code[c_i] * absmax[i / block]`.
pub(crate) fn dequantize(
    code: &[f32; 16],
    packed: &[u8],
    absmax: &[f32],
    block: usize,
    out: &mut [f32],
) {
    match Isa::detect() {
        Isa::Baseline => dequantize_body(code, packed, absmax, block, out),
        // SAFETY: `Isa::detect` returned this variant only after confirming the CPU features.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { dequantize_avx2(code, packed, absmax, block, out) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe {
            super::bnb_simd::dequantize_avx512(code, packed, absmax, block, out)
        },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dequantize_avx2(code: &[f32; 16], packed: &[u8], absmax: &[f32], block: usize, out: &mut [f32]) {
    dequantize_body(code, packed, absmax, block, out)
}

#[inline(always)]
fn dequantize_body(code: &[f32; 16], packed: &[u8], absmax: &[f32], block: usize, out: &mut [f32]) {
    let mut pair = [[0f32; 2]; 256];
    for (b, p) in pair.iter_mut().enumerate() {
        *p = [code[b >> 4], code[b & 15]];
    }
    for (b, (o, &a)) in out.chunks_mut(block).zip(absmax).enumerate() {
        let bytes = &packed[b * block / 2..];
        let half = o.len() / 2;
        let mut oc = o.chunks_exact_mut(2);
        for (o2, &byte) in (&mut oc).zip(bytes) {
            let p = pair[usize::from(byte)];
            o2[0] = p[0] * a;
            o2[1] = p[1] * a;
        }
        if let ([last], Some(&byte)) = (oc.into_remainder(), bytes.get(half)) {
            *last = pair[usize::from(byte)][0] * a;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::bnb_tables::{FP4_CODE, NF4_CODE};
    use super::*;

    fn input() -> Vec<f32> {
        (0..4099)
            .map(|i| {
                let u = ((i as f32) * 0.618_034).fract() - 0.5;
                u * u * u * (1.0 + (i % 97) as f32)
            })
            .collect()
    }

    #[test]
    fn every_isa_build_agrees_with_the_baseline() {
        let xs = input();
        for code in [&NF4_CODE, &FP4_CODE] {
            let t = Table4::new(code);
            for block in [32usize, 64, 256] {
                let nb = xs.len().div_ceil(block);
                let run = |isa: Isa| {
                    let mut a = vec![0f32; nb];
                    let mut p = vec![0u8; xs.len().div_ceil(2)];
                    let mut d = vec![0f32; xs.len()];
                    match isa {
                        Isa::Baseline => {
                            quantize_body(&t, &xs, block, &mut a, &mut p);
                            dequantize_body(code, &p, &a, block, &mut d);
                        }
                        #[cfg(target_arch = "x86_64")]
                        Isa::Avx2 => unsafe {
                            quantize_avx2(&t, &xs, block, &mut a, &mut p);
                            dequantize_avx2(code, &p, &a, block, &mut d);
                        },
                        #[cfg(target_arch = "x86_64")]
                        Isa::Avx512 => unsafe {
                            super::super::bnb_simd::quantize_avx512(&t, &xs, block, &mut a, &mut p);
                            super::super::bnb_simd::dequantize_avx512(code, &p, &a, block, &mut d);
                        },
                    }
                    (a, p, d.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
                };
                let base = run(Isa::Baseline);
                for isa in Isa::available() {
                    assert_eq!(run(isa), base, "{isa:?} block {block}");
                }
            }
        }
    }

    #[test]
    fn counting_is_the_grid_rule() {
        let t = Table4::new(&FP4_CODE);
        for &(y, want) in &[
            (0.001f32, 8u8),
            (-0.001, 0),
            (0.0, 0),
            (-0.0, 0),
            (1.0, 3),
            (-1.0, 11),
        ] {
            assert_eq!(t.code(y), want, "{y}");
        }
    }
}
