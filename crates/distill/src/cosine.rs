use modelopt_tensor_core::{CoreError, Float};
use ndarray::{Array2, ArrayRef2, Zip};

use crate::{DistillLoss, Distiller, Result, check_outputs};

/// Cosine distillation loss: `mean_i (1 - cos(student_i, teacher_i))` over the rows, labels ignored.
/// Norms are clamped below at `1e-8` (as torch's `cosine_similarity`) so a zero row gives a finite
/// value.
///
/// ```
/// use modelopt_distill::{CosineLoss, Distiller};
/// use ndarray::array;
/// let out = CosineLoss.loss(&array![[1.0f64, 0.0], [0.0, 2.0]], &array![[3.0, 0.0], [1.0, 0.0]], &[])?;
/// assert!((out.total - 0.5).abs() < 1e-12); // rows: cos 1 and cos 0
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CosineLoss;

impl<A: Float> Distiller<A> for CosineLoss {
    fn loss(
        &self,
        student: &ArrayRef2<A>,
        teacher: &ArrayRef2<A>,
        _labels: &[usize],
    ) -> Result<DistillLoss<A>> {
        check_outputs(student, teacher)?;
        modelopt_tensor_core::stats::check_finite(student)?;
        modelopt_tensor_core::stats::check_finite(teacher)?;
        let batch = A::from_usize(student.nrows()).unwrap_or_else(A::nan);
        let eps =
            A::from_f64(1e-8).ok_or_else(|| CoreError::invalid("eps", "not representable"))?;
        let mut grad = Array2::zeros(student.raw_dim());
        let mut total = A::zero();
        for ((s, t), mut g) in student
            .rows()
            .into_iter()
            .zip(teacher.rows())
            .zip(grad.rows_mut())
        {
            let ss = s.dot(&s);
            let tt = t.dot(&t);
            let st = s.dot(&t);
            let (ns, nt) = (ss.sqrt().max(eps), tt.sqrt().max(eps));
            let cos = st / (ns * nt);
            total = total + A::one() - cos;
            // d cos / d s = t / (|s||t|) - cos s / |s|^2 (for |s| above the clamp), negated for 1 - cos.
            let clamped = ss.sqrt() < eps;
            Zip::from(&mut g).and(&s).and(&t).for_each(|g, &si, &ti| {
                let d = ti / (ns * nt)
                    - if clamped {
                        A::zero()
                    } else {
                        cos * si / (ns * ns)
                    };
                *g = -d / batch;
            });
        }
        let loss = total / batch;
        Ok(DistillLoss {
            total: loss,
            hard: A::zero(),
            soft: loss,
            grad,
        })
    }
}
