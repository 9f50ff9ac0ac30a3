//! Scalar f32 <-> f16 conversions as plain integer code (round to nearest even, like
//! `GGML_FP32_TO_FP16` and numpy), so the block kernels inline them instead of calling `half`'s
//! runtime-dispatched conversion once per block. Tested against `half` below.

use half::f16;

/// f32 -> f16, round to nearest even; overflow gives ±Inf, NaN stays NaN.
#[inline(always)]
pub(crate) fn f32_to_f16(v: f32) -> f16 {
    let x = v.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let a = x & 0x7fff_ffff;
    let h = if a >= 0x4780_0000 {
        // |v| >= 65536 (or Inf/NaN): Inf, or a quiet NaN.
        if a > 0x7f80_0000 { 0x7e00 } else { 0x7c00 }
    } else if a < 0x3880_0000 {
        // Below the smallest normal f16 (2^-14): let the f32 adder round at 2^-24 granularity.
        let f = f32::from_bits(a) + 0.5;
        (f.to_bits() - 0x3f00_0000) as u16
    } else {
        // Rebias the exponent and round the mantissa to 10 bits (ties to even); a carry moves
        // into the exponent, up to Inf for values at or above 65520.
        let odd = (a >> 13) & 1;
        ((a.wrapping_sub(0x3800_0000) + 0x0fff + odd) >> 13) as u16
    };
    f16::from_bits(sign | h)
}

/// f16 -> f32 (exact).
#[inline(always)]
pub(crate) fn f16_to_f32(h: f16) -> f32 {
    let h = h.to_bits();
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let mag = if exp == 0 {
        // Zero or subnormal: man * 2^-24, exact in f32.
        (man as f32 * (1.0 / 16_777_216.0)).to_bits()
    } else if exp == 31 {
        0x7f80_0000 | (man << 13)
    } else {
        ((exp + 112) << 23) | (man << 13)
    };
    f32::from_bits(sign | mag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_to_f32_matches_half_on_every_value() {
        for b in 0..=u16::MAX {
            let h = f16::from_bits(b);
            let (a, e) = (f16_to_f32(h), h.to_f32());
            assert!(
                a.to_bits() == e.to_bits() || (a.is_nan() && e.is_nan()),
                "{b:#x}"
            );
        }
    }

    #[test]
    fn f32_to_f16_matches_half() {
        // Every 613th bit pattern of both signs, plus the boundaries around the subnormal,
        // normal and overflow thresholds.
        let mut bits: Vec<u32> = (0..u32::MAX / 613).map(|i| i * 613).collect();
        for edge in [
            0x3380_0000u32,
            0x3880_0000,
            0x477f_e000,
            0x477f_f000,
            0x4780_0000,
        ] {
            bits.extend(edge - 4096..edge + 4096);
        }
        for b in bits {
            let v = f32::from_bits(b);
            let (a, e) = (f32_to_f16(v), f16::from_f32(v));
            assert!(
                a.to_bits() == e.to_bits() || (a.is_nan() && e.is_nan()),
                "{b:#x}: {v}"
            );
        }
    }
}
