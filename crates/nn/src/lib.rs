//! # modelopt-nn
//!
//! The smallest honest trainable network: dense layers, activations, optimizers.
