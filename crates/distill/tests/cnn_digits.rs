//! The 8x8 digits work as 1x8x8 images: a small CNN (`Sequential`) trains with the same `Trainer`,
//! `Dataset` and optimizers as the dense networks, and learns.

use modelopt_distill::{
    Dataset, Digits, Hooks, KdLoss, LrSchedule, SequentialStudent, Trainer, accuracy,
};
use modelopt_nn::{Activation, Adam, Conv2d, Dense, Init, Layer, MaxPool2d, Sequential};
use rand::SeedableRng;
use rand::rngs::StdRng;

#[test]
fn a_small_cnn_learns_the_8x8_digits_through_the_trainer() {
    let digits = Digits::load_bundled().unwrap();
    let split = digits.split(0.15, 0.2, 0).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let net = Sequential::builder(&[1, 8, 8])
        .push(Layer::Conv2d(
            Conv2d::builder(1, 8, 3).padding(1).build(&mut rng).unwrap(),
        ))
        .push(Layer::Activation(Activation::Relu))
        .push(Layer::MaxPool2d(MaxPool2d::new(2, 2, 0).unwrap()))
        .push(Layer::Flatten)
        .push(Layer::Linear(
            Dense::new(8 * 4 * 4, 10, Init::HeNormal, &mut rng).unwrap(),
        ))
        .build()
        .unwrap();
    let mut student = SequentialStudent::new(net, Adam::builder(3e-3).build().unwrap());
    // alpha = 1: cross-entropy on the labels only; the stored "teacher" logits are unused zeros.
    let zeros = ndarray::Array2::<f32>::zeros((split.train.len(), 10));
    let train = Dataset::new(split.train.inputs.view(), &split.train.labels)
        .unwrap()
        .with_teacher_logits(zeros.view())
        .unwrap();
    let trainer = Trainer::builder()
        .epochs(4)
        .batch_size(32)
        .learning_rate(3e-3)
        .schedule(LrSchedule::Constant)
        .seed(0)
        .build()
        .unwrap();
    let loss = KdLoss::new(1.0, 1.0).unwrap();
    trainer
        .fit(&mut student, &loss, None, &train, None, Hooks::new())
        .unwrap();
    let out = student.network.predict(&split.test.inputs).unwrap();
    let acc = accuracy(&out, &split.test.labels).unwrap();
    assert!(acc > 0.85, "test accuracy {acc}");
}
