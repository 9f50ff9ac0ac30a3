//! Uniform quantization throughput on a 4096x4096 f32 weight, scale computation included.
//!
//! `cargo bench -p modelopt-quantize --bench uniform -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use modelopt_quantize::QuantScheme;
use ndarray::Array2;

/// A deterministic heavy-ish tailed matrix (sum of uniforms, scaled per row).
fn weights(rows: usize, cols: usize) -> Array2<f32> {
    let mut state = 0x9E37_79B9u32;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state as f32 / u32::MAX as f32 - 0.5
    };
    Array2::from_shape_fn((rows, cols), |(r, _)| {
        (next() + next() + next()) * 0.02 * (1.0 + (r % 7) as f32)
    })
}

fn uniform(c: &mut Criterion) {
    let (rows, cols) = (4096, 4096);
    let w = weights(rows, cols);
    let mut g = c.benchmark_group("uniform_4096x4096");
    g.throughput(Throughput::Bytes((rows * cols * 4) as u64));
    g.sample_size(20);
    let cases = [
        ("int8_sym_per_channel", QuantScheme::int8().per_channel(0)),
        (
            "int4_sym_group32_packed",
            QuantScheme::int4().per_group(1, 32),
        ),
        (
            "int4_sym_group128_packed",
            QuantScheme::int4().per_group(1, 128),
        ),
        (
            "int8_affine_per_channel",
            QuantScheme::int8().affine().per_channel(0),
        ),
        (
            "torch_qint8_sym_per_channel",
            QuantScheme::torch_qint8_symmetric().per_channel(0),
        ),
    ];
    for (name, scheme) in cases {
        let s = scheme.check().expect("valid scheme");
        g.bench_function(name, |b| {
            b.iter(|| s.quantize(black_box(&w)).expect("finite input"))
        });
    }
    g.finish();
}

criterion_group!(benches, uniform);
criterion_main!(benches);
