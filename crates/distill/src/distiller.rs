use modelopt_tensor_core::Float;
use ndarray::{Array2, ArrayRef2};

use crate::{DistillError, Result};

/// A distillation loss: from the student's outputs, the teacher's outputs and the labels, the loss
/// value and its gradient with respect to the student's outputs.
///
/// Implement it to plug your own objective into the [`crate::Trainer`]. Losses that do not use labels
/// ignore them; losses without a label term report `hard = 0`.
///
/// ```
/// use modelopt_distill::{Distiller, KdLoss};
/// use ndarray::array;
/// let kd = KdLoss::new(4.0, 0.1)?;
/// let s = array![[1.0f64, 2.0, 0.5]];
/// let out = kd.loss(&s, &s, &[1])?;
/// assert!(out.soft.abs() < 1e-12); // identical logits: no KL term
/// assert_eq!(out.grad.dim(), (1, 3));
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
pub trait Distiller<A: Float> {
    /// The loss (batch mean) and `d loss / d student`.
    fn loss(
        &self,
        student: &ArrayRef2<A>,
        teacher: &ArrayRef2<A>,
        labels: &[usize],
    ) -> Result<DistillLoss<A>>;
}

/// Value of a distillation loss, its parts and its gradient w.r.t. the student outputs.
///
/// ```
/// use modelopt_distill::{Distiller, LogitMse};
/// use ndarray::array;
/// let out = LogitMse.loss(&array![[1.0f32, 0.0]], &array![[0.0f32, 0.0]], &[])?;
/// assert_eq!((out.total, out.hard, out.soft), (0.5, 0.0, 0.5));
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DistillLoss<A> {
    /// The loss that is minimised.
    pub total: A,
    /// The label term (e.g. cross-entropy with the labels), unweighted; 0 if the loss has none.
    pub hard: A,
    /// The teacher term (e.g. `T^2 KL`), unweighted.
    pub soft: A,
    /// `d total / d student outputs`, same shape as the student outputs.
    pub grad: Array2<A>,
}

/// Check that student and teacher outputs have the same shape (and at least one element).
///
/// ```
/// use modelopt_distill::{check_outputs, DistillError};
/// use ndarray::Array2;
/// let s = Array2::<f32>::zeros((4, 10));
/// let t = Array2::<f32>::zeros((4, 9));
/// assert!(matches!(check_outputs(&s, &t), Err(DistillError::ClassMismatch { student: 10, teacher: 9 })));
/// ```
pub fn check_outputs<A>(student: &ArrayRef2<A>, teacher: &ArrayRef2<A>) -> Result<()> {
    if student.ncols() != teacher.ncols() {
        return Err(DistillError::ClassMismatch {
            student: student.ncols(),
            teacher: teacher.ncols(),
        });
    }
    if student.nrows() != teacher.nrows() {
        return Err(DistillError::BatchMismatch {
            what: "teacher outputs",
            expected: student.nrows(),
            found: teacher.nrows(),
        });
    }
    if student.is_empty() {
        return Err(modelopt_tensor_core::CoreError::Empty {
            what: "student outputs",
        }
        .into());
    }
    Ok(())
}
