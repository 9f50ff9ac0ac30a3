//! One distillation training step on one thread: teacher 784-1200-1200-10 (forward only) ->
//! student 784-800-10 or 784-64-10, batch 128, SGD with momentum, Hinton KD at T = 4 (10% CE,
//! 90% soft — torch's bench spells the same loss as `alpha = 0.9` on the soft term), random data.
//! Throughput is in samples (criterion's "elements"); compare with `benches/compare/kd.py`.
//!
//! `KD_CLOCK=cpu` measures this thread's CPU time instead of wall time: on a shared machine the time
//! the benchmark spends descheduled is then not counted (torch's side does the same with
//! `time.thread_time`).

use std::hint::black_box;

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use modelopt_distill::{KdLoss, MlpStudent, Teacher, distill_step};
use modelopt_nn::{Mlp, Sgd};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const BATCH: usize = 128;

/// The calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`).
struct ThreadCpu;

impl Measurement for ThreadCpu {
    type Intermediate = cpu_time::ThreadTime;
    type Value = Duration;
    fn start(&self) -> Self::Intermediate {
        cpu_time::ThreadTime::now()
    }
    fn end(&self, start: Self::Intermediate) -> Self::Value {
        start.elapsed()
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Nanoseconds of CPU time, shown like criterion's wall-time formatter (so `kd.py` parses both).
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical_ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match typical_ns {
            t if t < 1e3 => (1.0, "ns"),
            t if t < 1e6 => (1e-3, "µs"),
            t if t < 1e9 => (1e-6, "ms"),
            _ => (1e-9, "s"),
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }
    fn scale_throughputs(
        &self,
        typical_ns: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let (count, units) = match *throughput {
            Throughput::Elements(n) | Throughput::ElementsAndBytes { elements: n, .. } => {
                (n as f64, [" elem/s", "Kelem/s", "Melem/s", "Gelem/s"])
            }
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => {
                (n as f64, ["  B/s", "KB/s", "MB/s", "GB/s"])
            }
            Throughput::Bits(n) => (n as f64, ["  b/s", "Kb/s", "Mb/s", "Gb/s"]),
        };
        let per_second = count * 1e9 / typical_ns;
        let (denominator, unit) = match per_second {
            r if r < 1e3 => (1.0, units[0]),
            r if r < 1e6 => (1e3, units[1]),
            r if r < 1e9 => (1e6, units[2]),
            _ => (1e9, units[3]),
        };
        values
            .iter_mut()
            .for_each(|v| *v = count * 1e9 / *v / denominator);
        unit
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn kd_step<M: Measurement>(c: &mut Criterion<M>) {
    let mut rng = StdRng::seed_from_u64(0);
    let teacher = Mlp::<f32>::builder(&[784, 1200, 1200, 10])
        .seed(1)
        .build()
        .unwrap();
    let batches: Vec<(Array2<f32>, Vec<usize>)> = (0..4)
        .map(|_| {
            let x = Array2::from_shape_simple_fn((BATCH, 784), || rng.random::<f32>() * 2.0 - 1.0);
            let y = (0..BATCH).map(|_| rng.random_range(0..10)).collect();
            (x, y)
        })
        .collect();
    let kd = KdLoss::new(4.0, 0.1).unwrap();
    let mut group = c.benchmark_group("kd_step");
    group.throughput(Throughput::Elements(BATCH as u64));
    for hidden in [800usize, 64] {
        let mut student = MlpStudent::new(
            Mlp::<f32>::builder(&[784, hidden, 10])
                .seed(2)
                .build()
                .unwrap(),
            Sgd::builder(0.01).momentum(0.9).build().unwrap(),
        );
        let mut i = 0;
        group.bench_function(
            BenchmarkId::new("teacher_784-1200-1200-10_student_784-h-10", hidden),
            |b| {
                b.iter(|| {
                    i = (i + 1) % batches.len();
                    let (x, y) = &batches[i];
                    let t = Teacher::predict(&teacher, x).unwrap();
                    black_box(
                        distill_step(&mut student, &kd, x, &t, y, 0.01)
                            .unwrap()
                            .0
                            .total,
                    )
                })
            },
        );
    }
    group.bench_function("teacher_forward_only", |b| {
        b.iter(|| black_box(Teacher::predict(&teacher, &batches[0].0).unwrap()))
    });
    group.finish();
}

criterion_group!(wall, kd_step);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = kd_step
}

fn main() {
    if std::env::var("KD_CLOCK").as_deref() == Ok("cpu") {
        cpu();
    } else {
        wall();
    }
    Criterion::default().configure_from_args().final_summary();
}
