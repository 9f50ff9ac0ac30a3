use modelopt_nn::NnError;
use modelopt_tensor_core::CoreError;
use thiserror::Error;

/// Errors of `modelopt-distill`.
///
/// ```
/// use modelopt_distill::{DistillError, KdLoss};
/// let err = KdLoss::<f32>::new(0.0, 0.5).unwrap_err();
/// assert!(matches!(err, DistillError::Core(_)));
/// assert!(err.to_string().contains("temperature"));
/// ```
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum DistillError {
    /// A base error (invalid parameter, shape mismatch, non-finite value, empty input).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// An error from the network crate (label out of range, missing forward cache, parameters).
    #[error(transparent)]
    Nn(#[from] NnError),
    /// Student and teacher disagree on the number of classes.
    #[error("class count mismatch: student outputs {student} classes, teacher {teacher}")]
    ClassMismatch {
        /// Columns of the student's outputs.
        student: usize,
        /// Columns of the teacher's outputs.
        teacher: usize,
    },
    /// Two inputs that must have one row per sample disagree.
    #[error("batch size mismatch: {what} has {found} rows, expected {expected}")]
    BatchMismatch {
        /// Which input is off (e.g. "teacher logits", "labels").
        what: &'static str,
        /// The expected number of rows.
        expected: usize,
        /// The number found.
        found: usize,
    },
    /// The training loss became NaN or infinite: training diverged (learning rate too high?).
    #[error("training diverged: loss {loss} at epoch {epoch}, step {step}")]
    Diverged {
        /// Epoch (from 1).
        epoch: usize,
        /// Optimizer step within the run (from 1).
        step: usize,
        /// The non-finite loss.
        loss: f64,
    },
    /// Training needs teacher outputs, but neither a teacher model nor stored logits were given.
    #[error("no teacher: give a teacher model or stored teacher logits for {split}")]
    NoTeacher {
        /// Which data split lacks teacher outputs.
        split: &'static str,
    },
    /// A file could not be read or is not in the expected format.
    #[error("{path}: {reason}")]
    File {
        /// The file's path.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// `Result` with [`DistillError`].
pub type Result<T, E = DistillError> = std::result::Result<T, E>;
