//! Knowledge distillation on real data: a 64-512-512-10 teacher and a 64-16-10 student on the UCI
//! handwritten digits (bundled), student trained from scratch vs distilled, over several seeds.
//!
//! Run: `cargo run --release --example distill_digits [-- --json] [--seeds 5] [--epochs 150]
//! [--no-shifts] [--mixup 1] [--temperature 8] [--alpha 0] [--lr 0.1] [--teacher-epochs 100]
//! [--teacher-dropout 0.3]`

use std::time::Instant;

use modelopt::distill::{
    Dataset, Digits, DigitsPart, Hooks, KdLoss, LrSchedule, MlpStudent, Teacher, Trainer, accuracy,
    agreement,
};
use modelopt::nn::{Adam, MiniBatches, Mlp, Optimizer, Sgd, gather_rows, softmax_cross_entropy};

type Error = Box<dyn std::error::Error>;

struct Options {
    json: bool,
    seeds: u64,
    epochs: usize,
    temperature: f64,
    alpha: f64,
    teacher_epochs: usize,
    teacher_dropout: f64,
    lr: f64,
    shifts: bool,
    mixup: usize,
}

fn options() -> Result<Options, Error> {
    let mut o = Options {
        json: false,
        seeds: 5,
        epochs: 150,
        // Chosen by mean validation accuracy (5 seeds) over T in {2, 4, 8} x alpha in {0, 0.2, 0.5}
        // x epochs in {60, 150} x mixup copies in {0, 1, 3}, with the shifted transfer set; the
        // test split was not used to choose. Best: T = 8, alpha = 0 (teacher only), 150 epochs, one
        // mixup copy (97.47% validation, tied with T = 4, alpha = 0.2, three copies).
        temperature: 8.0,
        alpha: 0.0,
        teacher_epochs: 100,
        teacher_dropout: 0.3,
        lr: 0.1,
        shifts: true,
        mixup: 1,
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
            "--no-shifts" => o.shifts = false,
            "--mixup" => (o.mixup, i) = (value()?.parse()?, i + 1),
            "--seeds" => (o.seeds, i) = (value()?.parse()?, i + 1),
            "--epochs" => (o.epochs, i) = (value()?.parse()?, i + 1),
            "--temperature" => (o.temperature, i) = (value()?.parse()?, i + 1),
            "--alpha" => (o.alpha, i) = (value()?.parse()?, i + 1),
            "--teacher-epochs" => (o.teacher_epochs, i) = (value()?.parse()?, i + 1),
            "--teacher-dropout" => (o.teacher_dropout, i) = (value()?.parse()?, i + 1),
            "--lr" => (o.lr, i) = (value()?.parse()?, i + 1),
            other => return Err(format!("unknown argument {other}").into()),
        }
        i += 1;
    }
    Ok(o)
}

/// The teacher, trained on the labels with a plain cross-entropy loop (the `nn` crate on its own).
fn train_teacher(
    train: &DigitsPart,
    epochs: usize,
    dropout: f64,
    seed: u64,
) -> Result<Mlp<f32>, Error> {
    let mut net = Mlp::<f32>::builder(&[64, 512, 512, 10])
        .dropout(dropout)
        .seed(seed)
        .build()?;
    let mut opt = Adam::builder(1e-3).build()?;
    let mut batches = MiniBatches::new(train.len(), 32, seed)?;
    for _ in 0..epochs {
        for idx in batches.epoch() {
            let x = gather_rows(&train.inputs, idx)?;
            let y: Vec<usize> = idx.iter().map(|&i| train.labels[i]).collect();
            let (_, grad) = softmax_cross_entropy(&net.forward(&x)?, &y)?;
            net.backward(&grad)?;
            opt.step(&mut net)?;
        }
    }
    net.set_training(false);
    Ok(net)
}

struct Run {
    val_accuracy: f64,
    accuracy: f64,
    agreement: f64,
}

/// The images and each copy shifted by one pixel up, down, left and right (zero fill): a larger
/// transfer set for distillation, labelled by the teacher.
fn with_shifts(part: &DigitsPart) -> DigitsPart {
    let n = part.len();
    let mut inputs = ndarray::Array2::<f32>::zeros((n * 5, 64));
    let mut labels = Vec::with_capacity(n * 5);
    for (k, (dr, dc)) in [(0i32, 0i32), (-1, 0), (1, 0), (0, -1), (0, 1)]
        .into_iter()
        .enumerate()
    {
        for i in 0..n {
            let row = k * n + i;
            for r in 0..8i32 {
                for c in 0..8i32 {
                    let (sr, sc) = (r - dr, c - dc);
                    if (0..8).contains(&sr) && (0..8).contains(&sc) {
                        inputs[[row, (r * 8 + c) as usize]] =
                            part.inputs[[i, (sr * 8 + sc) as usize]];
                    }
                }
            }
            labels.push(part.labels[i]);
        }
    }
    DigitsPart { inputs, labels }
}

/// `copies` extra copies of the set, each image mixed with a random partner,
/// `lambda x_i + (1 - lambda) x_j` with `lambda ~ U(0, 1)` (seeded): points between the classes,
/// where the teacher's soft labels say most about how the classes relate. Labels are the
/// dominant image's; the distilled student learns mostly from the teacher's logits.
fn with_mixup(part: &DigitsPart, copies: usize, seed: u64) -> DigitsPart {
    use rand::{RngExt, SeedableRng, rngs::StdRng};
    let n = part.len();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut inputs = ndarray::Array2::<f32>::zeros((n * (copies + 1), 64));
    let mut labels = part.labels.clone();
    inputs.slice_mut(ndarray::s![..n, ..]).assign(&part.inputs);
    for k in 0..copies {
        for i in 0..n {
            let j = rng.random_range(0..n);
            let lambda: f32 = rng.random();
            let mixed = &part.inputs.row(i) * lambda + &part.inputs.row(j) * (1.0 - lambda);
            inputs.row_mut((k + 1) * n + i).assign(&mixed);
            labels.push(if lambda >= 0.5 {
                part.labels[i]
            } else {
                part.labels[j]
            });
        }
    }
    DigitsPart { inputs, labels }
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

fn main() -> Result<(), Error> {
    let o = options()?;
    let started = Instant::now();
    let digits = Digits::load_bundled()?;
    let split = digits.split(0.15, 0.2, 0)?;
    let teacher = train_teacher(&split.train, o.teacher_epochs, o.teacher_dropout, 0)?;
    let teacher_test = Teacher::predict(&teacher, &split.test.inputs)?;
    let teacher_acc = accuracy(&teacher_test, &split.test.labels)?;

    // The teacher is fixed (inference mode), so its logits are computed once and stored: offline
    // distillation, the same result as asking the live teacher every batch, at a fraction of the cost.
    // With --shifts (the default) the distilled student learns from a larger transfer set, the
    // training images plus their one-pixel shifts, labelled by the teacher. The scratch student
    // keeps the plain training set: with the shifted copies and hard labels it does worse (93.1%
    // vs 96.5% validation accuracy), so each student is compared at its better setting.
    let teacher_train = Teacher::predict(&teacher, &split.train.inputs)?;
    let plain = Dataset::new(split.train.inputs.view(), &split.train.labels)?
        .with_teacher_logits(teacher_train.view())?;
    let transfer = if o.shifts {
        with_shifts(&split.train)
    } else {
        split.train.clone()
    };
    let transfer = with_mixup(&transfer, o.mixup, 7);
    let teacher_transfer = Teacher::predict(&teacher, &transfer.inputs)?;
    let transfer_set = Dataset::new(transfer.inputs.view(), &transfer.labels)?
        .with_teacher_logits(teacher_transfer.view())?;
    let teacher_val = Teacher::predict(&teacher, &split.validation.inputs)?;
    let val = Dataset::new(split.validation.inputs.view(), &split.validation.labels)?
        .with_teacher_logits(teacher_val.view())?;
    // Same student, optimizer, schedule and epochs; "scratch" is KD with alpha = 1 (cross-entropy only).
    let scratch_loss = KdLoss::new(o.temperature, 1.0)?;
    let kd_loss = KdLoss::new(o.temperature, o.alpha)?;
    let mut student_params = 0;
    let (mut scratch, mut distilled) = (Vec::new(), Vec::new());
    for seed in 0..o.seeds {
        for (loss, train, runs) in [
            (&scratch_loss, &plain, &mut scratch),
            (&kd_loss, &transfer_set, &mut distilled),
        ] {
            let net = Mlp::<f32>::builder(&[64, 16, 10])
                .seed(100 + seed)
                .build()?;
            student_params = net.parameter_count();
            let mut student = MlpStudent::new(net, Sgd::builder(o.lr).momentum(0.9).build()?);
            let trainer = Trainer::builder()
                .epochs(o.epochs)
                .batch_size(32)
                .learning_rate(o.lr)
                .schedule(LrSchedule::Cosine { min_lr: 0.0 })
                .seed(seed)
                .build()?;
            trainer.fit(&mut student, loss, None, train, Some(&val), Hooks::new())?;
            let out = student.network.predict(&split.test.inputs)?;
            let val_out = student.network.predict(&split.validation.inputs)?;
            runs.push(Run {
                val_accuracy: accuracy(&val_out, &split.validation.labels)?,
                accuracy: accuracy(&out, &split.test.labels)?,
                agreement: agreement(&out, &teacher_test)?,
            });
        }
    }
    let stats = |runs: &[Run]| {
        let acc: Vec<f64> = runs.iter().map(|r| r.accuracy).collect();
        let agr: Vec<f64> = runs.iter().map(|r| r.agreement).collect();
        let val: Vec<f64> = runs.iter().map(|r| r.val_accuracy).collect();
        (mean_std(&acc), mean_std(&agr), mean_std(&val).0)
    };
    let ((sa, ss), (sg, sgs), sv) = stats(&scratch);
    let ((da, ds), (dg, dgs), dv) = stats(&distilled);
    let seconds = started.elapsed().as_secs_f64();
    if o.json {
        println!(
            "{{\"data\":{{\"train\":{},\"validation\":{},\"test\":{}}},\"seeds\":{},\"epochs\":{},\"temperature\":{},\"alpha\":{},\"transfer_set\":{},\
             \"teacher\":{{\"sizes\":[64,512,512,10],\"params\":{},\"test_accuracy\":{teacher_acc:.4}}},\
             \"scratch\":{{\"sizes\":[64,16,10],\"params\":{student_params},\"test_accuracy_mean\":{sa:.4},\"test_accuracy_std\":{ss:.4},\"agreement_mean\":{sg:.4},\"agreement_std\":{sgs:.4},\"validation_accuracy_mean\":{sv:.4}}},\
             \"distilled\":{{\"sizes\":[64,16,10],\"params\":{student_params},\"test_accuracy_mean\":{da:.4},\"test_accuracy_std\":{ds:.4},\"agreement_mean\":{dg:.4},\"agreement_std\":{dgs:.4},\"validation_accuracy_mean\":{dv:.4}}},\
             \"distilled_minus_scratch\":{:.4},\"seconds\":{seconds:.2}}}",
            split.train.len(),
            split.validation.len(),
            split.test.len(),
            o.seeds,
            o.epochs,
            o.temperature,
            o.alpha,
            transfer.len(),
            teacher.parameter_count(),
            da - sa
        );
        return Ok(());
    }
    println!(
        "digits: {} train / {} validation / {} test; {} seeds, {} epochs, KD T = {}, alpha = {}, transfer set {}",
        split.train.len(),
        split.validation.len(),
        split.test.len(),
        o.seeds,
        o.epochs,
        o.temperature,
        o.alpha,
        transfer.len()
    );
    println!("| model | params | test accuracy | agreement with teacher | validation accuracy |");
    println!("|---|---|---|---|---|");
    println!(
        "| teacher 64-512-512-10 | {} | {:.2}% | - | - |",
        teacher.parameter_count(),
        teacher_acc * 100.0
    );
    println!(
        "| student 64-16-10, scratch | {student_params} | {:.2}% ± {:.2} | {:.2}% ± {:.2} | {:.2}% |",
        sa * 100.0,
        ss * 100.0,
        sg * 100.0,
        sgs * 100.0,
        sv * 100.0
    );
    println!(
        "| student 64-16-10, distilled | {student_params} | {:.2}% ± {:.2} | {:.2}% ± {:.2} | {:.2}% |",
        da * 100.0,
        ds * 100.0,
        dg * 100.0,
        dgs * 100.0,
        dv * 100.0
    );
    let verdict = if da - sa > ss.max(ds) {
        "more"
    } else {
        "not more"
    };
    println!(
        "test: distilled - scratch = {:+.2} points ({verdict} than one std); validation: {:+.2}; {seconds:.1} s",
        (da - sa) * 100.0,
        (dv - sv) * 100.0
    );
    Ok(())
}
