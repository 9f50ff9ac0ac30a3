//! GGML block formats, one thread, a 4096 x 4096 f32 matrix in memory (N(0,1) * 0.02).
//!
//! `cargo bench -p modelopt-quantize --bench ggml -- --warm-up-time 1 --measurement-time 3`
//! Throughput is bytes of f32 input (quantize) or output (dequantize) per second.
//! With `MODELOPT_BENCH_INPUT=FILE` (4096 x 4096 little-endian f32, as written by
//! `benches/compare/ggml.py`) the bench quantizes that matrix instead of its own noise, so the
//! comparison script times modelopt and gguf-py on the same values. With
//! `MODELOPT_BENCH_CLOCK=cpu` the quantize timings are the thread's CPU time (Linux
//! `/proc/thread-self/schedstat`) instead of wall time, which a busy shared machine disturbs less.
//! The `ggml_quantize_imatrix` group times the importance-weighted quantizers
//! (`quantize_rows_imatrix`, one thread) on the same matrix.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use modelopt_quantize::ggml::{self, GgmlType};

const ROWS: usize = 4096;
const COLS: usize = 4096;

/// The matrix named by `MODELOPT_BENCH_INPUT`, else seeded normal noise (xorshift64* +
/// Box-Muller) scaled like real weights.
fn weights() -> Vec<f32> {
    if let Some(path) = std::env::var_os("MODELOPT_BENCH_INPUT") {
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("MODELOPT_BENCH_INPUT {}: {e}", path.display()));
        assert_eq!(
            bytes.len(),
            ROWS * COLS * 4,
            "MODELOPT_BENCH_INPUT: not 4096 x 4096 f32"
        );
        return bytes
            .as_chunks::<4>()
            .0
            .iter()
            .map(|b| f32::from_le_bytes(*b))
            .collect();
    }
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

const TYPES: [GgmlType; 14] = [
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
    GgmlType::F16,
    GgmlType::BF16,
];

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
    let w = weights();
    let bytes = (w.len() * 4) as u64;
    let mut g = c.benchmark_group("ggml_quantize_4096x4096");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(10);
    for ty in TYPES.into_iter().filter(|t| t.is_supported()) {
        let mut dst = vec![0u8; ty.row_bytes(w.len()).unwrap_or(0)];
        g.bench_with_input(BenchmarkId::from_parameter(ty.name()), &w, |b, w| {
            b.iter_custom(|iters| {
                time_iters(cpu, iters, || {
                    let _ = black_box(ggml::quantize_row(ty, black_box(w), black_box(&mut dst)));
                })
            })
        });
    }
    g.finish();

    // Importance-weighted (llama-quantize --imatrix): one weight per column, lognormal-like
    // with every 100th column x100, as real activation statistics look.
    let importance: Vec<f32> = (0..COLS)
        .map(|i| {
            let u = ((i * 2_654_435_761) % 1000) as f32 / 1000.0;
            (2.0 * u - 1.0).exp() * if i % 100 == 7 { 100.0 } else { 1.0 }
        })
        .collect();
    let mut g = c.benchmark_group("ggml_quantize_imatrix_4096x4096");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(10);
    for ty in TYPES.into_iter().filter(|t| t.uses_importance()) {
        let mut dst = vec![0u8; ty.row_bytes(w.len()).unwrap_or(0)];
        g.bench_with_input(BenchmarkId::from_parameter(ty.name()), &w, |b, w| {
            b.iter_custom(|iters| {
                time_iters(cpu, iters, || {
                    let _ = black_box(ggml::quantize_rows_imatrix(
                        ty,
                        black_box(w),
                        COLS,
                        &importance,
                        black_box(&mut dst),
                        ggml::Par::Seq,
                    ));
                })
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("ggml_dequantize_4096x4096");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(10);
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::IQ4_NL,
        GgmlType::IQ4_XS,
    ] {
        let Ok(q) = ggml::quantize(ty, &w) else {
            continue;
        };
        let mut y = vec![0f32; w.len()];
        g.bench_with_input(BenchmarkId::from_parameter(ty.name()), &q, |b, q| {
            b.iter_custom(|iters| {
                time_iters(cpu, iters, || {
                    let _ = black_box(ggml::dequantize_row(ty, black_box(q), black_box(&mut y)));
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
