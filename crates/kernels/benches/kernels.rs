//! Quantized products of a 4096 x 4096 weight, one thread: int8 W8A8 GEMV / GEMM on every
//! instruction set this CPU has, and the weight-only block formats at batch 1.
//!
//! `cargo bench -p modelopt-kernels --bench kernels -- --warm-up-time 1 --measurement-time 3`
//! Throughput is bytes of packed weights per second (what a GEMV streams). With
//! `MODELOPT_BENCH_CLOCK=cpu` the timings are the thread's CPU time (Linux
//! `/proc/thread-self/schedstat`), which a busy shared machine disturbs less.
//! `benches/compare/qlinear.py` runs torch beside `examples/qlinear.rs` for the comparison.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use modelopt_kernels::{
    ActScale, Epilogue, Isa, PackedBlocks, PackedI8, Par, QuantizedActivations, w8a8_with,
};
use modelopt_quantize::ggml::{self, GgmlType};

const N: usize = 4096;
const K: usize = 4096;

fn noise(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            ((s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
                * 0.04
        })
        .collect()
}

fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn time_iters(iters: u64, mut f: impl FnMut()) -> Duration {
    let cpu = std::env::var("MODELOPT_BENCH_CLOCK").is_ok_and(|v| v == "cpu");
    let (t0, c0) = (Instant::now(), thread_cpu_ns());
    for _ in 0..iters {
        f();
    }
    match (cpu, c0, thread_cpu_ns()) {
        (true, Some(a), Some(b)) => Duration::from_nanos(b - a),
        _ => t0.elapsed(),
    }
}

fn w8a8(c: &mut Criterion) {
    let w = noise(N * K, 1);
    let codes: Vec<i8> = w
        .iter()
        .map(|v| (v / 0.02 * 127.0).round().clamp(-127.0, 127.0) as i8)
        .collect();
    let packed = PackedI8::new(&codes, N, K).unwrap();
    let epi = Epilogue::new(vec![0.02 / 127.0; N]).unwrap();
    let mut g = c.benchmark_group("w8a8_4096");
    g.throughput(Throughput::Bytes((N * K) as u64));
    for batch in [1usize, 16, 64] {
        let x = QuantizedActivations::quantize(&noise(batch * K, 2), batch, K, ActScale::PerToken)
            .unwrap();
        let mut out = vec![0f32; batch * N];
        for isa in Isa::available() {
            if batch > 1 && isa == Isa::Portable {
                continue; // minutes per sample
            }
            g.bench_with_input(
                BenchmarkId::new(format!("{isa:?}"), batch),
                &batch,
                |b, _| {
                    b.iter_custom(|iters| {
                        time_iters(iters, || {
                            w8a8_with(isa, Par::Seq, &x, &packed, &epi, black_box(&mut out))
                                .unwrap()
                        })
                    })
                },
            );
        }
    }
    g.finish();
}

fn blocks(c: &mut Criterion) {
    let w = noise(N * K, 3);
    let x = noise(K, 4);
    let mut g = c.benchmark_group("weight_only_gemv_4096");
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K] {
        let packed = PackedBlocks::from_ggml(ty, &ggml::quantize(ty, &w).unwrap(), N, K).unwrap();
        g.throughput(Throughput::Bytes(packed.packed_bytes() as u64));
        let mut out = vec![0f32; N];
        for isa in Isa::available() {
            g.bench_with_input(
                BenchmarkId::new(format!("{isa:?}"), ty.name()),
                &ty,
                |b, _| {
                    b.iter_custom(|iters| {
                        time_iters(iters, || {
                            packed
                                .matmul_with(isa, Par::Seq, &x, 1, black_box(&mut out))
                                .unwrap()
                        })
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, w8a8, blocks);
criterion_main!(benches);
