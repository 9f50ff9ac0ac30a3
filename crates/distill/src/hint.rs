use modelopt_nn::{Dense, Init, ParameterVisitor, Parameters};
use modelopt_tensor_core::Float;
use ndarray::{Array2, ArrayRef2, Zip};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::{DistillError, Result};

/// FitNets feature hints (Romero et al. 2015): a learned linear regressor maps a student feature
/// `[batch, student_dim]` to the teacher's feature space `[batch, teacher_dim]`, and the loss is the
/// mean squared error `mean((h_s W^T + b - h_t)^2)`.
///
/// [`HintLoss::loss`] returns the value and `d loss / d h_s` (to add into the student's backward pass,
/// e.g. with `Mlp::backward_with_hidden`) and stores the regressor's own gradients, so any
/// `modelopt_nn::Optimizer` can step the regressor ([`Parameters`] names: `hint.weight`,
/// `hint.bias`).
///
/// ```
/// use modelopt_distill::HintLoss;
/// use ndarray::Array2;
/// let mut hint = HintLoss::<f32>::new(4, 6, 0)?;
/// let (loss, d_student) = hint.loss(&Array2::ones((2, 4)), &Array2::zeros((2, 6)))?;
/// assert!(loss >= 0.0);
/// assert_eq!(d_student.dim(), (2, 4));
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
#[derive(Debug, Clone)]
pub struct HintLoss<A> {
    regressor: Dense<A>,
}

impl<A: Float> HintLoss<A> {
    /// A hint from `student_dim` to `teacher_dim` features, regressor initialised (Xavier) with `seed`.
    ///
    /// ```
    /// use modelopt_distill::HintLoss;
    /// let hint = HintLoss::<f32>::new(16, 512, 0)?;
    /// assert_eq!(hint.regressor().weight().dim(), (512, 16));
    /// # Ok::<(), modelopt_distill::DistillError>(())
    /// ```
    pub fn new(student_dim: usize, teacher_dim: usize, seed: u64) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        Ok(HintLoss {
            regressor: Dense::new(student_dim, teacher_dim, Init::XavierUniform, &mut rng)?,
        })
    }

    /// A hint with a given regressor (weight `[teacher_dim, student_dim]`).
    ///
    /// ```
    /// use modelopt_distill::HintLoss;
    /// use modelopt_nn::Dense;
    /// use ndarray::array;
    /// let hint = HintLoss::from_regressor(Dense::from_parts(array![[1.0f32, 0.0]], array![0.0])?);
    /// assert_eq!(hint.regressor().in_features(), 2);
    /// # Ok::<(), modelopt_distill::DistillError>(())
    /// ```
    pub fn from_regressor(regressor: Dense<A>) -> Self {
        HintLoss { regressor }
    }

    /// The linear regressor.
    ///
    /// ```
    /// use modelopt_distill::HintLoss;
    /// assert_eq!(HintLoss::<f64>::new(3, 5, 0)?.regressor().out_features(), 5);
    /// # Ok::<(), modelopt_distill::DistillError>(())
    /// ```
    pub fn regressor(&self) -> &Dense<A> {
        &self.regressor
    }

    /// Loss and `d loss / d student_feature`; the regressor's gradients are stored for an optimizer step.
    ///
    /// ```
    /// use modelopt_distill::HintLoss;
    /// use modelopt_nn::{Optimizer, Sgd};
    /// use ndarray::Array2;
    /// let mut hint = HintLoss::<f32>::new(2, 3, 0)?;
    /// let (loss, _d_student) = hint.loss(&Array2::ones((4, 2)), &Array2::ones((4, 3)))?;
    /// Sgd::builder(0.1).build()?.step(&mut hint)?; // the regressor learns too
    /// assert!(hint.loss(&Array2::ones((4, 2)), &Array2::ones((4, 3)))?.0 < loss);
    /// # Ok::<(), modelopt_distill::DistillError>(())
    /// ```
    pub fn loss(
        &mut self,
        student_feature: &ArrayRef2<A>,
        teacher_feature: &ArrayRef2<A>,
    ) -> Result<(A, Array2<A>)> {
        if teacher_feature.ncols() != self.regressor.out_features() {
            return Err(DistillError::ClassMismatch {
                student: self.regressor.out_features(),
                teacher: teacher_feature.ncols(),
            });
        }
        if teacher_feature.nrows() != student_feature.nrows() {
            return Err(DistillError::BatchMismatch {
                what: "teacher feature",
                expected: student_feature.nrows(),
                found: teacher_feature.nrows(),
            });
        }
        let mut diff = self.regressor.forward(student_feature)?;
        let n = A::from_usize(diff.len()).unwrap_or_else(A::nan);
        let two = A::one() + A::one();
        let mut sum = A::zero();
        Zip::from(&mut diff).and(teacher_feature).for_each(|d, &t| {
            let e = *d - t;
            sum = sum + e * e;
            *d = two * e / n;
        });
        let grad = self
            .regressor
            .backward(student_feature, &diff, true)?
            .unwrap_or_else(|| Array2::zeros(student_feature.raw_dim()));
        Ok((sum / n, grad))
    }
}

impl<A: Float> Parameters<A> for HintLoss<A> {
    fn visit_parameters(&mut self, f: &mut ParameterVisitor<'_, A>) {
        // Dense exposes its gradients read-only; copy them out before borrowing the weights mutably.
        let (gw, gb) = (
            self.regressor.weight_grad().clone(),
            self.regressor.bias_grad().clone(),
        );
        f(
            "hint.weight",
            self.regressor.weight_mut().view_mut().into_dyn(),
            gw.view().into_dyn(),
        );
        f(
            "hint.bias",
            self.regressor.bias_mut().view_mut().into_dyn(),
            gb.view().into_dyn(),
        );
    }
}
