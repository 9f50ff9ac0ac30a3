//! The plain float "formats": F32 (copy), F16 (IEEE half, round to nearest even) and BF16
//! (the top 16 bits, round to nearest even, as `ggml_compute_fp32_to_bf16`).

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::simd::{all_finite, first_non_finite};

/// Checks `src` chunk by chunk; `Err(i)` names the first non-finite value.
#[inline(always)]
fn check(src: &[f32]) -> Result<(), usize> {
    if all_finite(src) {
        Ok(())
    } else {
        Err(first_non_finite(src).unwrap_or(0))
    }
}

#[inline(always)]
pub(crate) fn encode_f32(src: &[f32], dst: &mut [u8]) -> Result<(), usize> {
    check(src)?;
    for (o, v) in dst.as_chunks_mut::<4>().0.iter_mut().zip(src) {
        *o = v.to_le_bytes();
    }
    Ok(())
}

#[inline(always)]
pub(crate) fn decode_f32(src: &[u8], dst: &mut [f32]) {
    for (o, b) in dst.iter_mut().zip(src.as_chunks::<4>().0) {
        *o = f32::from_le_bytes(*b);
    }
}

/// Rounds to bf16 like ggml: add `0x7fff` plus the lowest kept bit, keep the top half.
#[inline(always)]
pub(crate) fn f32_to_bf16_bits(v: f32) -> u16 {
    let b = v.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

#[inline(always)]
pub(crate) fn encode_bf16(src: &[f32], dst: &mut [u8]) -> Result<(), usize> {
    check(src)?;
    for (o, v) in dst.as_chunks_mut::<2>().0.iter_mut().zip(src) {
        // Finite inputs: the sum stays below 2^32.
        *o = f32_to_bf16_bits(*v).to_le_bytes();
    }
    Ok(())
}

#[inline(always)]
pub(crate) fn decode_bf16(src: &[u8], dst: &mut [f32]) {
    for (o, b) in dst.iter_mut().zip(src.as_chunks::<2>().0) {
        *o = f32::from_bits((u16::from_le_bytes(*b) as u32) << 16);
    }
}

#[inline(always)]
pub(crate) fn encode_f16(src: &[f32], dst: &mut [u8]) -> Result<(), usize> {
    check(src)?;
    let mut buf = [f16::ZERO; 256];
    for (x, out) in src.chunks(256).zip(dst.chunks_mut(512)) {
        let h = &mut buf[..x.len()];
        h.convert_from_f32_slice(x);
        for (o, v) in out.as_chunks_mut::<2>().0.iter_mut().zip(h.iter()) {
            *o = v.to_le_bytes();
        }
    }
    Ok(())
}

#[inline(always)]
pub(crate) fn decode_f16(src: &[u8], dst: &mut [f32]) {
    let mut buf = [f16::ZERO; 256];
    for (b, out) in src.chunks(512).zip(dst.chunks_mut(256)) {
        let h = &mut buf[..out.len()];
        for (v, p) in h.iter_mut().zip(b.as_chunks::<2>().0) {
            *v = f16::from_le_bytes(*p);
        }
        h.convert_to_f32_slice(out);
    }
}
