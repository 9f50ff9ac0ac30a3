//! The trainer: learning, determinism, stored logits, schedules, early stopping, hooks, errors.

use modelopt_distill::{
    Dataset, DistillError, Hooks, KdLoss, LogitMse, LrSchedule, MlpStudent, Teacher, Trainer,
};
use modelopt_nn::{Mlp, Sgd};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Three Gaussian blobs in 4-D: a task a small MLP can learn in a few epochs.
fn blobs(n: usize, seed: u64) -> (Array2<f32>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let labels: Vec<usize> = (0..n).map(|i| i % 3).collect();
    let x = Array2::from_shape_fn((n, 4), |(i, j)| {
        let center = if j == labels[i] { 2.0 } else { 0.0 };
        center + (rng.random::<f32>() - 0.5)
    });
    (x, labels)
}

fn student(seed: u64) -> MlpStudent<f32, Sgd<f32>> {
    MlpStudent::new(
        Mlp::builder(&[4, 8, 3]).seed(seed).build().unwrap(),
        Sgd::builder(0.1).momentum(0.9).build().unwrap(),
    )
}

fn teacher() -> Mlp<f32> {
    // A "teacher" trained from labels with the same trainer (KD with alpha = 1 is plain CE).
    let (x, y) = blobs(300, 1);
    let mut t = student(100);
    let dummy = Array2::<f32>::zeros((300, 3));
    let train = Dataset::new(x.view(), &y)
        .unwrap()
        .with_teacher_logits(dummy.view())
        .unwrap();
    let trainer = Trainer::builder()
        .epochs(20)
        .batch_size(32)
        .learning_rate(0.1)
        .build()
        .unwrap();
    trainer
        .fit(
            &mut t,
            &KdLoss::new(1.0, 1.0).unwrap(),
            None,
            &train,
            None,
            Hooks::new(),
        )
        .unwrap();
    t.network
}

#[test]
fn distillation_learns_and_agrees_with_the_teacher() {
    let teacher = teacher();
    let (x, y) = blobs(300, 2);
    let (vx, vy) = blobs(150, 3);
    let train = Dataset::new(x.view(), &y).unwrap();
    let val = Dataset::new(vx.view(), &vy).unwrap();
    let trainer = Trainer::builder()
        .epochs(15)
        .batch_size(32)
        .learning_rate(0.05)
        .schedule(LrSchedule::Cosine { min_lr: 0.0 })
        .seed(3)
        .build()
        .unwrap();
    let mut s = student(7);
    let mut epochs_seen = 0;
    let history = trainer
        .fit(
            &mut s,
            &KdLoss::new(4.0, 0.1).unwrap(),
            Some(&teacher),
            &train,
            Some(&val),
            Hooks::new().on_epoch(|_| epochs_seen += 1),
        )
        .unwrap();
    assert_eq!(epochs_seen, 15);
    let last = history.epochs.last().unwrap().validation.unwrap();
    assert!(last.accuracy > 0.9, "validation accuracy {}", last.accuracy);
    assert!(last.agreement > 0.9, "agreement {}", last.agreement);
    assert!(history.epochs[0].train.loss > history.epochs[14].train.loss);
    assert!(
        history.epochs[14].learning_rate < 0.01,
        "cosine decays to ~0"
    );
}

#[test]
fn stored_teacher_logits_give_the_same_run_as_the_live_teacher() {
    let teacher = teacher();
    let (x, y) = blobs(120, 4);
    let logits = Teacher::predict(&teacher, &x).unwrap();
    let trainer = Trainer::builder()
        .epochs(3)
        .batch_size(16)
        .seed(9)
        .learning_rate(0.05)
        .build()
        .unwrap();
    let kd = KdLoss::new(2.0, 0.5).unwrap();
    let mut live = student(1);
    let mut stored = student(1);
    let data = Dataset::new(x.view(), &y).unwrap();
    let h1 = trainer
        .fit(&mut live, &kd, Some(&teacher), &data, None, Hooks::new())
        .unwrap();
    let offline = Dataset::new(x.view(), &y)
        .unwrap()
        .with_teacher_logits(logits.view())
        .unwrap();
    let h2 = trainer
        .fit(&mut stored, &kd, None, &offline, None, Hooks::new())
        .unwrap();
    // The stored logits come from one 120-row product, the live ones from 16-row batches: the f32
    // GEMM's blocking depends on the batch size, so the two agree to rounding, not bit for bit (as
    // in torch; seen: 1-2 ulp). A wrong pairing of logits and rows would be off by far more.
    let (a, b) = (
        live.network.named_parameters(),
        stored.network.named_parameters(),
    );
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, p) in &a {
        let q = &b[name];
        let diff = p
            .iter()
            .zip(q)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "{name}: parameters differ by {diff}");
    }
    let (l1, l2) = (h1.epochs[2].train.loss, h2.epochs[2].train.loss);
    assert!((l1 - l2).abs() < 1e-5 * l1.abs().max(1.0), "{l1} vs {l2}");
}

#[test]
fn same_seed_same_result_different_seed_different_result() {
    let teacher = teacher();
    let (x, y) = blobs(100, 5);
    let data = Dataset::new(x.view(), &y).unwrap();
    let run = |seed| {
        let mut s = student(2);
        let trainer = Trainer::builder()
            .epochs(2)
            .batch_size(10)
            .seed(seed)
            .learning_rate(0.05)
            .build()
            .unwrap();
        trainer
            .fit(&mut s, &LogitMse, Some(&teacher), &data, None, Hooks::new())
            .unwrap();
        s.network.named_parameters()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn after_step_hook_runs_every_step_and_can_keep_a_mask() {
    let teacher = teacher();
    let (x, y) = blobs(64, 6);
    let data = Dataset::new(x.view(), &y).unwrap();
    let trainer = Trainer::builder()
        .epochs(2)
        .batch_size(16)
        .learning_rate(0.1)
        .build()
        .unwrap();
    let mut steps = Vec::new();
    let mut s = student(3);
    let history = trainer
        .fit(
            &mut s,
            &KdLoss::new(2.0, 0.5).unwrap(),
            Some(&teacher),
            &data,
            None,
            Hooks::new().after_step(|s: &mut MlpStudent<f32, Sgd<f32>>, info| {
                steps.push(info.step);
                let mut w = s.network.parameter_mut("layers.0.weight").unwrap();
                w.index_axis_mut(ndarray::Axis(0), 0).fill(0.0); // a "pruned" row stays pruned
                Ok(())
            }),
        )
        .unwrap();
    assert_eq!(steps, (1..=8).collect::<Vec<_>>());
    assert_eq!(history.steps, 8);
    assert!(
        s.network.layers()[0]
            .weight()
            .row(0)
            .iter()
            .all(|&v| v == 0.0)
    );
}

#[test]
fn step_schedule_and_early_stopping() {
    let teacher = teacher();
    let (x, y) = blobs(60, 7);
    let data = Dataset::new(x.view(), &y).unwrap();
    // Learning rate 0 after epoch 1 (gamma tiny): validation loss stops improving, so patience 2 stops it.
    let trainer = Trainer::builder()
        .epochs(20)
        .batch_size(20)
        .learning_rate(0.05)
        .schedule(LrSchedule::Step {
            every: 1,
            gamma: 1e-300,
        })
        .early_stopping(2)
        .build()
        .unwrap();
    let mut s = student(4);
    let h = trainer
        .fit(
            &mut s,
            &KdLoss::new(2.0, 0.5).unwrap(),
            Some(&teacher),
            &data,
            Some(&data),
            Hooks::new(),
        )
        .unwrap();
    assert!(h.stopped_early);
    assert!(h.epochs.len() < 20);
    assert_eq!(h.epochs[0].learning_rate, 0.05);
}

#[test]
fn bad_input_is_a_clear_error() {
    let teacher = teacher();
    let (x, y) = blobs(30, 8);
    let kd = KdLoss::new(2.0, 0.5).unwrap();
    let trainer = Trainer::builder().epochs(1).batch_size(8).build().unwrap();

    // No teacher at all.
    let data = Dataset::new(x.view(), &y).unwrap();
    assert!(matches!(
        trainer.fit(&mut student(0), &kd, None, &data, None, Hooks::new()),
        Err(DistillError::NoTeacher { .. })
    ));
    // Teacher with a different class count.
    let wide = Mlp::<f32>::builder(&[4, 5]).build().unwrap();
    assert!(matches!(
        trainer.fit(&mut student(0), &kd, Some(&wide), &data, None, Hooks::new()),
        Err(DistillError::ClassMismatch {
            student: 3,
            teacher: 5
        })
    ));
    // Labels out of range.
    let bad_labels: Vec<usize> = y.iter().map(|&l| l + 1).collect();
    let bad = Dataset::new(x.view(), &bad_labels).unwrap();
    assert!(matches!(
        trainer.fit(
            &mut student(0),
            &kd,
            Some(&teacher),
            &bad,
            None,
            Hooks::new()
        ),
        Err(DistillError::Nn(modelopt_nn::NnError::LabelOutOfRange {
            label: 3,
            classes: 3,
            ..
        }))
    ));
    // Stored logits with the wrong number of rows.
    let short = Array2::<f32>::zeros((29, 3));
    assert!(matches!(
        Dataset::new(x.view(), &y)
            .unwrap()
            .with_teacher_logits(short.view()),
        Err(DistillError::BatchMismatch { .. })
    ));
    // Divergence: an absurd learning rate makes the loss non-finite.
    let huge = Trainer::builder()
        .epochs(50)
        .batch_size(8)
        .learning_rate(1e30)
        .build()
        .unwrap();
    let err = huge
        .fit(
            &mut student(0),
            &kd,
            Some(&teacher),
            &data,
            None,
            Hooks::new(),
        )
        .unwrap_err();
    assert!(matches!(err, DistillError::Diverged { .. }), "{err}");
    assert!(err.to_string().contains("diverged"));
    // Invalid trainer parameters.
    assert!(Trainer::builder().epochs(0).build().is_err());
    assert!(Trainer::builder().early_stopping(0).build().is_err());
    assert!(
        Trainer::builder()
            .schedule(LrSchedule::Step {
                every: 0,
                gamma: 0.5
            })
            .build()
            .is_err()
    );
    assert!(
        Trainer::builder()
            .learning_rate(0.1)
            .schedule(LrSchedule::Cosine { min_lr: 1.0 })
            .build()
            .is_err()
    );
}
