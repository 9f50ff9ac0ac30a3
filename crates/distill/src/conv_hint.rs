use modelopt_nn::{Conv2d, Init, ParameterVisitor, Parameters};
use modelopt_tensor_core::{CoreError, Float};
use ndarray::{Array4, ArrayD, Ix4, Zip};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::{DistillError, Result};

/// FitNets hints between convolutional layers (Romero et al. 2015): a learned 1x1 convolution maps
/// the student's feature map `[batch, student_channels, h, w]` to the teacher's channels, and the
/// loss is the mean squared error against the teacher's map `[batch, teacher_channels, h, w]` of
/// the same spatial size: `mean((conv1x1(f_s) - f_t)^2)` over every element.
///
/// [`ConvHintLoss::loss`] returns the value and `d loss / d f_s` (to add into the student's
/// backward pass with `Sequential::backward_with_hidden`) and stores the regressor's gradients, so
/// any `modelopt_nn::Optimizer` can step it ([`Parameters`] names: `hint.weight`, `hint.bias`).
///
/// ```
/// use modelopt_distill::ConvHintLoss;
/// use modelopt_nn::{Optimizer, Sgd};
/// use ndarray::{Array4, IxDyn, ArrayD};
/// let mut hint = ConvHintLoss::<f32>::new(8, 64, 0)?;
/// let student = ArrayD::from_elem(IxDyn(&[2, 8, 5, 5]), 0.5f32);
/// let teacher = ArrayD::from_elem(IxDyn(&[2, 64, 5, 5]), 1.0f32);
/// let (loss, d_student) = hint.loss(&student, &teacher)?;
/// assert_eq!(d_student.shape(), student.shape());
/// Sgd::builder(0.1).build()?.step(&mut hint)?; // the regressor learns too
/// assert!(hint.loss(&student, &teacher)?.0 < loss);
/// // Maps of different spatial size are an error, not a panic.
/// assert!(hint.loss(&student, &ArrayD::zeros(IxDyn(&[2, 64, 4, 4]))).is_err());
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ConvHintLoss<A> {
    regressor: Conv2d<A>,
}

fn as4<A: Float>(x: &ArrayD<A>, what: &str) -> Result<Array4<A>> {
    x.view()
        .into_dimensionality::<Ix4>()
        .map(|v| v.to_owned())
        .map_err(|_| {
            CoreError::invalid(
                "feature map",
                format!(
                    "{what} must be [batch, channels, height, width], got {:?}",
                    x.shape()
                ),
            )
            .into()
        })
}

impl<A: Float> ConvHintLoss<A> {
    /// A hint from `student_channels` to `teacher_channels`, the 1x1 regressor initialised (Xavier)
    /// with `seed`.
    pub fn new(student_channels: usize, teacher_channels: usize, seed: u64) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        Ok(ConvHintLoss {
            regressor: Conv2d::builder(student_channels, teacher_channels, 1)
                .init(Init::XavierUniform)
                .build(&mut rng)?,
        })
    }

    /// A hint with a given regressor (a 1x1 convolution or any other that keeps the spatial size).
    pub fn from_regressor(regressor: Conv2d<A>) -> Self {
        ConvHintLoss { regressor }
    }

    /// The regressor.
    pub fn regressor(&self) -> &Conv2d<A> {
        &self.regressor
    }

    /// Loss and `d loss / d student_map`; the regressor's gradients are stored for an optimizer
    /// step. Errors (naming the mismatch) when the channels, batch or spatial sizes disagree.
    pub fn loss(
        &mut self,
        student_map: &ArrayD<A>,
        teacher_map: &ArrayD<A>,
    ) -> Result<(A, ArrayD<A>)> {
        let s = as4(student_map, "the student's map")?;
        let t = as4(teacher_map, "the teacher's map")?;
        if s.dim().1 != self.regressor.in_channels() || t.dim().1 != self.regressor.out_channels() {
            return Err(CoreError::invalid(
                "hint regressor",
                format!(
                    "maps {} channels to {}, but the student's map has {} and the teacher's {}",
                    self.regressor.in_channels(),
                    self.regressor.out_channels(),
                    s.dim().1,
                    t.dim().1
                ),
            )
            .into());
        }
        if s.dim().0 != t.dim().0 {
            return Err(DistillError::BatchMismatch {
                what: "teacher feature map",
                expected: s.dim().0,
                found: t.dim().0,
            });
        }
        let mut diff = self.regressor.forward(&s)?;
        if diff.dim() != t.dim() {
            return Err(CoreError::invalid(
                "feature map",
                format!(
                    "the regressed student map is {:?}, the teacher's {:?}: hint layers need the same height and width",
                    diff.shape(),
                    t.shape()
                ),
            )
            .into());
        }
        let n = A::from_usize(diff.len()).unwrap_or_else(A::nan);
        let two = A::one() + A::one();
        let mut sum = A::zero();
        Zip::from(&mut diff).and(&t).for_each(|d, &tv| {
            let e = *d - tv;
            sum = sum + e * e;
            *d = two * e / n;
        });
        let grad = self
            .regressor
            .backward(&s, &diff, true)?
            .unwrap_or_else(|| Array4::zeros(s.raw_dim()));
        Ok((sum / n, grad.into_dyn()))
    }
}

impl<A: Float> Parameters<A> for ConvHintLoss<A> {
    fn visit_parameters(&mut self, f: &mut ParameterVisitor<'_, A>) {
        // Conv2d exposes its gradients read-only; copy them out before borrowing the weights mutably.
        let (gw, gb) = (
            self.regressor.weight_grad().clone(),
            self.regressor.bias_grad().cloned(),
        );
        f(
            "hint.weight",
            self.regressor.weight_mut().view_mut().into_dyn(),
            gw.view().into_dyn(),
        );
        if let (Some(b), Some(gb)) = (self.regressor.bias_mut(), gb) {
            f("hint.bias", b.view_mut().into_dyn(), gb.view().into_dyn());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Dimension, IxDyn};

    fn map(shape: &[usize], k: f64) -> ArrayD<f64> {
        ArrayD::from_shape_fn(IxDyn(shape), |i| {
            let s: usize = (0..i.ndim()).map(|a| (a + 3) * i[a]).sum();
            ((s as f64 * k).sin() * 0.8) + 0.1
        })
    }

    /// The loss recomputed independently: the 1x1 conv as a channel mix at every pixel.
    fn reference(hint: &ConvHintLoss<f64>, s: &ArrayD<f64>, t: &ArrayD<f64>) -> f64 {
        let w = hint.regressor().weight();
        let b = hint.regressor().bias().unwrap();
        let (n, cs, h, wd) = (s.shape()[0], s.shape()[1], s.shape()[2], s.shape()[3]);
        let ct = t.shape()[1];
        let mut sum = 0.0;
        for i in 0..n {
            for o in 0..ct {
                for y in 0..h {
                    for x in 0..wd {
                        let mut v = b[o];
                        for c in 0..cs {
                            v += w[[o, c, 0, 0]] * s[[i, c, y, x]];
                        }
                        sum += (v - t[[i, o, y, x]]).powi(2);
                    }
                }
            }
        }
        sum / (n * ct * h * wd) as f64
    }

    #[test]
    fn value_matches_an_independent_sum_and_gradients_match_finite_differences() {
        let mut hint = ConvHintLoss::<f64>::new(3, 5, 7).unwrap();
        let s = map(&[2, 3, 4, 3], 0.37);
        let t = map(&[2, 5, 4, 3], 0.91);
        let (loss, ds) = hint.loss(&s, &t).unwrap();
        assert!((loss - reference(&hint, &s, &t)).abs() < 1e-12);
        let eps = 1e-6;
        // d loss / d student map.
        for (idx, &g) in ds.indexed_iter().step_by(5) {
            let (mut p, mut m) = (s.clone(), s.clone());
            p[&idx] += eps;
            m[&idx] -= eps;
            let fd = (reference(&hint, &p, &t) - reference(&hint, &m, &t)) / (2.0 * eps);
            assert!((fd - g).abs() < 1e-8, "d/ds at {idx:?}: {fd} vs {g}");
        }
        // d loss / d regressor weight and bias.
        let gw = hint.regressor().weight_grad().clone();
        let gb = hint.regressor().bias_grad().unwrap().clone();
        for o in 0..5 {
            for c in 0..3 {
                let mut p = hint.clone();
                p.regressor.weight_mut()[[o, c, 0, 0]] += eps;
                let mut m = hint.clone();
                m.regressor.weight_mut()[[o, c, 0, 0]] -= eps;
                let fd = (reference(&p, &s, &t) - reference(&m, &s, &t)) / (2.0 * eps);
                assert!((fd - gw[[o, c, 0, 0]]).abs() < 1e-8, "d/dw[{o},{c}]");
            }
            let mut p = hint.clone();
            p.regressor.bias_mut().unwrap()[o] += eps;
            let mut m = hint.clone();
            m.regressor.bias_mut().unwrap()[o] -= eps;
            let fd = (reference(&p, &s, &t) - reference(&m, &s, &t)) / (2.0 * eps);
            assert!((fd - gb[o]).abs() < 1e-8, "d/db[{o}]");
        }
    }

    #[test]
    fn mismatched_maps_are_errors() {
        let mut hint = ConvHintLoss::<f64>::new(3, 5, 0).unwrap();
        let s = map(&[2, 3, 4, 4], 0.1);
        for t in [
            map(&[2, 4, 4, 4], 0.2),
            map(&[1, 5, 4, 4], 0.2),
            map(&[2, 5, 3, 4], 0.2),
            map(&[2, 5, 16], 0.2),
        ] {
            assert!(hint.loss(&s, &t).is_err(), "{:?}", t.shape());
        }
        assert!(
            hint.loss(&map(&[2, 4, 4, 4], 0.1), &map(&[2, 5, 4, 4], 0.2))
                .is_err()
        );
    }
}
