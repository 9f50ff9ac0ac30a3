//! GPTQ at MiniLM's layer sizes, one thread: the Hessian accumulation of 2048 tokens and the
//! quantization of one weight (`[out, in]` = 384 x 384, 1536 x 384, 384 x 1536) to Q4_0.
//!
//! `cargo bench -p modelopt-quantize --bench gptq -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use modelopt_quantize::ggml::GgmlType;
use modelopt_quantize::gptq::{Gptq, HessianAccumulator};
use ndarray::Array2;

fn noise(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut s = seed | 1;
    Array2::from_shape_fn((rows, cols), |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    })
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("gptq");
    group.sample_size(10);
    for (out, inp) in [(384, 384), (1536, 384), (384, 1536)] {
        let x = noise(2048, inp, 7);
        let w = noise(out, inp, 11);
        group.bench_function(
            BenchmarkId::new("hessian_2048_tokens", format!("{out}x{inp}")),
            |b| {
                b.iter(|| {
                    let mut acc = HessianAccumulator::new(inp);
                    acc.add_batch(&x).unwrap();
                    black_box(acc)
                })
            },
        );
        let mut acc = HessianAccumulator::new(inp);
        acc.add_batch(&x).unwrap();
        let h = acc.finish().unwrap();
        let g = Gptq::new().check().unwrap();
        group.bench_function(BenchmarkId::new("q4_0", format!("{out}x{inp}")), |b| {
            b.iter(|| black_box(g.quantize_ggml(&w, &h, GgmlType::Q4_0).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
