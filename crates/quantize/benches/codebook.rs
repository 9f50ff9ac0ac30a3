//! Codebook quantization, one thread, a 4096 x 4096 f32 matrix (N(0,1) * 0.02).
//!
//! `cargo bench -p modelopt-quantize --bench codebook -- --warm-up-time 1 --measurement-time 3`
//! Throughput is bytes of f32 input (quantize) or output (dequantize) per second. With
//! `MODELOPT_BENCH_INPUT=FILE` (4096 x 4096 little-endian f32, as written by
//! `benches/compare/codebook.py`) the bench uses that matrix; with `MODELOPT_BENCH_CLOCK=cpu` the
//! timings are the thread's CPU time (Linux `/proc/thread-self/schedstat`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use modelopt_quantize::codebook::{Bnb4, CodebookScheme};
use modelopt_tensor_core::Par;
use ndarray::Array2;

const ROWS: usize = 4096;
const COLS: usize = 4096;

/// The matrix named by `MODELOPT_BENCH_INPUT`, else seeded normal noise (xorshift64* +
/// Box-Muller) scaled like real weights.
fn weights() -> Array2<f32> {
    let v: Vec<f32> = if let Some(path) = std::env::var_os("MODELOPT_BENCH_INPUT") {
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("MODELOPT_BENCH_INPUT {}: {e}", path.display()));
        assert_eq!(
            bytes.len(),
            ROWS * COLS * 4,
            "MODELOPT_BENCH_INPUT: not 4096 x 4096 f32"
        );
        bytes
            .as_chunks::<4>()
            .0
            .iter()
            .map(|b| f32::from_le_bytes(*b))
            .collect()
    } else {
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
    };
    Array2::from_shape_vec((ROWS, COLS), v).expect("4096 x 4096")
}

/// Nanoseconds this thread has run on a CPU (first field of `/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Times `iters` calls of `f` in CPU time when `cpu` (and the platform tells it), else wall time.
fn time_iters(cpu: bool, iters: u64, mut f: impl FnMut()) -> Duration {
    let (t0, c0) = (Instant::now(), thread_cpu_ns());
    for _ in 0..iters {
        f();
    }
    match (cpu, c0, thread_cpu_ns()) {
        (true, Some(a), Some(b)) => Duration::from_nanos(b.saturating_sub(a)),
        _ => t0.elapsed(),
    }
}

fn bench(c: &mut Criterion) {
    let cpu = std::env::var("MODELOPT_BENCH_CLOCK").is_ok_and(|v| v == "cpu");
    let only = std::env::var("MODELOPT_BENCH_ONLY").unwrap_or_default();
    let w = weights();
    let bytes = (w.len() * 4) as u64;
    let bnb = [
        ("nf4", Bnb4::nf4()),
        ("fp4", Bnb4::fp4()),
        ("nf4_double", Bnb4::nf4().double_quant(true)),
    ];
    if !only.contains("kmeans") {
        let mut g = c.benchmark_group("codebook_quantize_4096x4096");
        g.throughput(Throughput::Bytes(bytes));
        g.sample_size(10);
        for (name, s) in &bnb {
            let s = s.check().expect("valid");
            g.bench_with_input(BenchmarkId::from_parameter(name), &w, |b, w| {
                b.iter_custom(|iters| {
                    time_iters(cpu, iters, || drop(black_box(s.quantize(black_box(w)))))
                })
            });
        }
        g.finish();
        let mut g = c.benchmark_group("codebook_dequantize_4096x4096");
        g.throughput(Throughput::Bytes(bytes));
        g.sample_size(10);
        for (name, s) in &bnb {
            let q = s.quantize(&w).expect("finite");
            let mut y = vec![0f32; w.len()];
            g.bench_with_input(BenchmarkId::from_parameter(name), &q, |b, q| {
                b.iter_custom(|iters| {
                    time_iters(cpu, iters, || {
                        let _ = black_box(q.dequantize_into(black_box(&mut y), Par::Seq));
                    })
                })
            });
        }
        g.finish();
    }
    let mut g = c.benchmark_group("codebook_learn_4096x4096");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(10);
    let learned = [
        (
            "kmeans4_per_channel",
            CodebookScheme::kmeans(4).per_channel(0),
        ),
        ("learned_nf4_block64", CodebookScheme::learned_nf4(4, 64)),
    ];
    for (name, s) in &learned {
        let s = s.check().expect("valid");
        g.bench_with_input(BenchmarkId::from_parameter(name), &w, |b, w| {
            b.iter_custom(|iters| {
                time_iters(cpu, iters, || drop(black_box(s.quantize(black_box(w)))))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
