use super::*;
use modelopt_quantize::ggml;
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// The block arithmetic written out from the GGML blocks themselves (not the packed form), in
/// f64: returns (sum of terms, sum of |terms|) per output.
fn reference(
    format: BlockFormat,
    w: &[u8],
    int4: Option<(&[i8], &[f32])>,
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
) -> Vec<(f64, f64)> {
    let bs = format.block_size();
    let q = Q8Rows::quantize(x, k, bs, format.activation_kind());
    let mut out = Vec::new();
    for i in 0..m {
        let (xc, xs, xsum) = q.row(i);
        for r in 0..n {
            let (mut s, mut a) = (0f64, 0f64);
            for b in 0..k / bs {
                let xb = &xc[b * bs..(b + 1) * bs];
                let dx = xs[b] as f64;
                let dot = |codes: &[i32]| {
                    codes
                        .iter()
                        .zip(xb)
                        .map(|(&c, &v)| c as i64 * v as i64)
                        .sum::<i64>() as f64
                };
                let term = match format {
                    BlockFormat::Q8_0 => {
                        let rb = ggml::GgmlType::Q8_0.row_bytes(k).unwrap();
                        let blk =
                            BlockQ8_0::from_bytes(w[r * rb + b * 34..][..34].try_into().unwrap());
                        let c: Vec<i32> = blk.qs.iter().map(|&v| v as i32).collect();
                        blk.d.to_f64() * dx * dot(&c)
                    }
                    BlockFormat::Q4_0 => {
                        let rb = ggml::GgmlType::Q4_0.row_bytes(k).unwrap();
                        let blk =
                            BlockQ4_0::from_bytes(w[r * rb + b * 18..][..18].try_into().unwrap());
                        let mut c = vec![0i32; 32];
                        for j in 0..16 {
                            c[j] = (blk.qs[j] & 15) as i32 - 8;
                            c[j + 16] = (blk.qs[j] >> 4) as i32 - 8;
                        }
                        blk.d.to_f64() * dx * dot(&c)
                    }
                    BlockFormat::IQ4_NL => {
                        let rb = ggml::GgmlType::IQ4_NL.row_bytes(k).unwrap();
                        let blk =
                            BlockIQ4_NL::from_bytes(w[r * rb + b * 18..][..18].try_into().unwrap());
                        let mut c = vec![0i32; 32];
                        for j in 0..16 {
                            c[j] = ggml::KVALUES_IQ4NL[(blk.qs[j] & 15) as usize] as i32;
                            c[j + 16] = ggml::KVALUES_IQ4NL[(blk.qs[j] >> 4) as usize] as i32;
                        }
                        blk.d.to_f64() * dx * dot(&c)
                    }
                    BlockFormat::Int4 { group } => {
                        let (codes, scales) = int4.unwrap();
                        let c: Vec<i32> = codes[r * k + b * group..][..group]
                            .iter()
                            .map(|&v| v as i32)
                            .collect();
                        scales[r * (k / group) + b] as f64 * dx * dot(&c)
                    }
                    BlockFormat::Q4_K => {
                        let rb = ggml::GgmlType::Q4_K.row_bytes(k).unwrap();
                        let blk =
                            BlockQ4_K::from_bytes(w[r * rb + b * 144..][..144].try_into().unwrap());
                        let (mut s1, mut s2) = (0f64, 0f64);
                        for j in 0..8 {
                            let (sc, mn) = scale_min_k4(j, &blk.scales);
                            let (g, high) = (j / 2, j % 2 == 1);
                            let c: Vec<i32> = (0..32)
                                .map(|l| {
                                    let byte = blk.qs[32 * g + l];
                                    (if high { byte >> 4 } else { byte & 15 }) as i32
                                })
                                .collect();
                            let xj = &xb[32 * j..32 * j + 32];
                            let d: i64 = c.iter().zip(xj).map(|(&c, &v)| c as i64 * v as i64).sum();
                            s1 += sc as f64 * d as f64;
                            s2 += mn as f64 * xsum[8 * b + j] as f64;
                        }
                        let (t1, t2) = (blk.d.to_f64() * dx * s1, blk.dmin.to_f64() * dx * s2);
                        a += t1.abs() + t2.abs(); // the magnitudes the f32 sums round at
                        t1 - t2
                    }
                };
                s += term;
                if !matches!(format, BlockFormat::Q4_K) {
                    a += term.abs();
                }
            }
            out.push((s, a));
        }
    }
    out
}

fn int4_weights(rng: &mut StdRng, n: usize, k: usize, group: usize) -> (Vec<i8>, Vec<f32>) {
    let codes = (0..n * k).map(|_| rng.random_range(-8..=7)).collect();
    let scales = (0..n * k / group)
        .map(|_| rng.random::<f32>() * 0.1)
        .collect();
    (codes, scales)
}

fn check(format: BlockFormat, n: usize, k: usize, m: usize, seed: u64, scale_x: f32) {
    let mut rng = StdRng::seed_from_u64(seed);
    let w: Vec<f32> = (0..n * k)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    let x: Vec<f32> = (0..m * k)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale_x)
        .collect();
    let (bytes, int4, packed) = match format {
        BlockFormat::Int4 { group } => {
            let (c, s) = int4_weights(&mut rng, n, k, group);
            let p = PackedBlocks::int4(&c, &s, n, k, group).unwrap();
            assert_eq!(p.to_int4().unwrap(), (c.clone(), s.clone()));
            (Vec::new(), Some((c, s)), p)
        }
        _ => {
            let ty = match format {
                BlockFormat::Q8_0 => GgmlType::Q8_0,
                BlockFormat::Q4_0 => GgmlType::Q4_0,
                BlockFormat::IQ4_NL => GgmlType::IQ4_NL,
                _ => GgmlType::Q4_K,
            };
            let bytes = ggml::quantize(ty, &w).unwrap();
            let p = PackedBlocks::from_ggml(ty, &bytes, n, k).unwrap();
            assert_eq!(p.to_ggml().unwrap(), bytes, "{format:?} round trip");
            (bytes, None, p)
        }
    };
    let want = reference(
        format,
        &bytes,
        int4.as_ref().map(|(c, s)| (c.as_slice(), s.as_slice())),
        n,
        k,
        &x,
        m,
    );
    let mut portable = vec![0f32; m * n];
    packed
        .matmul_with(Isa::Portable, Par::Seq, &x, m, &mut portable)
        .unwrap();
    for (o, (&got, &(s, a))) in portable.iter().zip(&want).enumerate() {
        assert!(
            (got as f64 - s).abs() <= 1e-6 * a + 1e-30,
            "{format:?} output {o}: {got} vs {s} (sum |terms| {a})"
        );
    }
    for isa in Isa::available() {
        for par in [Par::Seq, Par::Rayon(3)] {
            let mut y = vec![0f32; m * n];
            packed.matmul_with(isa, par, &x, m, &mut y).unwrap();
            assert_eq!(y, portable, "{format:?} {isa:?} bit for bit");
        }
    }
}

#[test]
fn every_format_matches_the_written_out_arithmetic_and_the_portable_kernel() {
    for (format, k) in [
        (BlockFormat::Q8_0, 96),
        (BlockFormat::Q4_0, 128),
        (BlockFormat::IQ4_NL, 96),
        (BlockFormat::Int4 { group: 32 }, 96),
        (BlockFormat::Int4 { group: 8 }, 40),
        (BlockFormat::Int4 { group: 128 }, 256),
        (BlockFormat::Q4_K, 512),
    ] {
        for (n, m) in [(1, 1), (17, 3), (40, 2)] {
            check(format, n, k, m, (n * 7 + m) as u64, 1.0);
        }
        check(format, 20, k, 2, 99, 3.0e4); // large activations
    }
}

#[test]
fn extreme_codes_are_exact() {
    // All weights at the most negative code and activations at +-max: the integer sums are exact.
    let (n, k) = (16, 256);
    let codes = vec![-8i8; n * k];
    let packed = PackedBlocks::int4(&codes, &vec![1.0; n * k / 32], n, k, 32).unwrap();
    for sign in [1.0f32, -1.0] {
        let x = vec![sign; k];
        for isa in Isa::available() {
            let mut y = vec![0f32; n];
            packed.matmul_with(isa, Par::Seq, &x, 1, &mut y).unwrap();
            // x quantizes to +-127 with d = 1/127: each block sums -8 * 127 * 32 codes.
            let want = (k / 32) as f32 * (-8.0 * 127.0 * 32.0 * sign) * (1.0 / 127.0);
            assert!(
                y.iter().all(|&v| (v - want).abs() <= 1e-3 * want.abs()),
                "{isa:?} {y:?} vs {want}"
            );
        }
    }
}

#[test]
fn bad_input_is_an_error() {
    let w = ggml::quantize(GgmlType::Q4_0, &[0.5; 64]).unwrap();
    assert!(PackedBlocks::from_ggml(GgmlType::Q4_0, &w, 1, 32).is_err()); // bytes for 2 rows
    assert!(PackedBlocks::from_ggml(GgmlType::Q5_0, &w, 2, 32).is_err()); // no kernel
    assert!(PackedBlocks::from_ggml(GgmlType::Q4_0, &w[..18], 1, 30).is_err()); // not a block multiple
    let mut nan = w.clone();
    nan[0..2].copy_from_slice(&half::f16::NAN.to_le_bytes());
    assert!(PackedBlocks::from_ggml(GgmlType::Q4_0, &nan, 2, 32).is_err());
    let p = PackedBlocks::from_ggml(GgmlType::Q4_0, &w, 2, 32).unwrap();
    let mut y = [0f32; 2];
    assert!(p.matmul(Par::Seq, &[1.0; 31], 1, &mut y).is_err());
    let mut x = [1.0f32; 32];
    x[5] = f32::INFINITY;
    assert!(
        p.matmul(Par::Seq, &x, 1, &mut y)
            .unwrap_err()
            .to_string()
            .contains("index 5")
    );
    assert!(PackedBlocks::int4(&[9; 32], &[1.0], 1, 32, 32).is_err());
    assert!(PackedBlocks::int4(&[1; 32], &[f32::NAN], 1, 32, 32).is_err());
    assert!(PackedBlocks::int4(&[1; 24], &[1.0], 1, 24, 12).is_err()); // group not a multiple of 8
}
