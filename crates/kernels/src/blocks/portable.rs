//! The portable block kernels: the reference the SIMD kernels are tested against bit for bit
//! (same integer sums, same f32 operations in the same order).

use half::f16;

use super::{BlockFormat, IQ4NL_U8, PR, nibble_at};

fn f16_at(rec: &[u8], o: usize) -> f32 {
    f16::from_le_bytes([rec[o], rec[o + 1]]).to_f32()
}

fn nib(rec: &[u8], r: usize, c: usize) -> i32 {
    let (at, high) = nibble_at(r, c);
    (if high { rec[at] >> 4 } else { rec[at] & 15 }) as i32
}

/// `out[r] = sum over blocks` for the panel's 16 rows (see the module docs of `blocks`).
pub(super) fn panel(
    format: BlockFormat,
    panel: &[u8],
    nb: usize,
    codes: &[i8],
    scales: &[f32],
    sums: &[i32],
    out: &mut [f32; PR],
) {
    let rb = format.record_bytes();
    let bs = format.block_size();
    out.fill(0.0);
    for b in 0..nb {
        let rec = &panel[b * rb..(b + 1) * rb];
        let xs = &codes[b * bs..(b + 1) * bs];
        let dx = scales[b];
        for (r, o) in out.iter_mut().enumerate() {
            match format {
                BlockFormat::Q8_0 => {
                    let dot: i32 = (0..32)
                        .map(|c| rec[(c / 4) * 64 + r * 4 + c % 4] as i32 * xs[c] as i32)
                        .sum();
                    let isum = dot - 128 * sums[b];
                    *o += isum as f32 * (f16_at(rec, 32 * PR + 2 * r) * dx);
                }
                BlockFormat::Q4_0 | BlockFormat::Int4 { .. } => {
                    let dot: i32 = (0..bs).map(|c| nib(rec, r, c) * xs[c] as i32).sum();
                    let isum = dot - 8 * sums[b];
                    let dw = if format == BlockFormat::Q4_0 {
                        f16_at(rec, 16 * PR + 2 * r)
                    } else {
                        let at = bs / 2 * PR + 4 * r;
                        f32::from_le_bytes(rec[at..at + 4].try_into().expect("4 bytes"))
                    };
                    *o += isum as f32 * (dw * dx);
                }
                BlockFormat::IQ4_NL => {
                    let dot: i32 = (0..bs)
                        .map(|c| IQ4NL_U8[nib(rec, r, c) as usize] as i32 * xs[c] as i32)
                        .sum();
                    let isum = dot - 128 * sums[b];
                    *o += isum as f32 * (f16_at(rec, 16 * PR + 2 * r) * dx);
                }
                BlockFormat::Q4_K => {
                    let base = 128 * PR;
                    let (mut s1, mut s2) = (0i32, 0i32);
                    for j in 0..8 {
                        let dot: i32 = (32 * j..32 * j + 32)
                            .map(|c| nib(rec, r, c) * xs[c] as i32)
                            .sum();
                        s1 += rec[base + 4 * PR + j * PR + r] as i32 * dot;
                        s2 += rec[base + 12 * PR + j * PR + r] as i32 * sums[8 * b + j];
                    }
                    let d = f16_at(rec, base + 2 * r);
                    let dmin = f16_at(rec, base + 2 * PR + 2 * r);
                    *o += s1 as f32 * (d * dx);
                    *o -= s2 as f32 * (dmin * dx);
                }
            }
        }
    }
}
