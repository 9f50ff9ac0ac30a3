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
//! - seeded shuffled [`MiniBatches`] and [`gather_rows`];
//! - convolutional networks on NCHW batches: [`Conv2d`] (stride, padding, dilation, groups and
//!   depthwise; im2col through the same GEMM), [`BatchNorm2d`] (running statistics, eval mode),
//!   [`MaxPool2d`], [`AvgPool2d`], [`global_avg_pool`], and a [`Sequential`] container of
//!   [`Layer`]s with torch's `state_dict` names (`0.weight`, `features.3.running_mean`), so a
//!   network trained in PyTorch loads and trains with the same optimizers.
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
mod avg_pool;
mod batches;
mod batchnorm;
mod conv;
mod dense;
mod dropout;
mod error;
mod filter_pruning;
mod im2col;
mod init;
mod layer;
mod loss;
mod matmul;
mod max_pool;
mod mlp;
mod optim;
mod sequential;

pub use activation::Activation;
pub use avg_pool::{AvgPool2d, global_avg_pool, global_avg_pool_backward};
pub use batches::{MiniBatches, gather_rows};
pub use batchnorm::BatchNorm2d;
pub use conv::{Conv2d, Conv2dBuilder};
pub use dense::Dense;
pub use dropout::Dropout;
pub use error::{NnError, Result};
pub use filter_pruning::{
    FilterCriterion, PruneScope, filter_scores, fold_batch_norm, prune_filters, prune_filters_by,
};
pub use im2col::{Window, col2im, im2col};
pub use init::Init;
pub use layer::Layer;
pub use loss::{check_labels, log_softmax, softmax, softmax_cross_entropy};
pub use matmul::matmul;
pub use max_pool::{MaxPool2d, PoolIndices};
pub use mlp::{Mlp, MlpBuilder};
pub use optim::{Adam, AdamBuilder, Optimizer, ParameterVisitor, Parameters, Sgd, SgdBuilder};
pub use sequential::{Sequential, SequentialBuilder};

/// An `f64` constant in the element type (exact or correctly rounded for `f32`/`f64`, never `None`).
#[inline]
pub(crate) fn float_const<A: modelopt_tensor_core::Float>(x: f64) -> A {
    A::from_f64(x).unwrap_or_else(A::nan)
}
