//! The compress pipeline on a CNN, stage by stage, on 5,000 MNIST digits (bundled): distill a
//! student with batch norm from the teacher CNN -> prune filters (with their dependencies) ->
//! fine-tune by distillation from the unpruned student -> fold batch norm -> quantize (int8 or int4
//! weights, int8 activations calibrated by an observer). Every stage: parameters, multiply-adds per
//! image, bytes of the weights, test accuracy, agreement with the teacher.
//!
//! Run: `cargo run --release --example pipeline_cnn [-- --json] [--teacher target/cnn/teacher.safetensors]
//! [--teacher-epochs 25] [--epochs 15] [--finetune-epochs 5] [--width 32,64] [--prune 0.25]
//! [--criterion bn|l1|l2] [--global]`
//! (the teacher file is what `distill_cnn --save-teacher` writes; without one the teacher is trained).

#[path = "common/mnist_cnn.rs"]
mod mnist_cnn;

use std::time::Instant;

use mnist_cnn::{Error, cnn, cnn_with, teacher_logits, train, train_teacher};
use modelopt::distill::{KdLoss, Mnist, SequentialStudent, accuracy, agreement};
use modelopt::nn::{
    Adam, FilterCriterion, PruneScope, Sequential, fold_batch_norm, prune_filters_by,
};
use modelopt::pipeline::{QuantizedCnn, WeightFormat, load_sequential};
use modelopt::quantize::observer::MinMaxObserver;
use ndarray::{Array2, s};

struct Options {
    json: bool,
    teacher: String,
    teacher_epochs: usize,
    epochs: usize,
    finetune_epochs: usize,
    width: (usize, usize),
    prune: f64,
    criterion: FilterCriterion,
    scope: PruneScope,
}

fn options() -> Result<Options, Error> {
    let mut o = Options {
        json: false,
        teacher: "target/cnn/teacher.safetensors".into(),
        teacher_epochs: 25,
        epochs: 15,
        finetune_epochs: 5,
        width: (32, 64),
        prune: 0.25,
        criterion: FilterCriterion::BnScale,
        scope: PruneScope::PerLayer,
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
            "--global" => o.scope = PruneScope::Global,
            "--teacher" => (o.teacher, i) = (value()?.clone(), i + 1),
            "--teacher-epochs" => (o.teacher_epochs, i) = (value()?.parse()?, i + 1),
            "--epochs" => (o.epochs, i) = (value()?.parse()?, i + 1),
            "--finetune-epochs" => (o.finetune_epochs, i) = (value()?.parse()?, i + 1),
            "--prune" => (o.prune, i) = (value()?.parse()?, i + 1),
            "--criterion" => {
                o.criterion = match value()?.as_str() {
                    "bn" => FilterCriterion::BnScale,
                    "l1" => FilterCriterion::L1,
                    "l2" => FilterCriterion::L2,
                    other => return Err(format!("unknown criterion {other}").into()),
                };
                i += 1;
            }
            "--width" => {
                let v = value()?;
                let (a, b) = v
                    .split_once(',')
                    .ok_or("--width needs two numbers, e.g. 32,64")?;
                o.width = (a.parse()?, b.parse()?);
                i += 1;
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
        i += 1;
    }
    Ok(o)
}

struct Row {
    stage: String,
    params: usize,
    macs: usize,
    bytes: usize,
    accuracy: f64,
    agreement: f64,
    seconds: f64,
}

fn f32_bytes(net: &Sequential<f32>) -> usize {
    // Parameters and batch-norm running statistics, as f32.
    net.state_dict()
        .iter()
        .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
        .map(|(_, v)| 4 * v.len())
        .sum()
}

fn main() -> Result<(), Error> {
    let o = options()?;
    let started = Instant::now();
    let mnist = Mnist::load_bundled()?;
    let split = mnist.split(0.1, 0.2, 0)?;
    let (train_x, train_y) = (&split.train.inputs, &split.train.labels);
    let (test_x, test_y) = (&split.test.inputs, &split.test.labels);
    let mut rows = Vec::new();

    let t = Instant::now();
    let teacher = match load_sequential(&o.teacher, &cnn(64, 128, 0.3, 0)?) {
        Ok(t) => t,
        Err(_) => train_teacher(train_x, train_y, o.teacher_epochs)?,
    };
    let teacher_test = teacher.predict(test_x)?;
    let row = |stage: &str,
               net: &Sequential<f32>,
               out: &Array2<f32>,
               bytes: usize,
               seconds: f64|
     -> Result<Row, Error> {
        Ok(Row {
            stage: stage.into(),
            params: net.parameter_count(),
            macs: net.macs(),
            bytes,
            accuracy: accuracy(out, test_y)?,
            agreement: agreement(out, &teacher_test)?,
            seconds,
        })
    };
    rows.push(row(
        "teacher (f32)",
        &teacher,
        &teacher_test,
        f32_bytes(&teacher),
        t.elapsed().as_secs_f64(),
    )?);

    // 1. Distill the student (with batch norm) from the teacher's cached logits.
    let t = Instant::now();
    let cache = teacher_logits(&teacher, train_x)?;
    let kd = KdLoss::new(4.0, 0.1)?;
    let (c1, c2) = o.width;
    let mut student = SequentialStudent::new(
        cnn_with(c1, c2, 0.0, true, 100)?,
        Adam::builder(1e-3).build()?,
    );
    train(
        &mut student,
        &kd,
        train_x,
        train_y,
        Some(&cache),
        o.epochs,
        1,
    )?;
    let mut distilled = student.network;
    distilled.set_training(false);
    let out = distilled.predict(test_x)?;
    rows.push(row(
        &format!("student {c1}/{c2} ch + BN, distilled"),
        &distilled,
        &out,
        f32_bytes(&distilled),
        t.elapsed().as_secs_f64(),
    )?);

    // 2. Prune filters, then fine-tune by distillation from the unpruned student.
    let t = Instant::now();
    let pruned = prune_filters_by(&distilled, o.criterion, o.prune, o.scope)?;
    let out = pruned.predict(test_x)?;
    let name = format!(
        "pruned {:.0}% filters ({:?}, {:?})",
        o.prune * 100.0,
        o.criterion,
        o.scope
    );
    rows.push(row(
        &name,
        &pruned,
        &out,
        f32_bytes(&pruned),
        t.elapsed().as_secs_f64(),
    )?);
    let t = Instant::now();
    let unpruned_cache = teacher_logits(&distilled, train_x)?;
    let mut student = SequentialStudent::new(pruned, Adam::builder(1e-3).build()?);
    train(
        &mut student,
        &kd,
        train_x,
        train_y,
        Some(&unpruned_cache),
        o.finetune_epochs,
        2,
    )?;
    let mut tuned = student.network;
    tuned.set_training(false);
    let out = tuned.predict(test_x)?;
    rows.push(row(
        "  fine-tuned by KD from the unpruned student",
        &tuned,
        &out,
        f32_bytes(&tuned),
        t.elapsed().as_secs_f64(),
    )?);

    // 3. Fold batch norm into the convolutions.
    let t = Instant::now();
    let folded = fold_batch_norm(&tuned)?;
    let out_folded = folded.predict(test_x)?;
    let fold_diff = (&out_folded - &out)
        .mapv(f32::abs)
        .fold(0.0f32, |m, &v| m.max(v));
    rows.push(row(
        "batch norm folded",
        &folded,
        &out_folded,
        f32_bytes(&folded),
        t.elapsed().as_secs_f64(),
    )?);

    // 4. Static quantization: weights, and int8 activations calibrated on 512 training images.
    let calibration = train_x.slice(s![..512, ..]);
    for format in [
        WeightFormat::Int8PerChannel,
        WeightFormat::Int4Grouped { group_size: 8 },
    ] {
        let t = Instant::now();
        let q = QuantizedCnn::calibrate(&folded, format, &calibration, MinMaxObserver::new)?;
        let out = q.predict(test_x)?;
        let name = format!("{} weights + int8 activations (min-max)", format.name());
        rows.push(row(
            &name,
            q.network(),
            &out,
            q.weight_bytes(),
            t.elapsed().as_secs_f64(),
        )?);
    }

    let seconds = started.elapsed().as_secs_f64();
    let (t_macs, t_bytes, t_acc) = (rows[0].macs as f64, rows[0].bytes as f64, rows[0].accuracy);
    if o.json {
        let items: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"stage\":\"{}\",\"params\":{},\"macs\":{},\"bytes\":{},\"test_accuracy\":{:.4},\"agreement\":{:.4},\"seconds\":{:.1}}}",
                    r.stage.trim(), r.params, r.macs, r.bytes, r.accuracy, r.agreement, r.seconds
                )
            })
            .collect();
        println!(
            "{{\"stages\":[{}],\"fold_max_logit_diff\":{fold_diff:e},\"seconds\":{seconds:.1}}}",
            items.join(",")
        );
        return Ok(());
    }
    println!(
        "MNIST: {} train / {} test; student {} epochs, fine-tune {} epochs; KD T = 4, alpha = 0.1",
        train_y.len(),
        test_y.len(),
        o.epochs,
        o.finetune_epochs
    );
    println!(
        "| stage | params | MACs / image | bytes | test accuracy | agreement | FLOPs / teacher | bytes / teacher | time |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.2}% | {:.2}% | 1/{:.1} | 1/{:.1} | {:.0} s |",
            r.stage,
            r.params,
            r.macs,
            r.bytes,
            r.accuracy * 100.0,
            r.agreement * 100.0,
            t_macs / r.macs as f64,
            t_bytes / r.bytes as f64,
            r.seconds
        );
    }
    let last = rows.iter().rev().nth(1).ok_or("no stages")?; // the int8 row
    println!(
        "batch-norm folding changed the logits by at most {fold_diff:.1e}; int8 model: {:.1}x fewer FLOPs, {:.1}x fewer bytes, {:+.2} points vs the teacher; {seconds:.0} s in all",
        t_macs / last.macs as f64,
        t_bytes / last.bytes as f64,
        (last.accuracy - t_acc) * 100.0
    );
    Ok(())
}
