//! Pruning speed on 4096 x 4096 (one thread): L1 unstructured 50%, channel (L2 norm) pruning,
//! 2:4 (N:M), global ranking over 16 tensors. Compare with benches/compare/prune.py (torch,
//! same shapes).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use modelopt_prune::{Amount, L1Magnitude, L2Magnitude, Norm, Pruner, Structure};
use ndarray::{Array2, ArrayD};

/// Deterministic normal-ish weights (sum of uniforms), no external RNG.
fn weights(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array2::from_shape_fn((rows, cols), |_| {
        let mut acc = 0.0f32;
        for _ in 0..4 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            acc += (s >> 40) as f32 / (1u64 << 24) as f32;
        }
        (acc - 2.0) * 0.02
    })
}

fn bench(c: &mut Criterion) {
    let n = 4096;
    let w = weights(n, n, 1);
    let bytes = (n * n * 4) as u64;
    let half = Amount::fraction(0.5).unwrap();
    let mut g = c.benchmark_group("prune_4096x4096");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(bytes));
    let l1 = Pruner::new(L1Magnitude).amount(half);
    g.bench_function("l1_unstructured_50", |b| {
        b.iter(|| black_box(l1.prune(black_box(&w)).unwrap()))
    });
    let l2u = Pruner::new(L2Magnitude).amount(half);
    g.bench_function("l2sq_unstructured_50", |b| {
        b.iter(|| black_box(l2u.prune(black_box(&w)).unwrap()))
    });
    let ch = Pruner::new(L1Magnitude)
        .amount(half)
        .structure(Structure::channels(0, Norm::L2));
    g.bench_function("ln_structured_l2_dim0_50", |b| {
        b.iter(|| black_box(ch.prune(black_box(&w)).unwrap()))
    });
    let ch1 = Pruner::new(L1Magnitude)
        .amount(half)
        .structure(Structure::channels(1, Norm::L2));
    g.bench_function("ln_structured_l2_dim1_50", |b| {
        b.iter(|| black_box(ch1.prune(black_box(&w)).unwrap()))
    });
    let nm = Pruner::new(L1Magnitude).structure(Structure::NM { n: 2, m: 4 });
    g.bench_function("nm_2_4", |b| {
        b.iter(|| black_box(nm.prune(black_box(&w)).unwrap()))
    });
    let parts: Vec<ArrayD<f32>> = (0..16)
        .map(|i| weights(1024, 1024, 10 + i).into_dyn())
        .collect();
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    g.bench_function("global_l1_16x1024x1024_50", |b| {
        b.iter(|| black_box(l1.prune_global(black_box(&views), None).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
