//! The compress pipeline on real data (UCI handwritten digits, bundled): train a teacher, distill
//! a small student, prune it and fine-tune under the mask, quantize it to int8 and int4 (with
//! quantization-aware fine-tuning), and print what each stage cost in accuracy and saved in size.
//! Every stage's model is written under `target/pipeline/` and measured as read back.
//!
//! Run: `cargo run --release --example pipeline [-- --json] [--prune 0.5|2:4] [--seed N]`

use std::time::Instant;

use modelopt::distill::{Dataset, Digits};
use modelopt::nn::{Adam, MiniBatches, Mlp, Optimizer, gather_rows, softmax_cross_entropy};
use modelopt::pipeline::{Pipeline, PruneStage};

type Error = Box<dyn std::error::Error>;

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

fn main() -> Result<(), Error> {
    let mut json = false;
    let mut prune = PruneStage::unstructured(0.5)?;
    let mut seed = 0u64;
    let mut args = std::env::args().skip(1);
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
                    "unknown argument `{other}` (expected --json, --prune, --seed)"
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

    fn data(p: &modelopt::distill::DigitsPart) -> modelopt::distill::Result<Dataset<'_, f32>> {
        Dataset::new(p.inputs.view(), &p.labels)
    }
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
    let seconds = started.elapsed().as_secs_f64();
    if json {
        let mut v = report.to_json();
        v["teacher_training_seconds"] = teacher_seconds.into();
        v["seconds"] = seconds.into();
        println!("{v}");
    } else {
        println!(
            "digits: {} train / {} validation / {} test; teacher trained in {teacher_seconds:.1} s\n",
            split.train.len(),
            split.validation.len(),
            split.test.len()
        );
        print!("{}", report.to_table());
        println!(
            "models written to {}; total {seconds:.1} s",
            out_dir.display()
        );
    }
    Ok(())
}
