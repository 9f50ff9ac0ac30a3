//! The last pass of llama.cpp's K-quant quantizers: every code re-derived from the stored scales.
//!
//! `quantize_row_q{2,3,4,5,6}_K_ref` (and the importance-weighted `quantize_row_q*_K_impl`) in
//! `ggml-quants.c` end, after the scale search and the packing of the (f16, 6-bit, 8-bit)
//! scales, by recomputing each code from the *stored* scales, e.g. `nearest_int((x + dm) / d)`
//! for Q4_K, clamped to the code range; a sub-block whose stored scale is zero keeps the codes of
//! the search. This crate's block quantizers return the search codes (they match the reference
//! bytes of `ggml_quantize_chunk` in its tests); what `llama-quantize` writes (llama.cpp
//! c392e509, `crates/cli/tests/data/llama_quantize`) carries this pass, so the command applies it.

use crate::ggml::GgmlType;
use crate::ggml::f16_bits::f16_to_f32;
use crate::{QuantError, Result};

use super::{QK_K, get_scale_min_k4, nearest_int};

/// Re-derives the codes of K-quant `blocks` (rows already quantized from `x` by this crate) from
/// their stored scales, as llama.cpp's quantizers do last (see the module docs); other types are
/// left as they are. The pass is idempotent.
///
/// ```
/// use modelopt_quantize::ggml::{self, GgmlType};
/// let x: Vec<f32> = (0..256).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
/// let mut q = ggml::quantize(GgmlType::Q4_K, &x)?;
/// ggml::rederive_codes(GgmlType::Q4_K, &x, &mut q)?;
/// let once = q.clone();
/// ggml::rederive_codes(GgmlType::Q4_K, &x, &mut q)?;
/// assert_eq!(q, once);
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
pub fn rederive_codes(ty: GgmlType, x: &[f32], blocks: &mut [u8]) -> Result<()> {
    let pass: fn(&[f32; QK_K], &mut [u8]) = match ty {
        GgmlType::Q2_K => q2_k,
        GgmlType::Q3_K => q3_k,
        GgmlType::Q4_K => q4_k,
        GgmlType::Q5_K => q5_k,
        GgmlType::Q6_K => q6_k,
        _ => return Ok(()),
    };
    let expected = ty.row_bytes(x.len())?;
    if blocks.len() != expected {
        return Err(QuantError::Length {
            what: "K-quant blocks",
            expected,
            found: blocks.len(),
            unit: "bytes",
        });
    }
    let (xs, _) = x.as_chunks::<QK_K>();
    for (xb, b) in xs.iter().zip(blocks.chunks_exact_mut(ty.type_size())) {
        pass(xb, b);
    }
    Ok(())
}

fn half(b: &[u8], at: usize) -> f32 {
    f16_to_f32(half::f16::from_le_bytes([b[at], b[at + 1]]))
}

/// 2-bit codes of Q2_K / Q3_K: byte `32 * (j / 128) + l` holds elements `j + l + 32 k` in bits
/// `2k`.
fn unpack2(qs: &[u8], l: &mut [u8; QK_K]) {
    for n in 0..2 {
        for i in 0..32 {
            let q = qs[32 * n + i];
            for k in 0..4 {
                l[128 * n + 32 * k + i] = (q >> (2 * k)) & 3;
            }
        }
    }
}

fn pack2(l: &[u8; QK_K], qs: &mut [u8]) {
    for n in 0..2 {
        for i in 0..32 {
            qs[32 * n + i] =
                (0..4).fold(0, |acc, k| acc | ((l[128 * n + 32 * k + i] & 3) << (2 * k)));
        }
    }
}

/// Q2_K: scales 0..16 (low nibble scale, high nibble min), qs 16..80, d 80, dmin 82.
fn q2_k(x: &[f32; QK_K], b: &mut [u8]) {
    let mut l = [0u8; QK_K];
    unpack2(&b[16..80], &mut l);
    let (d0, m0) = (half(b, 80), half(b, 82));
    for j in 0..QK_K / 16 {
        let d = d0 * (b[j] & 0xf) as f32;
        if d == 0.0 {
            continue;
        }
        let dm = m0 * (b[j] >> 4) as f32;
        for i in 0..16 {
            l[16 * j + i] = nearest_int((x[16 * j + i] + dm) / d).clamp(0, 3) as u8;
        }
    }
    pack2(&l, &mut b[16..80]);
}

/// Q3_K: hmask 0..32, qs 32..96, scales 96..108 (6-bit, offset 32), d 108.
fn q3_k(x: &[f32; QK_K], b: &mut [u8]) {
    let mut l = [0u8; QK_K];
    unpack2(&b[32..96], &mut l);
    for (j, v) in l.iter_mut().enumerate() {
        *v |= ((b[j % 32] >> (j / 32)) & 1) << 2;
    }
    let d0 = half(b, 108);
    let s = &b[96..108];
    for j in 0..QK_K / 16 {
        let low = if j < 8 { s[j] & 0xf } else { s[j - 8] >> 4 };
        let sc = (low | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i32 - 32;
        let d = d0 * sc as f32;
        if d == 0.0 {
            continue;
        }
        for i in 0..16 {
            l[16 * j + i] = (nearest_int(x[16 * j + i] / d).clamp(-4, 3) + 4) as u8;
        }
    }
    b[..32].fill(0);
    for (j, v) in l.iter().enumerate() {
        if *v > 3 {
            b[j % 32] |= 1 << (j / 32);
        }
    }
    pack2(&l, &mut b[32..96]);
}

/// The scale and min of sub-block `j` of Q4_K / Q5_K, or `None` when the scale is zero.
fn k4_scale(b: &[u8], j: usize) -> Option<(f32, f32)> {
    let mut s = [0u8; 12];
    s.copy_from_slice(&b[4..16]);
    let (sc, m) = get_scale_min_k4(j, &s);
    let d = half(b, 0) * sc as f32;
    (d != 0.0).then(|| (d, half(b, 2) * m as f32))
}

/// Q4_K: d 0, dmin 2, scales 4..16, qs 16..144 (element `64 g + k` low nibble, `+ 32` high).
fn q4_k(x: &[f32; QK_K], b: &mut [u8]) {
    for j in 0..QK_K / 32 {
        let Some((d, dm)) = k4_scale(b, j) else {
            continue;
        };
        let (g, shift) = (j / 2, 4 * (j % 2));
        for i in 0..32 {
            let q = nearest_int((x[32 * j + i] + dm) / d).clamp(0, 15) as u8;
            let byte = &mut b[16 + 32 * g + i];
            *byte = (*byte & !(0xf << shift)) | (q << shift);
        }
    }
}

/// Q5_K: d 0, dmin 2, scales 4..16, qh 16..48 (bit `j / 32` of byte `i`), qs 48..176.
fn q5_k(x: &[f32; QK_K], b: &mut [u8]) {
    for j in 0..QK_K / 32 {
        let Some((d, dm)) = k4_scale(b, j) else {
            continue;
        };
        let (g, shift) = (j / 2, 4 * (j % 2));
        for i in 0..32 {
            let q = nearest_int((x[32 * j + i] + dm) / d).clamp(0, 31) as u8;
            let low = &mut b[48 + 32 * g + i];
            *low = (*low & !(0xf << shift)) | ((q & 0xf) << shift);
            let high = &mut b[16 + i];
            *high = (*high & !(1 << j)) | ((q >> 4) << j);
        }
    }
}

/// Q6_K: ql 0..128, qh 128..192, scales 192..208 (i8), d 208. Within each half of 128
/// elements, element `32 k + l` has its low nibble in `ql[l + 32 (k % 2)]` (bits `4 (k / 2)`)
/// and its two high bits in `qh[l]` (bits `2 k`).
fn q6_k(x: &[f32; QK_K], b: &mut [u8]) {
    let d0 = half(b, 208);
    for j in 0..QK_K / 16 {
        let d = d0 * (b[192 + j] as i8) as f32;
        if d == 0.0 {
            continue;
        }
        for i in 0..16 {
            let e = 16 * j + i;
            let q = (nearest_int(x[e] / d).clamp(-32, 31) + 32) as u8;
            let (h, r) = (e / 128, e % 128);
            let (k, l) = (r / 32, r % 32);
            let (lo_at, lo_shift) = (64 * h + l + 32 * (k % 2), 4 * (k / 2));
            b[lo_at] = (b[lo_at] & !(0xf << lo_shift)) | ((q & 0xf) << lo_shift);
            let hi_at = 128 + 32 * h + l;
            b[hi_at] = (b[hi_at] & !(3 << (2 * k))) | ((q >> 4) << (2 * k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ggml::{self, dequantize, quantize};

    fn values(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i * 7919 % 1000) as f32 - 500.0) / 97.0 * if i % 61 == 0 { 9.0 } else { 1.0 }
            })
            .collect()
    }

    const K: [GgmlType; 5] = [
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ];

    /// The pass keeps the scales and is idempotent; each code is then the nearest one (in the
    /// clamped range) to its value under the stored scales, so no single code change lowers the
    /// squared error of its weight.
    #[test]
    fn codes_become_nearest_to_the_stored_scales() {
        let x = values(4 * 256);
        for ty in K {
            let mut q = quantize(ty, &x).unwrap();
            let search = q.clone();
            rederive_codes(ty, &x, &mut q).unwrap();
            let once = q.clone();
            rederive_codes(ty, &x, &mut q).unwrap();
            assert_eq!(q, once, "{ty:?} not idempotent");
            let back = dequantize(ty, &q, x.len()).unwrap();
            let before = dequantize(ty, &search, x.len()).unwrap();
            let err =
                |y: &[f32]| -> f64 { x.iter().zip(y).map(|(a, b)| f64::from(a - b).powi(2)).sum() };
            // Nearest codes under the same scales can only lower the error of each weight.
            assert!(err(&back) <= err(&before) * (1.0 + 1e-6), "{ty:?}");
        }
    }

    /// Other types are untouched; a short input or a wrong byte count is an error.
    #[test]
    fn unknown_types_and_bad_sizes() {
        let x = values(256);
        let mut q = ggml::quantize(GgmlType::Q8_0, &x).unwrap();
        let before = q.clone();
        rederive_codes(GgmlType::Q8_0, &x, &mut q).unwrap();
        assert_eq!(q, before);
        let mut k = ggml::quantize(GgmlType::Q4_K, &x).unwrap();
        assert!(rederive_codes(GgmlType::Q4_K, &x[..255], &mut k).is_err());
        assert!(rederive_codes(GgmlType::Q4_K, &x, &mut k[1..].to_vec()).is_err());
    }
}
