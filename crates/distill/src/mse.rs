use modelopt_tensor_core::Float;
use ndarray::{ArrayRef2, Zip};

use crate::{DistillLoss, Distiller, Result, check_outputs};

/// Logit matching by mean squared error (Ba & Caruana 2014): `mean((student - teacher)^2)` over all
/// elements (torch's `F.mse_loss` with `reduction="mean"`); labels are ignored.
///
/// ```
/// use modelopt_distill::{Distiller, LogitMse};
/// use ndarray::array;
/// let out = LogitMse.loss(&array![[1.0f64, 3.0]], &array![[0.0, 1.0]], &[])?;
/// assert_eq!(out.total, 2.5);
/// assert_eq!(out.grad, array![[1.0, 2.0]]);
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogitMse;

impl<A: Float> Distiller<A> for LogitMse {
    fn loss(
        &self,
        student: &ArrayRef2<A>,
        teacher: &ArrayRef2<A>,
        _labels: &[usize],
    ) -> Result<DistillLoss<A>> {
        check_outputs(student, teacher)?;
        modelopt_tensor_core::stats::check_finite(student)?;
        modelopt_tensor_core::stats::check_finite(teacher)?;
        let n = A::from_usize(student.len()).unwrap_or_else(A::nan);
        let two = A::one() + A::one();
        let mut sum = A::zero();
        let mut grad = student.to_owned();
        Zip::from(&mut grad).and(teacher).for_each(|g, &t| {
            let d = *g - t;
            sum = sum + d * d;
            *g = two * d / n;
        });
        let loss = sum / n;
        Ok(DistillLoss {
            total: loss,
            hard: A::zero(),
            soft: loss,
            grad,
        })
    }
}
