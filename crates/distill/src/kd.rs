use modelopt_nn::{check_labels, log_softmax};
use modelopt_tensor_core::{CoreError, Float};
use ndarray::{Array2, ArrayRef2, Zip};

use crate::{DistillLoss, Distiller, Result, check_outputs};

/// Hinton knowledge distillation (Hinton, Vinyals & Dean 2015):
/// `alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T))`,
/// batch mean (torch's `reduction="batchmean"`). The `T^2` keeps the soft gradient's scale independent
/// of the temperature.
///
/// Computed with log-sum-exp, so logits of magnitude `1e3` are fine; the value and gradient match
/// torch autograd to 1e-9 (relative) in f64, and to 1e-5 in f32 (sums are accumulated in f64 for
/// both). `hard` is the CE, `soft` is `T^2 KL`.
///
/// ```
/// use modelopt_distill::{Distiller, KdLoss};
/// use ndarray::array;
/// let kd = KdLoss::builder().temperature(4.0).alpha(0.1).build()?;
/// let student = array![[2.0f32, 0.5, -1.0], [0.0, 0.0, 3.0]];
/// let teacher = array![[3.0f32, 1.0, -2.0], [0.5, 0.0, 4.0]];
/// let out = kd.loss(&student, &teacher, &[0, 2])?;
/// assert!((out.total - (0.1 * out.hard + 0.9 * out.soft)).abs() < 1e-6);
/// assert!(KdLoss::<f32>::new(4.0, 1.5).is_err());
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KdLoss<A> {
    temperature: A,
    alpha: A,
}

/// Unchecked parameters of [`KdLoss`]. Defaults: temperature 4, alpha 0.1.
///
/// ```
/// use modelopt_distill::KdLoss;
/// let kd = KdLoss::<f64>::builder().temperature(2.0).build()?;
/// assert_eq!((kd.temperature(), kd.alpha()), (2.0, 0.1));
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KdLossBuilder<A> {
    temperature: f64,
    alpha: f64,
    marker: std::marker::PhantomData<A>,
}

impl<A: Float> KdLossBuilder<A> {
    /// Softmax temperature, `> 0` and finite.
    pub fn temperature(mut self, temperature: f64) -> Self {
        self.temperature = temperature;
        self
    }
    /// Weight of the hard (label) term, in `[0, 1]`.
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }
    /// Validate and build.
    pub fn build(self) -> Result<KdLoss<A>> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(CoreError::invalid(
                "temperature",
                format!("must be finite and > 0, got {}", self.temperature),
            )
            .into());
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(CoreError::invalid(
                "alpha",
                format!("must be in [0, 1], got {}", self.alpha),
            )
            .into());
        }
        let cast = |v: f64, name| {
            A::from_f64(v).ok_or_else(|| CoreError::invalid(name, "not representable"))
        };
        Ok(KdLoss {
            temperature: cast(self.temperature, "temperature")?,
            alpha: cast(self.alpha, "alpha")?,
        })
    }
}

impl<A: Float> KdLoss<A> {
    /// Parameters with the defaults (temperature 4, alpha 0.1); see [`KdLossBuilder`].
    pub fn builder() -> KdLossBuilder<A> {
        KdLossBuilder {
            temperature: 4.0,
            alpha: 0.1,
            marker: std::marker::PhantomData,
        }
    }

    /// Shorthand for `builder().temperature(temperature).alpha(alpha).build()`.
    ///
    /// ```
    /// use modelopt_distill::KdLoss;
    /// assert!(KdLoss::<f32>::new(-1.0, 0.5).is_err());
    /// assert!(KdLoss::<f32>::new(2.0, 0.5).is_ok());
    /// ```
    pub fn new(temperature: f64, alpha: f64) -> Result<Self> {
        Self::builder()
            .temperature(temperature)
            .alpha(alpha)
            .build()
    }

    /// The temperature.
    pub fn temperature(&self) -> A {
        self.temperature
    }

    /// The weight of the hard (label) term.
    pub fn alpha(&self) -> A {
        self.alpha
    }
}

impl<A: Float> Distiller<A> for KdLoss<A> {
    /// Labels may be empty when `alpha == 0` (pure distillation, no labels needed).
    fn loss(
        &self,
        student: &ArrayRef2<A>,
        teacher: &ArrayRef2<A>,
        labels: &[usize],
    ) -> Result<DistillLoss<A>> {
        check_outputs(student, teacher)?;
        modelopt_tensor_core::stats::check_finite(student)?;
        modelopt_tensor_core::stats::check_finite(teacher)?;
        let use_labels = !(self.alpha == A::zero() && labels.is_empty());
        if use_labels {
            check_labels(student, labels)?;
        }
        // Accumulate in f64 whatever A is: in f32 the KL at high temperature (a small difference of
        // log-probabilities, then times T^2) loses ~1e-4 relative to cancellation; in f64 the result
        // is exact to the f32 rounding of the output. The logits matrix is small next to the network.
        let s = student.mapv(|v| v.to_f64_lossless());
        let t = teacher.mapv(|v| v.to_f64_lossless());
        let (temperature, alpha) = (
            self.temperature.to_f64_lossless(),
            self.alpha.to_f64_lossless(),
        );
        let out = hinton(&s, &t, use_labels.then_some(labels), temperature, alpha);
        let cast = |v: f64| A::from_f64(v).unwrap_or_else(A::nan);
        Ok(DistillLoss {
            total: cast(out.total),
            hard: cast(out.hard),
            soft: cast(out.soft),
            grad: out.grad.mapv(cast),
        })
    }
}

/// The Hinton loss in f64 on checked inputs.
fn hinton(
    student: &Array2<f64>,
    teacher: &Array2<f64>,
    labels: Option<&[usize]>,
    t: f64,
    alpha: f64,
) -> DistillLoss<f64> {
    let batch = student.nrows() as f64;
    let beta = 1.0 - alpha;

    // Soft term: p = softmax(teacher/T), log q = log_softmax(student/T); KL(p||q) = sum p (log p - log q).
    let log_p = log_softmax(&teacher.mapv(|v| v / t));
    let log_q = log_softmax(&student.mapv(|v| v / t));
    let mut kl = 0.0;
    Zip::from(&log_p).and(&log_q).for_each(|&lp, &lq| {
        // p underflowing to 0 contributes exactly 0 (lp stays finite, so no 0 * inf).
        kl += lp.exp() * (lp - lq);
    });
    let soft = t * t * kl / batch;

    // d soft / d s = T^2 (q - p) / T / B = T (q - p) / B.
    let soft_scale = beta * t / batch;
    let mut grad = log_q;
    Zip::from(&mut grad)
        .and(&log_p)
        .for_each(|g, &lp| *g = soft_scale * (g.exp() - lp.exp()));

    let mut hard = 0.0;
    if let Some(labels) = labels {
        let log_s = log_softmax(student);
        let hard_scale = alpha / batch;
        for ((mut g_row, ls_row), &y) in grad.rows_mut().into_iter().zip(log_s.rows()).zip(labels) {
            hard -= ls_row[y];
            Zip::from(&mut g_row)
                .and(&ls_row)
                .for_each(|g, &ls| *g += hard_scale * ls.exp());
            g_row[y] -= hard_scale;
        }
        hard /= batch;
    }
    DistillLoss {
        total: alpha * hard + beta * soft,
        hard,
        soft,
        grad,
    }
}
