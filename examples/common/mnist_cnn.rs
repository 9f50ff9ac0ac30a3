//! Shared by the CNN examples: the networks, shifted-batch training with cached teacher logits.

use modelopt::distill::{KdLoss, Mnist, SequentialStudent, distill_step};
use modelopt::nn::{
    Activation, Adam, BatchNorm2d, Conv2d, Dense, Dropout, Init, Layer, MaxPool2d, MiniBatches,
    Sequential,
};
use ndarray::{Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

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

/// The 25 shifts `(dy, dx)` in `-2..=2` squared.
pub fn shifts() -> Vec<(i32, i32)> {
    (-2..=2)
        .flat_map(|dy| (-2..=2).map(move |dx| (dy, dx)))
        .collect()
}

/// Image `src` (28x28, row-major) moved by `(dy, dx)` into `dst`, zero fill.
pub fn shift_into(src: &[f32], dst: &mut [f32], (dy, dx): (i32, i32)) {
    for r in 0..28i32 {
        for c in 0..28i32 {
            let (sr, sc) = (r - dy, c - dx);
            dst[(r * 28 + c) as usize] = if (0..28).contains(&sr) && (0..28).contains(&sc) {
                src[(sr * 28 + sc) as usize]
            } else {
                0.0
            };
        }
    }
}

/// A training batch: rows `idx` of `inputs`, each under a random shift; returns the shift ids.
pub fn shifted_batch(
    inputs: &ArrayView2<'_, f32>,
    idx: &[usize],
    rng: &mut StdRng,
    shift_table: &[(i32, i32)],
) -> (Array2<f32>, Vec<usize>) {
    let mut x = Array2::zeros((idx.len(), 784));
    let mut ids = Vec::with_capacity(idx.len());
    for (row, &i) in idx.iter().enumerate() {
        let s = rng.random_range(0..shift_table.len());
        ids.push(s);
        let src = inputs.row(i);
        let mut dst = x.row_mut(row);
        shift_into(
            src.as_slice().unwrap_or(&src.to_vec()),
            dst.as_slice_mut().expect("fresh rows are contiguous"),
            shift_table[s],
        );
    }
    (x, ids)
}

/// Train `student` for `epochs` on shifted batches with `loss` against the cached teacher logits
/// (`teacher[shift][image]`; ignored when the loss is cross-entropy only).
pub fn train(
    student: &mut SequentialStudent<f32, Adam<f32>>,
    loss: &KdLoss<f32>,
    inputs: &Array2<f32>,
    labels: &[usize],
    teacher: Option<&[Array2<f32>]>,
    epochs: usize,
    seed: u64,
) -> Result<(), Error> {
    let table = shifts();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut batches = MiniBatches::new(labels.len(), 64, seed)?;
    for _ in 0..epochs {
        for idx in batches.epoch() {
            let (x, ids) = shifted_batch(&inputs.view(), idx, &mut rng, &table);
            let y: Vec<usize> = idx.iter().map(|&i| labels[i]).collect();
            let t = match teacher {
                Some(t) => Array2::from_shape_fn((idx.len(), 10), |(r, c)| t[ids[r]][[idx[r], c]]),
                None => Array2::zeros((idx.len(), 10)),
            };
            distill_step(student, loss, &x, &t, &y, 1e-3)?;
        }
    }
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

/// Teacher logits of every training image under every shift, `[shift][image, class]`.
pub fn teacher_logits(
    teacher: &Sequential<f32>,
    inputs: &Array2<f32>,
) -> Result<Vec<Array2<f32>>, Error> {
    let mut out = Vec::new();
    for s in shifts() {
        let mut shifted = Array2::zeros(inputs.raw_dim());
        for (src, mut dst) in inputs.rows().into_iter().zip(shifted.rows_mut()) {
            let src = src.to_vec();
            shift_into(&src, dst.as_slice_mut().expect("contiguous"), s);
        }
        let mut logits = Array2::zeros((inputs.nrows(), 10));
        for (chunk, mut o) in shifted
            .axis_chunks_iter(ndarray::Axis(0), 256)
            .zip(logits.axis_chunks_iter_mut(ndarray::Axis(0), 256))
        {
            o.assign(&teacher.predict(&chunk)?);
        }
        out.push(logits);
    }
    Ok(out)
}
