//! Criterion: one training step (forward + backward + SGD) of the distillation example's teacher
//! CNN at batch 64, and the forward pass of its 64->128 3x3 convolution alone. Throughput in bytes
//! of f32 input per second. The side-by-side comparison with torch is `benches/compare/conv.py`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use modelopt_nn::{
    Activation, Conv2d, Dense, Dropout, Init, Layer, MaxPool2d, Optimizer, Sequential, Sgd,
    softmax_cross_entropy,
};
use ndarray::{Array2, Array4};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn teacher(rng: &mut StdRng) -> Sequential<f32> {
    Sequential::builder(&[1, 28, 28])
        .push(Layer::Conv2d(Conv2d::builder(1, 64, 3).build(rng).unwrap()))
        .push(Layer::Activation(Activation::Relu))
        .push(Layer::MaxPool2d(MaxPool2d::new(2, 2, 0).unwrap()))
        .push(Layer::Conv2d(
            Conv2d::builder(64, 128, 3).build(rng).unwrap(),
        ))
        .push(Layer::Activation(Activation::Relu))
        .push(Layer::MaxPool2d(MaxPool2d::new(2, 2, 0).unwrap()))
        .push(Layer::Flatten)
        .push(Layer::Dropout(Dropout::new(0.3, 1).unwrap()))
        .push(Layer::Linear(
            Dense::new(3200, 10, Init::HeNormal, rng).unwrap(),
        ))
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(0);
    let mut net = teacher(&mut rng);
    let mut sgd = Sgd::builder(0.01).momentum(0.9).build().unwrap();
    let x = Array2::from_shape_simple_fn((64, 784), || rng.random::<f32>());
    let labels: Vec<usize> = (0..64).map(|i| i % 10).collect();
    let mut group = c.benchmark_group("conv");
    group.sample_size(10);
    group.throughput(Throughput::Bytes((x.len() * 4) as u64));
    group.bench_function("teacher_step_b64", |b| {
        b.iter(|| {
            let logits = net.forward(&x).unwrap();
            let (_, grad) = softmax_cross_entropy(&logits, &labels).unwrap();
            net.backward(&grad).unwrap();
            sgd.step(&mut net).unwrap();
        })
    });
    let conv = Conv2d::<f32>::builder(64, 128, 3).build(&mut rng).unwrap();
    let maps = Array4::from_shape_simple_fn((64, 64, 13, 13), || rng.random::<f32>());
    group.throughput(Throughput::Bytes((maps.len() * 4) as u64));
    group.bench_function("conv64x128_forward_b64", |b| {
        b.iter(|| conv.forward(&maps).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
