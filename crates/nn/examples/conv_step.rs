//! One training step (forward + backward + SGD) of the teacher CNN of the distillation example
//! (Conv 1->64 3x3, ReLU, MaxPool 2, Conv 64->128 3x3, ReLU, MaxPool 2, Dropout 0.3, Linear 3200->10)
//! at batch 64 on MNIST-sized random images, one thread. Prints the median thread CPU time per step
//! over `reps` runs of `steps` steps as JSON (what `benches/compare/conv.py` reads).
//!
//! `cargo run --release -p modelopt-nn --example conv_step -- [steps] [reps]`

use modelopt_nn::{
    Activation, Conv2d, Dense, Dropout, Init, Layer, MaxPool2d, NnError, Optimizer, Sequential,
    Sgd, softmax_cross_entropy,
};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn teacher(rng: &mut StdRng) -> Result<Sequential<f32>, NnError> {
    Sequential::builder(&[1, 28, 28])
        .push(Layer::Conv2d(Conv2d::builder(1, 64, 3).build(rng)?))
        .push(Layer::Activation(Activation::Relu))
        .push(Layer::MaxPool2d(MaxPool2d::new(2, 2, 0)?))
        .push(Layer::Conv2d(Conv2d::builder(64, 128, 3).build(rng)?))
        .push(Layer::Activation(Activation::Relu))
        .push(Layer::MaxPool2d(MaxPool2d::new(2, 2, 0)?))
        .push(Layer::Flatten)
        .push(Layer::Dropout(Dropout::new(0.3, 1)?))
        .push(Layer::Linear(Dense::new(3200, 10, Init::HeNormal, rng)?))
        .build()
}

fn main() -> Result<(), NnError> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (steps, reps) = (
        args.first().copied().unwrap_or(10),
        args.get(1).copied().unwrap_or(5),
    );
    let mut rng = StdRng::seed_from_u64(0);
    let mut net = teacher(&mut rng)?;
    let mut sgd = Sgd::builder(0.01).momentum(0.9).build()?;
    let xs: Vec<Array2<f32>> = (0..4)
        .map(|_| Array2::from_shape_simple_fn((64, 784), || rng.random::<f32>()))
        .collect();
    let labels: Vec<usize> = (0..64).map(|i| i % 10).collect();
    let mut step = |i: usize| -> Result<(), NnError> {
        let logits = net.forward(&xs[i % 4])?;
        let (_, grad) = softmax_cross_entropy(&logits, &labels)?;
        net.backward(&grad)?;
        sgd.step(&mut net)
    };
    step(0)?; // warm-up
    let mut times = Vec::new();
    for _ in 0..reps {
        let start = cpu_time::ThreadTime::now();
        for i in 0..steps {
            step(i)?;
        }
        times.push(start.elapsed().as_secs_f64() / steps as f64);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"ms_per_step\": {:.3}, \"min_ms\": {:.3}}}",
        1e3 * times[times.len() / 2],
        1e3 * times[0]
    );
    Ok(())
}
