//! # modelopt-nn
//!
//! The smallest honest trainable network: enough to distill, fine-tune after pruning and train
//! under fake quantization without a foreign framework. Not a general deep-learning framework.
//!
//! - [`Dense`] layers (`y = x W^T + b`, torch's weight layout), [`Activation`] (ReLU, GELU with the
//!   tanh approximation, tanh), inverted [`Dropout`] (seeded);
//! - [`Mlp`] built from layer sizes, with parameters by name (`layers.0.weight`, ...) for
//!   safetensors, a training and an inference mode, and access to hidden features;
//! - [`softmax_cross_entropy`], [`log_softmax`], [`softmax`] with stable log-sum-exp;
//! - seeded [`Init`] (He, Xavier), optimizers [`Sgd`] (momentum, weight decay) and [`Adam`] behind the
//!   [`Optimizer`] trait over anything implementing [`Parameters`];
//! - seeded shuffled [`MiniBatches`] and [`gather_rows`].
//!
//! Everything is generic over [`modelopt_tensor_core::Float`] (`f32` for training, `f64` for
//! gradient checks), forward and backward are written by hand with batched matrix products (one
//! GEMM per product: `gemm-f32` for `f32`, `ndarray`'s for `f64`), and every gradient is checked
//! against finite differences in the tests.
//!
//! ```
//! use modelopt_nn::{softmax_cross_entropy, Mlp, Optimizer, Sgd};
//! use ndarray::array;
//! let mut net = Mlp::<f32>::builder(&[2, 4, 2]).seed(1).build()?;
//! let mut sgd = Sgd::builder(0.1).momentum(0.9).build()?;
//! let logits = net.forward(&array![[0.5f32, -0.5]])?;
//! let (_loss, grad) = softmax_cross_entropy(&logits, &[1])?;
//! net.backward(&grad)?;
//! sgd.step(&mut net)?;
//! assert!(net.named_parameters().contains_key("layers.1.weight"));
//! # Ok::<(), modelopt_nn::NnError>(())
//! ```

mod activation;
mod batches;
mod dense;
mod dropout;
mod error;
mod init;
mod loss;
mod matmul;
mod mlp;
mod optim;

pub use activation::Activation;
pub use batches::{MiniBatches, gather_rows};
pub use dense::Dense;
pub use dropout::Dropout;
pub use error::{NnError, Result};
pub use init::Init;
pub use loss::{check_labels, log_softmax, softmax, softmax_cross_entropy};
pub use matmul::matmul;
pub use mlp::{Mlp, MlpBuilder};
pub use optim::{Adam, AdamBuilder, Optimizer, ParameterVisitor, Parameters, Sgd, SgdBuilder};

/// An `f64` constant in the element type (exact or correctly rounded for `f32`/`f64`, never `None`).
#[inline]
pub(crate) fn float_const<A: modelopt_tensor_core::Float>(x: f64) -> A {
    A::from_f64(x).unwrap_or_else(A::nan)
}
