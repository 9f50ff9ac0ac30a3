//! GGML block formats, one thread, a 4096 x 4096 f32 matrix in memory (N(0,1) * 0.02).
//!
//! `cargo bench -p modelopt-quantize --bench ggml -- --warm-up-time 1 --measurement-time 3`
//! Throughput is bytes of f32 input (quantize) or output (dequantize) per second.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use modelopt_quantize::ggml::{self, GgmlType};

const ROWS: usize = 4096;
const COLS: usize = 4096;

/// Seeded normal noise (xorshift64* + Box-Muller), scaled like real weights.
fn weights() -> Vec<f32> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut uniform = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        ((s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..ROWS * COLS / 2)
        .flat_map(|_| {
            let (u, v) = (uniform(), uniform());
            let r = (-2.0 * u.ln()).sqrt() * 0.02;
            let t = std::f64::consts::TAU * v;
            [(r * t.cos()) as f32, (r * t.sin()) as f32]
        })
        .collect()
}

const TYPES: [GgmlType; 9] = [
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::F16,
    GgmlType::BF16,
];

fn bench(c: &mut Criterion) {
    let w = weights();
    let bytes = (w.len() * 4) as u64;
    let mut g = c.benchmark_group("ggml_quantize_4096x4096");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(10);
    for ty in TYPES {
        let mut dst = vec![0u8; ty.row_bytes(w.len()).unwrap_or(0)];
        g.bench_with_input(BenchmarkId::from_parameter(ty.name()), &w, |b, w| {
            b.iter(|| ggml::quantize_row(ty, black_box(w), black_box(&mut dst)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("ggml_dequantize_4096x4096");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(10);
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ] {
        let Ok(q) = ggml::quantize(ty, &w) else {
            continue;
        };
        let mut y = vec![0f32; w.len()];
        g.bench_with_input(BenchmarkId::from_parameter(ty.name()), &q, |b, q| {
            b.iter(|| ggml::dequantize_row(ty, black_box(q), black_box(&mut y)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
