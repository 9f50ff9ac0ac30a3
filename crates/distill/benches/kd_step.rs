//! One distillation training step on one thread: teacher 784-1200-1200-10 (forward only) ->
//! student 784-800-10 or 784-64-10, batch 128, SGD with momentum, Hinton KD at T = 4 (10% CE,
//! 90% soft — torch's bench spells the same loss as `alpha = 0.9` on the soft term), random data.
//! Throughput is in samples (criterion's "elements"); compare with `benches/compare/kd.py`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use modelopt_distill::{KdLoss, MlpStudent, Teacher, distill_step};
use modelopt_nn::{Mlp, Sgd};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const BATCH: usize = 128;

fn kd_step(c: &mut Criterion) {
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

criterion_group!(benches, kd_step);
criterion_main!(benches);
