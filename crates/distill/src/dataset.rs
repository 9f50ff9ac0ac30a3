use modelopt_tensor_core::CoreError;
use ndarray::ArrayView2;

use crate::{DistillError, Result};

/// A split of data for the trainer: inputs `[samples, features]`, one label per sample, and
/// optionally stored teacher outputs `[samples, classes]` (offline distillation from a teacher in
/// any framework, e.g. logits saved with `numpy.save` and read by [`crate::read_npy_2d`]).
///
/// ```
/// use modelopt_distill::Dataset;
/// use ndarray::Array2;
/// let x = Array2::<f32>::zeros((3, 4));
/// let t = Array2::<f32>::zeros((3, 10));
/// let data = Dataset::new(x.view(), &[0, 1, 2])?.with_teacher_logits(t.view())?;
/// assert_eq!(data.len(), 3);
/// assert!(Dataset::new(x.view(), &[0, 1]).is_err());
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Dataset<'a, A> {
    pub(crate) inputs: ArrayView2<'a, A>,
    pub(crate) labels: &'a [usize],
    pub(crate) teacher_logits: Option<ArrayView2<'a, A>>,
}

impl<'a, A> Dataset<'a, A> {
    /// Inputs and labels (one per row, at least one row).
    pub fn new(inputs: ArrayView2<'a, A>, labels: &'a [usize]) -> Result<Self> {
        if inputs.nrows() == 0 {
            return Err(CoreError::Empty {
                what: "dataset inputs",
            }
            .into());
        }
        if labels.len() != inputs.nrows() {
            return Err(DistillError::BatchMismatch {
                what: "labels",
                expected: inputs.nrows(),
                found: labels.len(),
            });
        }
        Ok(Dataset {
            inputs,
            labels,
            teacher_logits: None,
        })
    }

    /// Attach stored teacher outputs, one row per sample.
    pub fn with_teacher_logits(mut self, logits: ArrayView2<'a, A>) -> Result<Self> {
        if logits.nrows() != self.inputs.nrows() {
            return Err(DistillError::BatchMismatch {
                what: "stored teacher logits",
                expected: self.inputs.nrows(),
                found: logits.nrows(),
            });
        }
        self.teacher_logits = Some(logits);
        Ok(self)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.inputs.nrows()
    }

    /// Always `false` (construction rejects an empty split).
    pub fn is_empty(&self) -> bool {
        self.inputs.nrows() == 0
    }

    /// The inputs.
    pub fn inputs(&self) -> ArrayView2<'a, A> {
        self.inputs
    }

    /// The labels.
    pub fn labels(&self) -> &'a [usize] {
        self.labels
    }
}
