//! Shared by the CNN examples: the networks, shifted-batch training with cached teacher logits
//! (`modelopt::distill::fit_shifted`).

#![allow(dead_code)] // each example uses part of it

use modelopt::distill::{KdLoss, Mnist, SequentialStudent, ShiftedSet, Shifts, fit_shifted};
use modelopt::nn::{
    Activation, Adam, BatchNorm2d, Conv2d, Dense, Dropout, Init, Layer, MaxPool2d, Sequential,
};
use ndarray::Array2;
use rand::SeedableRng;
use rand::rngs::StdRng;

pub type Error = Box<dyn std::error::Error>;

/// Conv(1->c1, 3x3) ReLU MaxPool(2) Conv(c1->c2, 3x3) ReLU MaxPool(2) Flatten [Dropout] Linear(->10),
/// named like torch's `nn.Sequential` of the same modules (`0.weight`, `3.weight`, `8.weight`).
pub fn cnn(c1: usize, c2: usize, dropout: f64, seed: u64) -> Result<Sequential<f32>, Error> {
    cnn_with(c1, c2, dropout, false, seed)
}

/// [`cnn`], optionally with a batch norm after each convolution (`Conv BN ReLU Pool`, twice).
pub fn cnn_with(
    c1: usize,
    c2: usize,
    dropout: f64,
    batch_norm: bool,
    seed: u64,
) -> Result<Sequential<f32>, Error> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut b = Sequential::builder(&Mnist::IMAGE_SHAPE);
    for (cin, cout) in [(1, c1), (c1, c2)] {
        b = b.push(Layer::Conv2d(
            Conv2d::builder(cin, cout, 3).build(&mut rng)?,
        ));
        if batch_norm {
            b = b.push(Layer::BatchNorm2d(BatchNorm2d::new(cout)?));
        }
        b = b
            .push(Layer::Activation(Activation::Relu))
            .push(Layer::MaxPool2d(MaxPool2d::new(2, 2, 0)?));
    }
    b = b.push(Layer::Flatten);
    if dropout > 0.0 {
        b = b.push(Layer::Dropout(Dropout::new(dropout, seed ^ 0xd00d)?));
    }
    Ok(b.push(Layer::Linear(Dense::new(
        c2 * 5 * 5,
        10,
        Init::HeNormal,
        &mut rng,
    )?))
    .build()?)
}

/// Train `student` for `epochs` on batches of 64 shifted by up to 2 pixels with `loss` against the
/// cached teacher logits (`teacher[shift][image]`; ignored when the loss is cross-entropy only).
pub fn train(
    student: &mut SequentialStudent<f32, Adam<f32>>,
    loss: &KdLoss<f32>,
    inputs: &Array2<f32>,
    labels: &[usize],
    teacher: Option<&[Array2<f32>]>,
    epochs: usize,
    seed: u64,
) -> Result<(), Error> {
    let shifts = Shifts::new(Mnist::IMAGE_SHAPE, 2)?;
    let set = ShiftedSet {
        inputs,
        labels,
        shifts: &shifts,
        teacher_logits: teacher,
    };
    fit_shifted(student, loss, &set, epochs, 64, 1e-3, seed, None)?;
    Ok(())
}

/// The teacher, trained on the labels (cross-entropy, shifted batches).
pub fn train_teacher(
    inputs: &Array2<f32>,
    labels: &[usize],
    epochs: usize,
) -> Result<Sequential<f32>, Error> {
    let net = cnn(64, 128, 0.3, 0)?;
    let mut student = SequentialStudent::new(net, Adam::builder(1e-3).build()?);
    train(
        &mut student,
        &KdLoss::new(1.0, 1.0)?,
        inputs,
        labels,
        None,
        epochs,
        0,
    )?;
    let mut net = student.network;
    net.set_training(false);
    Ok(net)
}

/// Teacher logits of every training image under every shift of up to 2 pixels,
/// `[shift][image, class]`.
pub fn teacher_logits(
    teacher: &Sequential<f32>,
    inputs: &Array2<f32>,
) -> Result<Vec<Array2<f32>>, Error> {
    Ok(Shifts::new(Mnist::IMAGE_SHAPE, 2)?.teacher_logits(teacher, inputs)?)
}
