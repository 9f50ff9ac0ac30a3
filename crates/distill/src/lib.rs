//! # modelopt-distill
//!
//! Knowledge distillation: training a small student to imitate a large teacher.
//!
//! - [`Distiller`]: the one-verb trait (student outputs, teacher outputs, labels -> loss value, its
//!   parts, and the gradient w.r.t. the student outputs), with [`KdLoss`] (Hinton KD, matching torch
//!   to 1e-9 in f64), [`LogitMse`], [`CosineLoss`]; and [`HintLoss`] (FitNets feature hints with a
//!   learned linear regressor) and [`ConvHintLoss`] (FitNets hints between feature maps, a
//!   learned 1x1 convolution regressor).
//! - [`Trainer`]: drives any [`Student`] (forward, backward, step, predict; [`MlpStudent`] is
//!   ready-made) against any [`Teacher`] or stored teacher logits ([`Dataset::with_teacher_logits`],
//!   [`read_npy_2d`]): epochs, batch size, [`LrSchedule`] (step, cosine), early stopping, seeded
//!   batches, per-epoch metrics and an after-step hook through [`Hooks`], a progress line.
//! - Images: [`Shifts`] (random translations; the teacher's logits for every shift, once) and
//!   [`fit_shifted`] (training on shifted batches, with an optional [`HintTerm`]).
//! - Evaluation: [`accuracy`], [`agreement`] with the teacher, [`evaluate_split`]; a single
//!   [`distill_step`] for custom loops and benchmarks.
//! - Real data: [`Digits`], the UCI handwritten digits (8x8, 1,797 images, CC BY 4.0, shipped in
//!   `data/`), with pixel scaling and a stratified, seeded train/validation/test split; [`Mnist`],
//!   5,000 MNIST digits (28x28, 500 per class, CC BY-SA 3.0, shipped gzip-compressed in `data/`)
//!   with the same split, for convolutional networks ([`SequentialStudent`]).
//!
//! ```
//! use modelopt_distill::{Distiller, KdLoss};
//! use ndarray::array;
//! let kd = KdLoss::new(4.0, 0.1)?; // temperature 4, 10% label loss
//! let student = array![[1000.0f64, -1000.0]]; // huge logits are fine (log-sum-exp)
//! let teacher = array![[0.0f64, 0.0]];
//! let out = kd.loss(&student, &teacher, &[0])?;
//! assert!(out.total.is_finite() && out.grad.iter().all(|g| g.is_finite()));
//! # Ok::<(), modelopt_distill::DistillError>(())
//! ```

mod conv_hint;
mod cosine;
mod dataset;
mod digits;
mod distiller;
mod error;
mod evaluate;
mod hint;
mod kd;
mod mnist;
mod mse;
mod npy;
mod schedule;
mod shift;
mod shift_fit;
mod student;
mod trainer;

pub use conv_hint::ConvHintLoss;
pub use cosine::CosineLoss;
pub use dataset::Dataset;
pub use digits::{Digits, DigitsPart, DigitsSplit};
pub use distiller::{DistillLoss, Distiller, check_outputs};
pub use error::{DistillError, Result};
pub use evaluate::{accuracy, agreement, argmax_rows};
pub use hint::HintLoss;
pub use kd::{KdLoss, KdLossBuilder};
pub use mnist::Mnist;
pub use mse::LogitMse;
pub use npy::{read_npy, read_npy_2d, read_npy_labels};
pub use schedule::LrSchedule;
pub use shift::Shifts;
pub use shift_fit::{HintTerm, ShiftedSet, fit_shifted};
pub use student::{MlpStudent, SequentialStudent, Student, Teacher};
pub use trainer::{
    EpochMetrics, History, Hooks, SplitMetrics, StepInfo, Trainer, TrainerBuilder, distill_step,
    evaluate_split,
};
