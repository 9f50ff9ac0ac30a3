use modelopt_tensor_core::CoreError;

use crate::Result;

/// Learning-rate schedule over a training run.
///
/// - `Constant`: the base rate throughout;
/// - `Step { every, gamma }`: multiply by `gamma` every `every` epochs (torch's `StepLR`);
/// - `Cosine { min_lr }`: cosine annealing from the base rate to `min_lr` over all optimizer steps
///   (Loshchilov & Hutter 2017, without restarts; torch's `CosineAnnealingLR` stepped per batch).
///
/// ```
/// use modelopt_distill::LrSchedule;
/// let s = LrSchedule::Step { every: 2, gamma: 0.5 };
/// assert_eq!(s.rate(0.1, 3, 0.5), 0.05);
/// let c = LrSchedule::Cosine { min_lr: 0.0 };
/// assert!((c.rate(0.1, 0, 0.5) - 0.05).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum LrSchedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Decay by `gamma` every `every` epochs.
    Step {
        /// Epochs between decays (> 0).
        every: usize,
        /// Multiplicative factor in `(0, 1]`.
        gamma: f64,
    },
    /// Cosine annealing to `min_lr` over the run.
    Cosine {
        /// The final rate, in `[0, base]`.
        min_lr: f64,
    },
}

impl LrSchedule {
    /// The rate at `epoch` (from 0) and `progress` in `[0, 1]` through all steps of the run.
    pub fn rate(&self, base: f64, epoch: usize, progress: f64) -> f64 {
        match *self {
            LrSchedule::Constant => base,
            LrSchedule::Step { every, gamma } => {
                let decays = i32::try_from(epoch / every.max(1)).unwrap_or(i32::MAX);
                base * gamma.powi(decays)
            }
            LrSchedule::Cosine { min_lr } => {
                min_lr
                    + 0.5
                        * (base - min_lr)
                        * (1.0 + (std::f64::consts::PI * progress.clamp(0.0, 1.0)).cos())
            }
        }
    }

    pub(crate) fn check(&self, base: f64) -> Result<()> {
        match *self {
            LrSchedule::Constant => Ok(()),
            LrSchedule::Step { every, gamma } => {
                if every == 0 {
                    return Err(CoreError::invalid("schedule.every", "must be > 0").into());
                }
                if !(gamma > 0.0 && gamma <= 1.0) {
                    return Err(CoreError::invalid(
                        "schedule.gamma",
                        format!("must be in (0, 1], got {gamma}"),
                    )
                    .into());
                }
                Ok(())
            }
            LrSchedule::Cosine { min_lr } => {
                if !(min_lr >= 0.0 && min_lr <= base) {
                    return Err(CoreError::invalid(
                        "schedule.min_lr",
                        format!("must be in [0, learning_rate = {base}], got {min_lr}"),
                    )
                    .into());
                }
                Ok(())
            }
        }
    }
}
