//! Sparse x dense products on 4096 x 4096 against dense f32 ndarray `dot`, at batch 1 and 16,
//! over unstructured sparsities (CSR, bitmask) and 2:4. The crossover sparsity of a form is the
//! lowest one at which it beats `dense`.
//!
//! `cargo bench -p modelopt-prune --bench sparse_kernels -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use modelopt_prune::sparse::{Bitmask, Csr, Sparse24, SparseMatrix};
use modelopt_prune::{Amount, L1Magnitude, Pruner, Structure};
use ndarray::{Array1, Array2, Ix2};

fn noise(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array2::from_shape_fn((rows, cols), |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    })
}

fn pruned(w: &Array2<f32>, structure: Structure, sparsity: f64) -> Array2<f32> {
    let m = Pruner::new(L1Magnitude)
        .amount(Amount::fraction(sparsity).unwrap())
        .structure(structure)
        .prune(w)
        .unwrap();
    m.apply(w).unwrap().into_dimensionality::<Ix2>().unwrap()
}

fn bench(c: &mut Criterion) {
    let n = 4096;
    let w = noise(n, n, 1);
    let x1: Array1<f32> = noise(1, n, 2).row(0).to_owned();
    let x16 = noise(n, 16, 3);
    for batch in [1usize, 16] {
        let mut g = c.benchmark_group(format!("spmm_4096_batch{batch}"));
        g.sample_size(10);
        g.throughput(Throughput::Bytes((n * n * 4) as u64));
        let run =
            |g: &mut criterion::BenchmarkGroup<'_, _>, id: BenchmarkId, m: &dyn SparseMatrix| {
                if batch == 1 {
                    g.bench_function(id, |b| {
                        b.iter(|| black_box(m.matvec(black_box(&x1)).unwrap()))
                    });
                } else {
                    g.bench_function(id, |b| {
                        b.iter(|| black_box(m.matmul(black_box(&x16)).unwrap()))
                    });
                }
            };
        if batch == 1 {
            g.bench_function("dense", |b| b.iter(|| black_box(w.dot(black_box(&x1)))));
        } else {
            g.bench_function("dense", |b| b.iter(|| black_box(w.dot(black_box(&x16)))));
        }
        for sp in [0.5, 0.7, 0.8, 0.9, 0.95] {
            let ws = pruned(&w, Structure::Unstructured, sp);
            let pct = (sp * 100.0).round() as u32;
            run(
                &mut g,
                BenchmarkId::new("csr", pct),
                &Csr::from_dense(&ws).unwrap(),
            );
            run(
                &mut g,
                BenchmarkId::new("bitmask", pct),
                &Bitmask::from_dense(&ws).unwrap(),
            );
        }
        let w24 = pruned(&w, Structure::n_m(2, 4).unwrap(), 0.0);
        run(
            &mut g,
            BenchmarkId::new("sparse24", 50),
            &Sparse24::from_dense(&w24).unwrap(),
        );
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
