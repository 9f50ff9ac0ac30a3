//! Knowledge distillation with convolutional networks on real images: the method's teacher shape
//! (Conv 1->64 3x3, Conv 64->128 3x3, max pooling, dropout 0.3, a linear classifier) and a small
//! student of the same shape (8 and 16 channels by default) on 5,000 MNIST digits (bundled), the
//! student trained from scratch vs distilled (Hinton KD), over several seeds.
//!
//! Data: 3,500 train / 500 validation / 1,000 test (stratified, seed 0); every training batch is
//! augmented with random shifts of up to 2 pixels; Adam 1e-3, batch 64, as the torch figures of
//! issue 10. The teacher's logits for all 25 shifts of every training image are computed once
//! (offline distillation: the teacher is fixed).
//!
//! Run: `cargo run --release --example distill_cnn [-- --json] [--seeds 3] [--epochs 30]
//! [--teacher-epochs 25] [--temperature 4] [--alpha 0.1] [--width 8,16]
//! [--save-teacher t.safetensors | --load-teacher t.safetensors]`

use std::time::Instant;

use modelopt::distill::{
    KdLoss, Mnist, SequentialStudent, Student, accuracy, agreement, distill_step,
};
use modelopt::nn::{
    Activation, Adam, Conv2d, Dense, Dropout, Init, Layer, MaxPool2d, MiniBatches, Sequential,
};
use modelopt::pipeline::{load_sequential, save_sequential};
use ndarray::{Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

type Error = Box<dyn std::error::Error>;

struct Options {
    json: bool,
    seeds: u64,
    epochs: usize,
    teacher_epochs: usize,
    temperature: f64,
    alpha: f64,
    width: (usize, usize),
    save_teacher: Option<String>,
    load_teacher: Option<String>,
}

fn options() -> Result<Options, Error> {
    let mut o = Options {
        json: false,
        seeds: 3,
        epochs: 30,
        teacher_epochs: 25,
        temperature: 4.0,
        alpha: 0.1,
        width: (8, 16),
        save_teacher: None,
        load_teacher: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || {
            args.get(i + 1)
                .ok_or_else(|| format!("{} needs a value", args[i]))
        };
        match args[i].as_str() {
            "--json" => o.json = true,
            "--seeds" => (o.seeds, i) = (value()?.parse()?, i + 1),
            "--epochs" => (o.epochs, i) = (value()?.parse()?, i + 1),
            "--teacher-epochs" => (o.teacher_epochs, i) = (value()?.parse()?, i + 1),
            "--temperature" => (o.temperature, i) = (value()?.parse()?, i + 1),
            "--alpha" => (o.alpha, i) = (value()?.parse()?, i + 1),
            "--width" => {
                let v = value()?;
                let (a, b) = v
                    .split_once(',')
                    .ok_or("--width needs two numbers, e.g. 8,16")?;
                o.width = (a.parse()?, b.parse()?);
                i += 1;
            }
            "--save-teacher" => (o.save_teacher, i) = (Some(value()?.clone()), i + 1),
            "--load-teacher" => (o.load_teacher, i) = (Some(value()?.clone()), i + 1),
            other => return Err(format!("unknown argument {other}").into()),
        }
        i += 1;
    }
    Ok(o)
}

/// Conv(1->c1, 3x3) ReLU MaxPool(2) Conv(c1->c2, 3x3) ReLU MaxPool(2) Flatten [Dropout] Linear(->10),
/// named like torch's `nn.Sequential` of the same modules (`0.weight`, `3.weight`, `8.weight`).
pub fn cnn(c1: usize, c2: usize, dropout: f64, seed: u64) -> Result<Sequential<f32>, Error> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut b = Sequential::builder(&Mnist::IMAGE_SHAPE)
        .push(Layer::Conv2d(Conv2d::builder(1, c1, 3).build(&mut rng)?))
        .push(Layer::Activation(Activation::Relu))
        .push(Layer::MaxPool2d(MaxPool2d::new(2, 2, 0)?))
        .push(Layer::Conv2d(Conv2d::builder(c1, c2, 3).build(&mut rng)?))
        .push(Layer::Activation(Activation::Relu))
        .push(Layer::MaxPool2d(MaxPool2d::new(2, 2, 0)?))
        .push(Layer::Flatten);
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
fn shifts() -> Vec<(i32, i32)> {
    (-2..=2)
        .flat_map(|dy| (-2..=2).map(move |dx| (dy, dx)))
        .collect()
}

/// Image `src` (28x28, row-major) moved by `(dy, dx)` into `dst`, zero fill.
fn shift_into(src: &[f32], dst: &mut [f32], (dy, dx): (i32, i32)) {
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
fn shifted_batch(
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
fn train(
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
fn train_teacher(
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
fn teacher_logits(
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

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

struct Run {
    accuracy: f64,
    val_accuracy: f64,
    agreement: f64,
}

fn main() -> Result<(), Error> {
    let o = options()?;
    let started = Instant::now();
    let mnist = Mnist::load_bundled()?;
    let split = mnist.split(0.1, 0.2, 0)?;
    let (train_x, train_y) = (&split.train.inputs, &split.train.labels);

    let t0 = Instant::now();
    let teacher = match &o.load_teacher {
        Some(path) => load_sequential(path, &cnn(64, 128, 0.3, 0)?)?,
        None => train_teacher(train_x, train_y, o.teacher_epochs)?,
    };
    let teacher_seconds = t0.elapsed().as_secs_f64();
    if let Some(path) = &o.save_teacher {
        save_sequential(&teacher, path)?;
    }
    let teacher_test = teacher.predict(&split.test.inputs)?;
    let teacher_acc = accuracy(&teacher_test, &split.test.labels)?;
    let cache = teacher_logits(&teacher, train_x)?;

    let scratch_loss = KdLoss::new(o.temperature, 1.0)?; // alpha = 1: cross-entropy only
    let kd_loss = KdLoss::new(o.temperature, o.alpha)?;
    let (c1, c2) = o.width;
    let probe = cnn(c1, c2, 0.0, 0)?;
    let (mut scratch, mut distilled) = (Vec::new(), Vec::new());
    let (mut scratch_s, mut distilled_s) = (0.0, 0.0);
    for seed in 0..o.seeds {
        for (loss, teacher_cache, runs, secs) in [
            (&scratch_loss, None, &mut scratch, &mut scratch_s),
            (&kd_loss, Some(&cache[..]), &mut distilled, &mut distilled_s),
        ] {
            let t = Instant::now();
            let net = cnn(c1, c2, 0.0, 100 + seed)?;
            let mut student = SequentialStudent::new(net, Adam::builder(1e-3).build()?);
            train(
                &mut student,
                loss,
                train_x,
                train_y,
                teacher_cache,
                o.epochs,
                seed,
            )?;
            *secs += t.elapsed().as_secs_f64() / o.seeds as f64;
            let out = student.predict(&split.test.inputs)?;
            let val = student.predict(&split.validation.inputs)?;
            runs.push(Run {
                accuracy: accuracy(&out, &split.test.labels)?,
                val_accuracy: accuracy(&val, &split.validation.labels)?,
                agreement: agreement(&out, &teacher_test)?,
            });
        }
    }
    let stats = |runs: &[Run]| {
        let f = |g: fn(&Run) -> f64| mean_std(&runs.iter().map(g).collect::<Vec<_>>());
        (
            f(|r| r.accuracy),
            f(|r| r.agreement),
            f(|r| r.val_accuracy).0,
        )
    };
    let ((sa, ss), (sg, sgs), sv) = stats(&scratch);
    let ((da, ds), (dg, dgs), dv) = stats(&distilled);
    let seconds = started.elapsed().as_secs_f64();
    let (tp, tm, sp, sm) = (
        teacher.parameter_count(),
        teacher.macs(),
        probe.parameter_count(),
        probe.macs(),
    );
    if o.json {
        println!(
            "{{\"data\":{{\"train\":{},\"validation\":{},\"test\":{}}},\"seeds\":{},\"epochs\":{},\"teacher_epochs\":{},\"temperature\":{},\"alpha\":{},\
             \"teacher\":{{\"channels\":[64,128],\"params\":{tp},\"macs\":{tm},\"test_accuracy\":{teacher_acc:.4},\"seconds\":{teacher_seconds:.1}}},\
             \"scratch\":{{\"channels\":[{c1},{c2}],\"params\":{sp},\"macs\":{sm},\"test_accuracy_mean\":{sa:.4},\"test_accuracy_std\":{ss:.4},\"agreement_mean\":{sg:.4},\"agreement_std\":{sgs:.4},\"validation_accuracy_mean\":{sv:.4},\"seconds_per_run\":{scratch_s:.1}}},\
             \"distilled\":{{\"channels\":[{c1},{c2}],\"params\":{sp},\"macs\":{sm},\"test_accuracy_mean\":{da:.4},\"test_accuracy_std\":{ds:.4},\"agreement_mean\":{dg:.4},\"agreement_std\":{dgs:.4},\"validation_accuracy_mean\":{dv:.4},\"seconds_per_run\":{distilled_s:.1}}},\
             \"distilled_minus_scratch\":{:.4},\"seconds\":{seconds:.1}}}",
            split.train.len(),
            split.validation.len(),
            split.test.len(),
            o.seeds,
            o.epochs,
            o.teacher_epochs,
            o.temperature,
            o.alpha,
            da - sa
        );
        return Ok(());
    }
    println!(
        "MNIST: {} train / {} validation / {} test, shifts up to 2 px, Adam 1e-3, batch 64; {} seeds, student {} epochs, teacher {} epochs; KD T = {}, alpha = {}",
        split.train.len(),
        split.validation.len(),
        split.test.len(),
        o.seeds,
        o.epochs,
        o.teacher_epochs,
        o.temperature,
        o.alpha
    );
    println!(
        "| model | params | MACs / image | test accuracy | agreement with teacher | validation accuracy | time |"
    );
    println!("|---|---:|---:|---|---|---|---:|");
    println!(
        "| teacher 64/128 ch | {tp} | {tm} | {:.2}% | - | - | {teacher_seconds:.0} s |",
        teacher_acc * 100.0
    );
    for (name, (a, s), (g, gs), v, t) in [
        ("scratch", (sa, ss), (sg, sgs), sv, scratch_s),
        ("distilled", (da, ds), (dg, dgs), dv, distilled_s),
    ] {
        println!(
            "| student {c1}/{c2} ch, {name} | {sp} | {sm} | {:.2}% ± {:.2} | {:.2}% ± {:.2} | {:.2}% | {t:.0} s/run |",
            a * 100.0,
            s * 100.0,
            g * 100.0,
            gs * 100.0,
            v * 100.0
        );
    }
    let verdict = if da - sa > ss.max(ds) {
        "more"
    } else {
        "not more"
    };
    println!(
        "test: distilled - scratch = {:+.2} points ({verdict} than one std); validation: {:+.2}; {seconds:.0} s in all",
        (da - sa) * 100.0,
        (dv - sv) * 100.0
    );
    Ok(())
}
