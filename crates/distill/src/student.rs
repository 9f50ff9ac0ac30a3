use modelopt_nn::{Mlp, Optimizer, Sequential};
use modelopt_tensor_core::Float;
use ndarray::{Array2, ArrayRef2};

use crate::Result;

/// A trainable model the [`crate::Trainer`] can drive: forward in training mode, backward from the
/// gradient of its outputs, an optimizer step, and inference.
///
/// ```
/// use modelopt_distill::{MlpStudent, Student};
/// use modelopt_nn::{Mlp, Sgd};
/// use ndarray::Array2;
/// let mut s = MlpStudent::new(Mlp::<f32>::builder(&[4, 3]).build()?, Sgd::builder(0.1).build()?);
/// let x = Array2::ones((2, 4));
/// let out = s.forward(&x)?;
/// s.backward(&Array2::ones(out.raw_dim()))?;
/// s.step(0.1)?;
/// assert_eq!(s.predict(&x)?.dim(), (2, 3));
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
pub trait Student<A> {
    /// Training-mode forward pass (caches what `backward` needs).
    fn forward(&mut self, x: &ArrayRef2<A>) -> Result<Array2<A>>;
    /// Backward pass from `d loss / d outputs` of the last `forward`.
    fn backward(&mut self, d_outputs: &ArrayRef2<A>) -> Result<()>;
    /// One optimizer step at the given learning rate.
    fn step(&mut self, learning_rate: f64) -> Result<()>;
    /// Inference-mode outputs (no dropout, no caching).
    fn predict(&self, x: &ArrayRef2<A>) -> Result<Array2<A>>;
}

/// A teacher: anything that produces outputs for a batch of inputs (no gradient needed).
///
/// ```
/// use modelopt_distill::Teacher;
/// use modelopt_nn::Mlp;
/// use ndarray::Array2;
/// let t = Mlp::<f32>::builder(&[4, 8, 3]).build()?;
/// assert_eq!(Teacher::predict(&t, &Array2::zeros((5, 4)))?.dim(), (5, 3));
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
pub trait Teacher<A> {
    /// Outputs (e.g. logits) for the batch `x`.
    fn predict(&self, x: &ArrayRef2<A>) -> Result<Array2<A>>;
}

impl<A: Float> Teacher<A> for Mlp<A> {
    fn predict(&self, x: &ArrayRef2<A>) -> Result<Array2<A>> {
        Ok(Mlp::predict(self, x)?)
    }
}

/// An [`Mlp`] with its optimizer: the ready-made [`Student`].
///
/// ```
/// use modelopt_distill::MlpStudent;
/// use modelopt_nn::{Adam, Mlp};
/// let s = MlpStudent::new(Mlp::<f32>::builder(&[64, 16, 10]).build()?, Adam::builder(1e-3).build()?);
/// assert_eq!(s.network.parameter_count(), 64 * 16 + 16 + 16 * 10 + 10);
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
#[derive(Debug, Clone)]
pub struct MlpStudent<A, O> {
    /// The network being trained.
    pub network: Mlp<A>,
    /// Its optimizer.
    pub optimizer: O,
}

impl<A: Float, O: Optimizer<A>> MlpStudent<A, O> {
    /// Pair a network with an optimizer.
    pub fn new(network: Mlp<A>, optimizer: O) -> Self {
        MlpStudent { network, optimizer }
    }
}

impl<A: Float, O: Optimizer<A>> Student<A> for MlpStudent<A, O> {
    fn forward(&mut self, x: &ArrayRef2<A>) -> Result<Array2<A>> {
        self.network.set_training(true);
        Ok(self.network.forward(x)?)
    }

    fn backward(&mut self, d_outputs: &ArrayRef2<A>) -> Result<()> {
        Ok(self.network.backward(d_outputs)?)
    }

    fn step(&mut self, learning_rate: f64) -> Result<()> {
        self.optimizer.set_learning_rate(learning_rate);
        Ok(self.optimizer.step(&mut self.network)?)
    }

    fn predict(&self, x: &ArrayRef2<A>) -> Result<Array2<A>> {
        Ok(self.network.predict(x)?)
    }
}

impl<A: Float> Teacher<A> for Sequential<A> {
    fn predict(&self, x: &ArrayRef2<A>) -> Result<Array2<A>> {
        Ok(Sequential::predict(self, x)?)
    }
}

/// A [`Sequential`] network (e.g. a CNN; inputs are rows of flattened images) with its optimizer:
/// the ready-made [`Student`] for convolutional networks.
///
/// ```
/// use modelopt_distill::{SequentialStudent, Student};
/// use modelopt_nn::{Adam, Conv2d, Dense, Init, Layer, Sequential};
/// use ndarray::Array2;
/// use rand::SeedableRng;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let net = Sequential::builder(&[1, 6, 6])
///     .push(Layer::Conv2d(Conv2d::<f32>::builder(1, 2, 3).build(&mut rng)?))
///     .push(Layer::Flatten)
///     .push(Layer::Linear(Dense::new(32, 10, Init::HeNormal, &mut rng)?))
///     .build()?;
/// let mut s = SequentialStudent::new(net, Adam::builder(1e-3).build()?);
/// let out = s.forward(&Array2::zeros((4, 36)))?;
/// s.backward(&Array2::ones(out.raw_dim()))?;
/// s.step(1e-3)?;
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SequentialStudent<A, O> {
    /// The network being trained.
    pub network: Sequential<A>,
    /// Its optimizer.
    pub optimizer: O,
}

impl<A: Float, O: Optimizer<A>> SequentialStudent<A, O> {
    /// Pair a network with an optimizer.
    pub fn new(network: Sequential<A>, optimizer: O) -> Self {
        SequentialStudent { network, optimizer }
    }
}

impl<A: Float, O: Optimizer<A>> Student<A> for SequentialStudent<A, O> {
    fn forward(&mut self, x: &ArrayRef2<A>) -> Result<Array2<A>> {
        self.network.set_training(true);
        Ok(self.network.forward(x)?)
    }

    fn backward(&mut self, d_outputs: &ArrayRef2<A>) -> Result<()> {
        Ok(self.network.backward(d_outputs)?)
    }

    fn step(&mut self, learning_rate: f64) -> Result<()> {
        self.optimizer.set_learning_rate(learning_rate);
        Ok(self.optimizer.step(&mut self.network)?)
    }

    fn predict(&self, x: &ArrayRef2<A>) -> Result<Array2<A>> {
        Ok(self.network.predict(x)?)
    }
}
