//! The compress pipeline on real data, and what each stage cost in accuracy and saved in size.
//! Every stage's f32 model is written under `target/pipeline/` and measured as read back.
//!
//! - `--model mlp` (default): UCI handwritten digits (bundled); train an MLP teacher, distill a
//!   small student, prune it and fine-tune under the mask, quantize it to int8 and int4 (with
//!   quantization-aware fine-tuning).
//! - `--model cnn`: 5,000 MNIST digits (bundled, 3,500 train / 500 validation / 1,000 test); the
//!   teacher CNN of `examples/distill_cnn.rs` (Conv 1->64, Conv 64->128, 106k parameters; read from
//!   `--teacher`, which `distill_cnn --save-teacher` writes, or trained for `--teacher-epochs`);
//!   distill a student with batch norm (`--width 32,64`) on shifted images, prune filters with their
//!   dependencies (`--prune 0.25 --criterion bn|l1|l2 [--global]`), fine-tune by distillation from
//!   the unpruned student, fold batch norm, quantize weights (int4, int8) and activations (int8,
//!   calibrated).
//!
//! Run: `cargo run --release --example pipeline [-- --json] [--prune 0.5|2:4] [--seed N]`, or
//! `cargo run --release --example pipeline -- --model cnn [--json] [--teacher FILE] [--teacher-epochs 25]
//! [--epochs 15] [--finetune-epochs 5] [--width 32,64] [--prune 0.25] [--criterion bn] [--global] [--seed N]`

#[path = "common/mnist_cnn.rs"]
mod mnist_cnn;

use std::time::Instant;

use mnist_cnn::{Error, cnn, train_teacher as train_cnn_teacher};
use modelopt::distill::{Dataset, Digits, Mnist};
use modelopt::nn::{
    Adam, FilterCriterion, MiniBatches, Mlp, Optimizer, PruneScope, gather_rows,
    softmax_cross_entropy,
};
use modelopt::pipeline::{CnnStudent, Pipeline, PipelineReport, PruneStage, load_sequential};

/// The teacher: 64-512-512-10 trained on the labels with Adam and dropout (the recipe of
/// `examples/distill_digits.rs`).
fn train_teacher(
    inputs: &ndarray::Array2<f32>,
    labels: &[usize],
    seed: u64,
) -> Result<Mlp<f32>, Error> {
    let mut net = Mlp::<f32>::builder(&[64, 512, 512, 10])
        .dropout(0.3)
        .seed(seed)
        .build()?;
    let mut opt = Adam::builder(1e-3).build()?;
    let mut batches = MiniBatches::new(inputs.nrows(), 32, seed)?;
    for _ in 0..100 {
        for idx in batches.epoch() {
            let x = gather_rows(inputs, idx)?;
            let y: Vec<usize> = idx.iter().map(|&i| labels[i]).collect();
            let (_, grad) = softmax_cross_entropy(&net.forward(&x)?, &y)?;
            net.backward(&grad)?;
            opt.step(&mut net)?;
        }
    }
    net.set_training(false);
    Ok(net)
}

/// `--model cnn`: the arguments after it, the run, the table.
fn main_cnn(args: &[String]) -> Result<(), Error> {
    let (mut json, mut global, mut seed) = (false, false, 0u64);
    let mut teacher_path = "target/cnn/teacher.safetensors".to_string();
    let (mut teacher_epochs, mut epochs, mut finetune_epochs) = (25, 15, 5);
    let (mut width, mut prune, mut criterion) = ((32, 64), 0.25, FilterCriterion::BnScale);
    let mut i = 0;
    while i < args.len() {
        let value = || {
            args.get(i + 1)
                .ok_or_else(|| format!("{} needs a value", args[i]))
        };
        match args[i].as_str() {
            "--json" => json = true,
            "--global" => global = true,
            "--teacher" => (teacher_path, i) = (value()?.clone(), i + 1),
            "--teacher-epochs" => (teacher_epochs, i) = (value()?.parse()?, i + 1),
            "--epochs" => (epochs, i) = (value()?.parse()?, i + 1),
            "--finetune-epochs" => (finetune_epochs, i) = (value()?.parse()?, i + 1),
            "--prune" => (prune, i) = (value()?.parse()?, i + 1),
            "--seed" => (seed, i) = (value()?.parse()?, i + 1),
            "--criterion" => {
                criterion = match value()?.as_str() {
                    "bn" => FilterCriterion::BnScale,
                    "l1" => FilterCriterion::L1,
                    "l2" => FilterCriterion::L2,
                    other => return Err(format!("unknown criterion {other} (bn, l1, l2)").into()),
                };
                i += 1;
            }
            "--width" => {
                let v = value()?;
                let (a, b) = v
                    .split_once(',')
                    .ok_or("--width needs two numbers, e.g. 32,64")?;
                width = (a.parse()?, b.parse()?);
                i += 1;
            }
            other => return Err(format!("unknown argument `{other}` for --model cnn").into()),
        }
        i += 1;
    }
    let started = Instant::now();
    let mnist = Mnist::load_bundled()?;
    let split = mnist.split(0.1, 0.2, 0)?;
    let teacher = match load_sequential(&teacher_path, &cnn(64, 128, 0.3, 0)?) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{teacher_path}: {e}; training the teacher for {teacher_epochs} epochs");
            train_cnn_teacher(&split.train.inputs, &split.train.labels, teacher_epochs)?
        }
    };
    let teacher_seconds = started.elapsed().as_secs_f64();
    let scope = if global {
        PruneScope::Global
    } else {
        PruneScope::PerLayer
    };
    let student = CnnStudent::new(Mnist::IMAGE_SHAPE, &[width.0, width.1], 10);
    let out_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("pipeline");
    let report = Pipeline::cnn_builder(student)
        .distill_epochs(epochs)
        .finetune_epochs(finetune_epochs)
        .prune(PruneStage::filters(prune, criterion, scope)?)
        .seed(seed)
        .build()?
        .run_cnn(
            &teacher,
            &data(&split.train)?,
            &data(&split.validation)?,
            &data(&split.test)?,
            &out_dir,
        )?;
    let header = format!(
        "MNIST: {} train / {} validation / {} test; student {}/{} ch + BN, {epochs} epochs, fine-tune {finetune_epochs}; KD T = 4, alpha = 0.1",
        split.train.len(),
        split.validation.len(),
        split.test.len(),
        width.0,
        width.1
    );
    print_report(&report, json, &header, teacher_seconds, started, &out_dir)
}

fn data(p: &modelopt::distill::DigitsPart) -> modelopt::distill::Result<Dataset<'_, f32>> {
    Dataset::new(p.inputs.view(), &p.labels)
}

fn print_report(
    report: &PipelineReport,
    json: bool,
    header: &str,
    teacher_seconds: f64,
    started: Instant,
    out_dir: &std::path::Path,
) -> Result<(), Error> {
    let seconds = started.elapsed().as_secs_f64();
    if json {
        let mut v = report.to_json();
        v["teacher_training_seconds"] = teacher_seconds.into();
        v["seconds"] = seconds.into();
        println!("{v}");
        return Ok(());
    }
    println!("{header}; teacher ready in {teacher_seconds:.1} s\n");
    print!("{}", report.to_table());
    if let (Some(t), Some(f)) = (report.stages.first(), report.final_stage()) {
        println!(
            "final model vs teacher: {:+.2} points of test accuracy",
            100.0 * (f.test_accuracy - t.test_accuracy)
        );
    }
    println!(
        "models written to {}; total {seconds:.1} s",
        out_dir.display()
    );
    Ok(())
}

fn main() -> Result<(), Error> {
    let all: Vec<String> = std::env::args().skip(1).collect();
    if let Some(k) = all.iter().position(|a| a == "--model") {
        match all.get(k + 1).map(String::as_str) {
            Some("cnn") => {
                let rest: Vec<String> = all[..k].iter().chain(&all[k + 2..]).cloned().collect();
                return main_cnn(&rest);
            }
            Some("mlp") => {}
            other => return Err(format!("--model needs mlp or cnn, got {other:?}").into()),
        }
    }
    let mut json = false;
    let mut prune = PruneStage::unstructured(0.5)?;
    let mut seed = 0u64;
    let mut args = all.into_iter().filter(|a| a != "--model" && a != "mlp");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = true,
            "--prune" => {
                let v = args
                    .next()
                    .ok_or("--prune needs a value: a fraction like 0.5, or N:M like 2:4")?;
                prune = match v.split_once(':') {
                    Some((n, m)) => PruneStage::n_m(n.parse()?, m.parse()?)?,
                    None => PruneStage::unstructured(v.parse()?)?,
                };
            }
            "--seed" => seed = args.next().ok_or("--seed needs a value")?.parse()?,
            other => {
                return Err(format!(
                    "unknown argument `{other}` (expected --model, --json, --prune, --seed)"
                )
                .into());
            }
        }
    }
    let started = Instant::now();
    let digits = Digits::load_bundled()?;
    let split = digits.split(0.15, 0.2, seed)?;
    let teacher = train_teacher(&split.train.inputs, &split.train.labels, seed)?;
    let teacher_seconds = started.elapsed().as_secs_f64();
    let out_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("pipeline");
    let report = Pipeline::builder(&[64, 32, 10])
        .prune(prune)
        .seed(seed)
        .build()?
        .run(
            &teacher,
            &data(&split.train)?,
            &data(&split.validation)?,
            &data(&split.test)?,
            &out_dir,
        )?;
    let header = format!(
        "digits: {} train / {} validation / {} test",
        split.train.len(),
        split.validation.len(),
        split.test.len()
    );
    print_report(&report, json, &header, teacher_seconds, started, &out_dir)
}
