//! Activations quantized on the fly to 8-bit blocks: llama.cpp's Q8_0 (32 values, f16 scale),
//! the same with an f32 scale for grouped int4, and Q8_K (256 values, f32 scale) for the
//! K-quants. Each block also keeps the sum of its codes (sub-block sums for Q8_K), which the
//! products use for the weights' code offsets and mins.

use half::f16;

/// 8-bit activation blocks of one kind, for `m` rows of `k` values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Q8Rows {
    pub k: usize,
    /// Values per scale.
    pub block: usize,
    /// Values per code sum (`block`, or 32 for Q8_K).
    pub sum_block: usize,
    pub codes: Vec<i8>,
    pub scales: Vec<f32>,
    pub sums: Vec<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Q8Kind {
    /// `quantize_row_q8_0`: d = amax / 127 stored as f16, codes round half away from zero.
    Q8_0,
    /// The same arithmetic with the scale kept in f32, over blocks of `block` values.
    F32Scale,
    /// `quantize_row_q8_K`: 256 values, `iscale = -127 / max` (the signed value of largest
    /// magnitude), codes `nearest_int(iscale * x)` capped at 127, `d = 1 / iscale`.
    Q8K,
}

/// C's `roundf` (half away from zero) for `|v| <= 2^22` without a libm call: round half to even
/// by the `1.5 * 2^23` trick, then move ties away from zero (`v - r` is exact here).
#[inline(always)]
fn round_away(v: f32) -> f32 {
    let r = crate::act::round_even(v);
    let d = v - r;
    r + (d == 0.5 && v > 0.0) as i32 as f32 - (d == -0.5 && v < 0.0) as i32 as f32
}

/// ggml's `nearest_int` (round half to even, exact for `|x| <= 2^22`).
fn nearest_int(f: f32) -> i32 {
    let val = f + 12_582_912.0;
    (val.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

impl Q8Rows {
    /// Quantizes `x` (`[m, k]`, finite; `k` a multiple of `block`).
    pub fn quantize(x: &[f32], k: usize, block: usize, kind: Q8Kind) -> Self {
        let sum_block = if kind == Q8Kind::Q8K { 32 } else { block };
        let mut codes = vec![0i8; x.len()];
        let mut scales = Vec::with_capacity(x.len() / block);
        let mut sums = Vec::with_capacity(x.len() / sum_block);
        for (xb, qb) in x.chunks_exact(block).zip(codes.chunks_exact_mut(block)) {
            match kind {
                Q8Kind::Q8_0 | Q8Kind::F32Scale => {
                    let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
                    let d = amax / 127.0;
                    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                    for (q, &v) in qb.iter_mut().zip(xb) {
                        *q = round_away(v * id) as i8; // |v * id| <= 127 + a few ulps
                    }
                    scales.push(if kind == Q8Kind::Q8_0 {
                        f16::from_f32(d).to_f32()
                    } else {
                        d
                    });
                }
                Q8Kind::Q8K => {
                    let (mut amax, mut max) = (0f32, 0f32);
                    for &v in xb {
                        if v.abs() > amax {
                            amax = v.abs();
                            max = v;
                        }
                    }
                    if amax == 0.0 {
                        scales.push(0.0);
                    } else {
                        let iscale = -127.0 / max;
                        for (q, &v) in qb.iter_mut().zip(xb) {
                            *q = nearest_int(iscale * v).min(127) as i8;
                        }
                        scales.push(1.0 / iscale);
                    }
                }
            }
            sums.extend(
                qb.chunks_exact(sum_block)
                    .map(|c| c.iter().map(|&q| q as i32).sum::<i32>()),
            );
        }
        Q8Rows {
            k,
            block,
            sum_block,
            codes,
            scales,
            sums,
        }
    }

    pub fn row(&self, i: usize) -> (&[i8], &[f32], &[i32]) {
        let (nb, ns) = (self.k / self.block, self.k / self.sum_block);
        (
            &self.codes[i * self.k..(i + 1) * self.k],
            &self.scales[i * nb..(i + 1) * nb],
            &self.sums[i * ns..(i + 1) * ns],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modelopt_quantize::ggml::BlockQ8_0;

    #[test]
    fn q8_0_blocks_match_llama_cpp_quantize_row_q8_0() {
        let x: Vec<f32> = (0..96)
            .map(|i| ((i * 37 % 29) as f32 - 14.0) * 0.173)
            .collect();
        let q = Q8Rows::quantize(&x, 96, 32, Q8Kind::Q8_0);
        for (b, chunk) in x.chunks_exact(32).enumerate() {
            let want = BlockQ8_0::quantize(chunk.try_into().unwrap());
            assert_eq!(&q.codes[32 * b..32 * b + 32], &want.qs);
            assert_eq!(q.scales[b], want.d.to_f32());
            assert_eq!(q.sums[b], want.qs.iter().map(|&v| v as i32).sum::<i32>());
        }
    }

    #[test]
    fn round_away_is_roundf() {
        for v in [
            0.5f32,
            -0.5,
            1.5,
            -1.5,
            2.5,
            126.5,
            -127.49999,
            0.49999997,
            -0.49999997,
            3.0,
            -0.0,
        ] {
            assert_eq!(round_away(v), v.round(), "{v}");
        }
    }

    #[test]
    fn q8_k_follows_the_signed_maximum() {
        let mut x = vec![0.5f32; 256];
        x[3] = -2.0;
        let q = Q8Rows::quantize(&x, 256, 256, Q8Kind::Q8K);
        assert_eq!(q.codes[3], -127); // iscale = -127 / -2 = 63.5
        assert_eq!(q.codes[0], 32); // 0.5 * 63.5 = 31.75
        assert_eq!(q.scales[0], 1.0 / 63.5);
        assert_eq!(q.sums.len(), 8);
        let zero = Q8Rows::quantize(&[0.0; 256], 256, 256, Q8Kind::Q8K);
        assert_eq!((zero.scales[0], zero.sums[0]), (0.0, 0));
    }
}
