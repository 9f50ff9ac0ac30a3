use modelopt_tensor_core::{CoreError, Float};
use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, Zip};

use crate::float_const as c;
use crate::{NnError, Result};

/// The callback a [`Parameters`] implementation calls for each parameter: `(name, value, gradient)`.
pub type ParameterVisitor<'v, A> = dyn FnMut(&str, ArrayViewMutD<'_, A>, ArrayViewD<'_, A>) + 'v;

/// Anything with named trainable parameters and their gradients, visited in a fixed order.
///
/// Optimizers work through this trait, so they update any model (an [`crate::Mlp`], a hint
/// projection, your own layer) without knowing its structure.
///
/// ```
/// use modelopt_nn::{Mlp, Parameters};
/// let mut mlp = Mlp::<f32>::builder(&[3, 2]).build()?;
/// let mut names = Vec::new();
/// mlp.visit_parameters(&mut |name, _value, _grad| names.push(name.to_string()));
/// assert_eq!(names, ["layers.0.weight", "layers.0.bias"]);
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
pub trait Parameters<A> {
    /// Call `f(name, value, gradient)` for every parameter, always in the same order.
    fn visit_parameters(&mut self, f: &mut ParameterVisitor<'_, A>);
}

/// An optimizer: updates parameters from their gradients, one step at a time.
///
/// ```
/// use modelopt_nn::{Mlp, Optimizer, Sgd};
/// let mut mlp = Mlp::<f32>::builder(&[3, 2]).build()?;
/// let mut opt = Sgd::builder(0.1).momentum(0.9).build()?;
/// opt.step(&mut mlp)?; // gradients are zero before any backward: nothing moves
/// opt.set_learning_rate(0.01);
/// assert_eq!(opt.learning_rate(), 0.01);
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
pub trait Optimizer<A> {
    /// Apply one update to every parameter of `model` from its current gradient.
    fn step(&mut self, model: &mut dyn Parameters<A>) -> Result<()>;
    /// The current learning rate.
    fn learning_rate(&self) -> f64;
    /// Set the learning rate (learning-rate schedules call this before a step).
    fn set_learning_rate(&mut self, learning_rate: f64);
}

fn check_rate(name: &'static str, v: f64, lo: f64, hi_exclusive: f64) -> Result<()> {
    if v.is_finite() && v >= lo && v < hi_exclusive {
        Ok(())
    } else {
        Err(CoreError::invalid(name, format!("must be in [{lo}, {hi_exclusive}), got {v}")).into())
    }
}

/// Per-parameter optimizer state, created on the first step and checked by shape afterwards.
#[derive(Debug, Clone, Default)]
struct State<A> {
    slots: Vec<ArrayD<A>>,
}

impl<A: Float> State<A> {
    fn slot(&mut self, index: usize, name: &str, shape: &[usize]) -> Result<&mut ArrayD<A>> {
        if index == self.slots.len() {
            self.slots.push(ArrayD::zeros(shape));
        }
        let slot = &mut self.slots[index];
        if slot.shape() != shape {
            return Err(NnError::Parameter {
                name: name.to_string(),
                reason: format!(
                    "shape changed from {:?} to {shape:?} since the optimizer's first step",
                    slot.shape()
                ),
            });
        }
        Ok(slot)
    }
}

/// Stochastic gradient descent with momentum and L2 weight decay, as `torch.optim.SGD`:
/// `g' = g + wd w`, `buf = momentum buf + g'`, `w -= lr buf`.
///
/// ```
/// use modelopt_nn::Sgd;
/// let opt = Sgd::<f32>::builder(0.05).momentum(0.9).weight_decay(1e-4).build()?;
/// assert!(Sgd::<f32>::builder(0.05).momentum(1.5).build().is_err());
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Sgd<A> {
    learning_rate: f64,
    momentum: f64,
    weight_decay: f64,
    velocity: State<A>,
}

/// Unchecked parameters of [`Sgd`]; defaults: momentum 0, weight decay 0.
///
/// ```
/// use modelopt_nn::Sgd;
/// let opt = Sgd::<f64>::builder(0.1).build()?;
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SgdBuilder<A> {
    marker: std::marker::PhantomData<A>,
    learning_rate: f64,
    momentum: f64,
    weight_decay: f64,
}

impl<A: Float> SgdBuilder<A> {
    /// Momentum in `[0, 1)`.
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }
    /// L2 weight decay `>= 0` (added to the gradient).
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
    /// Validate and build.
    pub fn build(self) -> Result<Sgd<A>> {
        check_rate("learning_rate", self.learning_rate, 0.0, f64::INFINITY)?;
        check_rate("momentum", self.momentum, 0.0, 1.0)?;
        check_rate("weight_decay", self.weight_decay, 0.0, f64::INFINITY)?;
        Ok(Sgd {
            learning_rate: self.learning_rate,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            velocity: State { slots: Vec::new() },
        })
    }
}

impl<A: Float> Sgd<A> {
    /// Parameters with learning rate `learning_rate` (`>= 0`); see [`SgdBuilder`].
    pub fn builder(learning_rate: f64) -> SgdBuilder<A> {
        SgdBuilder {
            marker: std::marker::PhantomData,
            learning_rate,
            momentum: 0.0,
            weight_decay: 0.0,
        }
    }
}

impl<A: Float> Optimizer<A> for Sgd<A> {
    fn step(&mut self, model: &mut dyn Parameters<A>) -> Result<()> {
        let (lr, mom, wd) = (
            c::<A>(self.learning_rate),
            c::<A>(self.momentum),
            c::<A>(self.weight_decay),
        );
        let use_momentum = self.momentum > 0.0;
        let mut index = 0;
        let mut error = None;
        let velocity = &mut self.velocity;
        model.visit_parameters(&mut |name, mut w, g| {
            if error.is_some() {
                return;
            }
            if !use_momentum {
                Zip::from(&mut w)
                    .and(&g)
                    .for_each(|w, &g| *w = *w - lr * (g + wd * *w));
                return;
            }
            match velocity.slot(index, name, w.shape()) {
                Ok(buf) => Zip::from(&mut w).and(&g).and(buf).for_each(|w, &g, b| {
                    *b = mom * *b + g + wd * *w;
                    *w = *w - lr * *b;
                }),
                Err(e) => error = Some(e),
            }
            index += 1;
        });
        error.map_or(Ok(()), Err)
    }

    fn learning_rate(&self) -> f64 {
        self.learning_rate
    }

    fn set_learning_rate(&mut self, learning_rate: f64) {
        self.learning_rate = learning_rate;
    }
}

/// Adam (Kingma & Ba 2015) with bias correction and L2 weight decay added to the gradient, as
/// `torch.optim.Adam`.
///
/// ```
/// use modelopt_nn::Adam;
/// let opt = Adam::<f32>::builder(1e-3).betas(0.9, 0.999).eps(1e-8).build()?;
/// assert!(Adam::<f32>::builder(1e-3).betas(1.0, 0.999).build().is_err());
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Adam<A> {
    learning_rate: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    steps: i32,
    first: State<A>,
    second: State<A>,
}

/// Unchecked parameters of [`Adam`]; defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0.
///
/// ```
/// use modelopt_nn::Adam;
/// let opt = Adam::<f64>::builder(1e-3).weight_decay(1e-5).build()?;
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct AdamBuilder<A> {
    marker: std::marker::PhantomData<A>,
    learning_rate: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl<A: Float> AdamBuilder<A> {
    /// Decay rates of the first and second moment estimates, each in `[0, 1)`.
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }
    /// Term added to the denominator, `> 0`.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
    /// L2 weight decay `>= 0`.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
    /// Validate and build.
    pub fn build(self) -> Result<Adam<A>> {
        check_rate("learning_rate", self.learning_rate, 0.0, f64::INFINITY)?;
        check_rate("beta1", self.beta1, 0.0, 1.0)?;
        check_rate("beta2", self.beta2, 0.0, 1.0)?;
        check_rate("weight_decay", self.weight_decay, 0.0, f64::INFINITY)?;
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(CoreError::invalid(
                "eps",
                format!("must be finite and > 0, got {}", self.eps),
            )
            .into());
        }
        Ok(Adam {
            learning_rate: self.learning_rate,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            steps: 0,
            first: State { slots: Vec::new() },
            second: State { slots: Vec::new() },
        })
    }
}

impl<A: Float> Adam<A> {
    /// Parameters with learning rate `learning_rate` (`>= 0`); see [`AdamBuilder`].
    pub fn builder(learning_rate: f64) -> AdamBuilder<A> {
        AdamBuilder {
            marker: std::marker::PhantomData,
            learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl<A: Float> Optimizer<A> for Adam<A> {
    fn step(&mut self, model: &mut dyn Parameters<A>) -> Result<()> {
        self.steps = self.steps.saturating_add(1);
        let (b1, b2) = (c::<A>(self.beta1), c::<A>(self.beta2));
        let correction1 = c::<A>(1.0 - self.beta1.powi(self.steps));
        let correction2 = c::<A>(1.0 - self.beta2.powi(self.steps));
        let (lr, eps, wd) = (
            c::<A>(self.learning_rate),
            c::<A>(self.eps),
            c::<A>(self.weight_decay),
        );
        let (first, second) = (&mut self.first, &mut self.second);
        let mut index = 0;
        let mut error = None;
        model.visit_parameters(&mut |name, mut w, g| {
            if error.is_some() {
                return;
            }
            let m = match first.slot(index, name, w.shape()) {
                Ok(m) => m,
                Err(e) => return error = Some(e),
            };
            let v = match second.slot(index, name, w.shape()) {
                Ok(v) => v,
                Err(e) => return error = Some(e),
            };
            Zip::from(&mut w)
                .and(&g)
                .and(m)
                .and(v)
                .for_each(|w, &g, m, v| {
                    let g = g + wd * *w;
                    *m = b1 * *m + (A::one() - b1) * g;
                    *v = b2 * *v + (A::one() - b2) * g * g;
                    let denom = (*v / correction2).sqrt() + eps;
                    *w = *w - lr * (*m / correction1) / denom;
                });
            index += 1;
        });
        error.map_or(Ok(()), Err)
    }

    fn learning_rate(&self) -> f64 {
        self.learning_rate
    }

    fn set_learning_rate(&mut self, learning_rate: f64) {
        self.learning_rate = learning_rate;
    }
}
