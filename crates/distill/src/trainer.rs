use std::time::Instant;

use modelopt_nn::{MiniBatches, check_labels, gather_rows};
use modelopt_tensor_core::{CoreError, Float};
use ndarray::{Array2, ArrayRef2, Axis, concatenate};

use crate::{
    Dataset, DistillError, DistillLoss, Distiller, LrSchedule, Result, Student, Teacher, accuracy,
    agreement, check_outputs,
};

/// One distillation training step: student forward, loss against the teacher outputs, student
/// backward, optimizer step. Returns the loss and the student's (training-mode) outputs.
///
/// Non-finite student outputs or a non-finite loss are reported as [`DistillError::Diverged`]
/// *before* the backward pass, so the student's parameters are left as they were; non-finite teacher
/// outputs are a [`modelopt_tensor_core::CoreError::NonFinite`] error.
///
/// ```
/// use modelopt_distill::{distill_step, KdLoss, MlpStudent};
/// use modelopt_nn::{Mlp, Sgd};
/// use ndarray::Array2;
/// let mut student = MlpStudent::new(Mlp::<f32>::builder(&[4, 3]).build()?, Sgd::builder(0.1).build()?);
/// let kd = KdLoss::new(2.0, 0.5)?;
/// let x = Array2::ones((2, 4));
/// let teacher = Array2::zeros((2, 3));
/// let (loss, logits) = distill_step(&mut student, &kd, &x, &teacher, &[0, 2], 0.1)?;
/// assert!(loss.total.is_finite());
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
pub fn distill_step<A: Float, S: Student<A> + ?Sized, D: Distiller<A> + ?Sized>(
    student: &mut S,
    distiller: &D,
    x: &ArrayRef2<A>,
    teacher_outputs: &ArrayRef2<A>,
    labels: &[usize],
    learning_rate: f64,
) -> Result<(DistillLoss<A>, Array2<A>)> {
    let outputs = student.forward(x)?;
    // Non-finite student outputs mean the parameters have blown up: that is divergence, not bad input.
    if let Some(bad) = outputs.iter().find(|v| !v.is_finite()) {
        return Err(DistillError::Diverged {
            epoch: 0,
            step: 0,
            loss: bad.to_f64_lossless(),
        });
    }
    let loss = distiller.loss(&outputs, teacher_outputs, labels)?;
    if !loss.total.is_finite() {
        return Err(DistillError::Diverged {
            epoch: 0,
            step: 0,
            loss: loss.total.to_f64_lossless(),
        });
    }
    student.backward(&loss.grad)?;
    student.step(learning_rate)?;
    Ok((loss, outputs))
}

/// Loss parts, accuracy and teacher agreement on one split.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SplitMetrics {
    /// The distillation loss (mean over the split's batches for training).
    pub loss: f64,
    /// Its hard (label) part.
    pub hard: f64,
    /// Its soft (teacher) part.
    pub soft: f64,
    /// Top-1 accuracy against the labels.
    pub accuracy: f64,
    /// Top-1 agreement with the teacher.
    pub agreement: f64,
}

/// What one epoch produced, handed to the `on_epoch` callback and kept in the [`History`].
#[derive(Debug, Clone, PartialEq)]
pub struct EpochMetrics {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Learning rate at the epoch's last step.
    pub learning_rate: f64,
    /// Running metrics over the epoch's training batches (training mode: dropout on).
    pub train: SplitMetrics,
    /// Metrics on the validation split (inference mode), if one was given.
    pub validation: Option<SplitMetrics>,
    /// Wall time of the epoch in seconds.
    pub seconds: f64,
}

/// The record of a training run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct History {
    /// One entry per completed epoch.
    pub epochs: Vec<EpochMetrics>,
    /// Epoch (from 1) with the lowest validation loss, if there was a validation split.
    pub best_epoch: Option<usize>,
    /// Whether early stopping ended the run before the last epoch.
    pub stopped_early: bool,
    /// Optimizer steps taken.
    pub steps: usize,
}

/// Where the trainer is when it calls the after-step hook.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Optimizer step within the run, from 1.
    pub step: usize,
    /// Learning rate used by this step.
    pub learning_rate: f64,
}

type EpochHook<'h> = Box<dyn FnMut(&EpochMetrics) + 'h>;
type StepHook<'h, S> = Box<dyn FnMut(&mut S, StepInfo) -> Result<()> + 'h>;

/// Callbacks of a training run: per-epoch metrics, and a hook after every optimizer step (e.g. to
/// re-apply a pruning mask or fake-quantize the weights).
///
/// ```
/// use modelopt_distill::{Hooks, MlpStudent};
/// use modelopt_nn::{Mlp, Sgd};
/// let mut seen = Vec::new();
/// let hooks = Hooks::<MlpStudent<f32, Sgd<f32>>>::new()
///     .on_epoch(|m| seen.push(m.train.loss))
///     .after_step(|student, _info| {
///         student.network.layers_mut()[0].weight_mut()[[0, 0]] = 0.0; // keep one weight pruned
///         Ok(())
///     });
/// # drop(hooks);
/// ```
pub struct Hooks<'h, S> {
    on_epoch: Option<EpochHook<'h>>,
    after_step: Option<StepHook<'h, S>>,
}

impl<S> std::fmt::Debug for Hooks<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("on_epoch", &self.on_epoch.is_some())
            .field("after_step", &self.after_step.is_some())
            .finish()
    }
}

impl<S> Default for Hooks<'_, S> {
    fn default() -> Self {
        Hooks {
            on_epoch: None,
            after_step: None,
        }
    }
}

impl<'h, S> Hooks<'h, S> {
    /// No callbacks.
    pub fn new() -> Self {
        Self::default()
    }
    /// Called with the metrics after every epoch.
    pub fn on_epoch(mut self, f: impl FnMut(&EpochMetrics) + 'h) -> Self {
        self.on_epoch = Some(Box::new(f));
        self
    }
    /// Called after every optimizer step with the student; an error stops training.
    pub fn after_step(mut self, f: impl FnMut(&mut S, StepInfo) -> Result<()> + 'h) -> Self {
        self.after_step = Some(Box::new(f));
        self
    }
}

/// Drives a [`Student`] against a [`Teacher`] (or stored teacher outputs) with a [`Distiller`] loss:
/// seeded shuffled mini-batches, a learning-rate schedule, early stopping on the validation loss,
/// per-epoch metrics, an after-step hook, and a progress line on stderr.
///
/// ```
/// use modelopt_distill::{Dataset, Hooks, KdLoss, LrSchedule, MlpStudent, Trainer};
/// use modelopt_nn::{Mlp, Sgd};
/// use ndarray::Array2;
/// let x = Array2::from_shape_fn((40, 3), |(i, j)| ((i * 7 + j * 3) % 5) as f32 / 5.0);
/// let labels: Vec<usize> = (0..40).map(|i| i % 2).collect();
/// let teacher = Mlp::<f32>::builder(&[3, 16, 2]).seed(1).build()?;
/// let mut student = MlpStudent::new(Mlp::builder(&[3, 4, 2]).build()?, Sgd::builder(0.1).momentum(0.9).build()?);
/// let trainer = Trainer::builder()
///     .epochs(3)
///     .batch_size(8)
///     .learning_rate(0.1)
///     .schedule(LrSchedule::Cosine { min_lr: 0.0 })
///     .seed(7)
///     .build()?;
/// let train = Dataset::new(x.view(), &labels)?;
/// let history = trainer.fit(&mut student, &KdLoss::new(4.0, 0.5)?, Some(&teacher), &train, None, Hooks::new())?;
/// assert_eq!(history.epochs.len(), 3);
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Trainer {
    epochs: usize,
    batch_size: usize,
    learning_rate: f64,
    schedule: LrSchedule,
    patience: Option<usize>,
    seed: u64,
    progress: bool,
}

/// Unchecked parameters of a [`Trainer`]. Defaults: 10 epochs, batch size 32, learning rate 0.01,
/// constant schedule, no early stopping, seed 0, no progress line.
///
/// ```
/// use modelopt_distill::Trainer;
/// assert!(Trainer::builder().batch_size(0).build().is_err());
/// assert!(Trainer::builder().learning_rate(f64::NAN).build().is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerBuilder {
    trainer: Trainer,
}

impl TrainerBuilder {
    /// Number of passes over the training data (> 0).
    pub fn epochs(mut self, epochs: usize) -> Self {
        self.trainer.epochs = epochs;
        self
    }
    /// Samples per optimizer step (> 0); the last batch of an epoch may be smaller.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.trainer.batch_size = batch_size;
        self
    }
    /// Base learning rate (finite, >= 0).
    pub fn learning_rate(mut self, learning_rate: f64) -> Self {
        self.trainer.learning_rate = learning_rate;
        self
    }
    /// Learning-rate schedule.
    pub fn schedule(mut self, schedule: LrSchedule) -> Self {
        self.trainer.schedule = schedule;
        self
    }
    /// Stop after `patience` (> 0) epochs without a lower validation loss (needs a validation split).
    pub fn early_stopping(mut self, patience: usize) -> Self {
        self.trainer.patience = Some(patience);
        self
    }
    /// Seed of the mini-batch order.
    pub fn seed(mut self, seed: u64) -> Self {
        self.trainer.seed = seed;
        self
    }
    /// Print one progress line per epoch on stderr.
    pub fn progress(mut self, progress: bool) -> Self {
        self.trainer.progress = progress;
        self
    }
    /// Validate and build.
    pub fn build(self) -> Result<Trainer> {
        let t = self.trainer;
        if t.epochs == 0 {
            return Err(CoreError::invalid("epochs", "must be > 0").into());
        }
        if t.batch_size == 0 {
            return Err(CoreError::invalid("batch_size", "must be > 0").into());
        }
        if !(t.learning_rate.is_finite() && t.learning_rate >= 0.0) {
            return Err(CoreError::invalid(
                "learning_rate",
                format!("must be finite and >= 0, got {}", t.learning_rate),
            )
            .into());
        }
        if t.patience == Some(0) {
            return Err(CoreError::invalid("patience", "must be > 0").into());
        }
        t.schedule.check(t.learning_rate)?;
        Ok(t)
    }
}

/// Outputs of `model` on all rows of `x`, in chunks so memory stays bounded.
fn predict_all<A: Float>(
    x: &ArrayRef2<A>,
    f: impl Fn(&ArrayRef2<A>) -> Result<Array2<A>>,
) -> Result<Array2<A>> {
    const CHUNK: usize = 1024;
    let parts = x
        .axis_chunks_iter(Axis(0), CHUNK)
        .map(|chunk| f(&chunk))
        .collect::<Result<Vec<_>>>()?;
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    concatenate(Axis(0), &views).map_err(|e| CoreError::invalid("outputs", e.to_string()).into())
}

impl Trainer {
    /// Parameters with the defaults; see [`TrainerBuilder`].
    pub fn builder() -> TrainerBuilder {
        TrainerBuilder {
            trainer: Trainer {
                epochs: 10,
                batch_size: 32,
                learning_rate: 0.01,
                schedule: LrSchedule::Constant,
                patience: None,
                seed: 0,
                progress: false,
            },
        }
    }

    /// Train `student` on `train`. Teacher outputs come from the split's stored logits when present,
    /// otherwise from `teacher` (an error if neither). Labels are checked against the class count
    /// up front; a non-finite loss stops training with [`DistillError::Diverged`].
    ///
    /// ```
    /// use modelopt_distill::{Dataset, DistillError, Hooks, KdLoss, MlpStudent, Trainer};
    /// use modelopt_nn::{Mlp, Sgd};
    /// use ndarray::Array2;
    /// let x = Array2::<f32>::ones((8, 2));
    /// let labels = [0, 1, 0, 1, 0, 1, 0, 1];
    /// let stored = Array2::<f32>::zeros((8, 2)); // teacher logits saved earlier, e.g. from torch
    /// let train = Dataset::new(x.view(), &labels)?.with_teacher_logits(stored.view())?;
    /// let mut student = MlpStudent::new(Mlp::builder(&[2, 2]).build()?, Sgd::builder(0.1).build()?);
    /// let trainer = Trainer::builder().epochs(2).batch_size(4).build()?;
    /// let history = trainer.fit(&mut student, &KdLoss::new(2.0, 0.5)?, None, &train, None, Hooks::new())?;
    /// assert_eq!(history.steps, 4);
    /// # Ok::<(), DistillError>(())
    /// ```
    pub fn fit<A: Float, S: Student<A>, D: Distiller<A> + ?Sized>(
        &self,
        student: &mut S,
        distiller: &D,
        teacher: Option<&dyn Teacher<A>>,
        train: &Dataset<'_, A>,
        validation: Option<&Dataset<'_, A>>,
        mut hooks: Hooks<'_, S>,
    ) -> Result<History> {
        if train.teacher_logits.is_none() && teacher.is_none() {
            return Err(DistillError::NoTeacher { split: "training" });
        }
        if let Some(t) = train.teacher_logits {
            check_labels(&t, train.labels)?;
        }
        let validation = match validation {
            Some(v) => {
                let logits = match (v.teacher_logits, teacher) {
                    (Some(t), _) => t.to_owned(),
                    (None, Some(model)) => predict_all(&v.inputs, |x| model.predict(x))?,
                    (None, None) => {
                        return Err(DistillError::NoTeacher {
                            split: "validation",
                        });
                    }
                };
                check_labels(&logits, v.labels)?;
                Some((v, logits))
            }
            None => None,
        };

        let mut batches = MiniBatches::new(train.len(), self.batch_size, self.seed)?;
        let total_steps = batches.len() * self.epochs;
        let mut history = History::default();
        let (mut best_loss, mut since_best) = (f64::INFINITY, 0usize);
        for epoch in 1..=self.epochs {
            let started = Instant::now();
            let (mut sums, mut seen, mut hits, mut agree) = ([0.0f64; 3], 0usize, 0.0f64, 0.0f64);
            let mut learning_rate = self.learning_rate;
            for indices in batches.epoch() {
                let progress = history.steps as f64 / total_steps.max(1) as f64;
                learning_rate = self.schedule.rate(self.learning_rate, epoch - 1, progress);
                let x = gather_rows(&train.inputs, indices)?;
                let labels: Vec<usize> = indices.iter().map(|&i| train.labels[i]).collect();
                let teacher_outputs = match (train.teacher_logits, teacher) {
                    (Some(t), _) => gather_rows(&t, indices)?,
                    (None, Some(model)) => model.predict(&x)?,
                    (None, None) => return Err(DistillError::NoTeacher { split: "training" }),
                };
                let step = history.steps + 1;
                let (loss, outputs) = distill_step(
                    student,
                    distiller,
                    &x,
                    &teacher_outputs,
                    &labels,
                    learning_rate,
                )
                .map_err(|e| match e {
                    DistillError::Diverged { loss, .. } => {
                        DistillError::Diverged { epoch, step, loss }
                    }
                    other => other,
                })?;
                history.steps = step;
                if let Some(hook) = hooks.after_step.as_mut() {
                    hook(
                        student,
                        StepInfo {
                            epoch,
                            step,
                            learning_rate,
                        },
                    )?;
                }
                let n = indices.len() as f64;
                sums[0] += loss.total.to_f64_lossless() * n;
                sums[1] += loss.hard.to_f64_lossless() * n;
                sums[2] += loss.soft.to_f64_lossless() * n;
                hits += accuracy(&outputs, &labels)? * n;
                agree += agreement(&outputs, &teacher_outputs)? * n;
                seen += indices.len();
            }
            let seen = seen as f64;
            let train_metrics = SplitMetrics {
                loss: sums[0] / seen,
                hard: sums[1] / seen,
                soft: sums[2] / seen,
                accuracy: hits / seen,
                agreement: agree / seen,
            };
            let val_metrics = match &validation {
                Some((v, t)) => Some(evaluate_split(student, distiller, v, t)?),
                None => None,
            };
            let metrics = EpochMetrics {
                epoch,
                learning_rate,
                train: train_metrics,
                validation: val_metrics,
                seconds: started.elapsed().as_secs_f64(),
            };
            if self.progress {
                eprintln!("{}", progress_line(&metrics, self.epochs));
            }
            if let Some(hook) = hooks.on_epoch.as_mut() {
                hook(&metrics);
            }
            history.epochs.push(metrics);
            if let Some(v) = val_metrics {
                if v.loss < best_loss {
                    best_loss = v.loss;
                    since_best = 0;
                    history.best_epoch = Some(epoch);
                } else {
                    since_best += 1;
                }
                if self.patience.is_some_and(|p| since_best >= p) && epoch < self.epochs {
                    history.stopped_early = true;
                    break;
                }
            }
        }
        Ok(history)
    }
}

/// Inference-mode metrics of `student` on a split against precomputed teacher outputs.
///
/// ```
/// use modelopt_distill::{evaluate_split, Dataset, KdLoss, MlpStudent};
/// use modelopt_nn::{Mlp, Sgd};
/// use ndarray::Array2;
/// let student = MlpStudent::new(Mlp::<f32>::builder(&[2, 3]).build()?, Sgd::builder(0.1).build()?);
/// let x = Array2::ones((4, 2));
/// let labels = [0, 1, 2, 0];
/// let teacher = Array2::zeros((4, 3));
/// let m = evaluate_split(&student, &KdLoss::new(2.0, 0.5)?, &Dataset::new(x.view(), &labels)?, &teacher)?;
/// assert!((0.0..=1.0).contains(&m.accuracy));
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
pub fn evaluate_split<A: Float, S: Student<A> + ?Sized, D: Distiller<A> + ?Sized>(
    student: &S,
    distiller: &D,
    split: &Dataset<'_, A>,
    teacher_outputs: &ArrayRef2<A>,
) -> Result<SplitMetrics> {
    let outputs = predict_all(&split.inputs, |x| student.predict(x))?;
    check_outputs(&outputs, teacher_outputs)?;
    let loss = distiller.loss(&outputs, teacher_outputs, split.labels)?;
    Ok(SplitMetrics {
        loss: loss.total.to_f64_lossless(),
        hard: loss.hard.to_f64_lossless(),
        soft: loss.soft.to_f64_lossless(),
        accuracy: accuracy(&outputs, split.labels)?,
        agreement: agreement(&outputs, teacher_outputs)?,
    })
}

fn progress_line(m: &EpochMetrics, epochs: usize) -> String {
    let t = &m.train;
    let mut line = format!(
        "epoch {:>3}/{epochs}  lr {:.4}  loss {:.4} (hard {:.4}, soft {:.4})  acc {:.3}  agree {:.3}",
        m.epoch, m.learning_rate, t.loss, t.hard, t.soft, t.accuracy, t.agreement
    );
    if let Some(v) = &m.validation {
        line += &format!(
            "  | val loss {:.4} acc {:.3} agree {:.3}",
            v.loss, v.accuracy, v.agreement
        );
    }
    line + &format!("  {:.2}s", m.seconds)
}
