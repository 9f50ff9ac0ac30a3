#![doc = include_str!("../README.md")]

pub use modelopt_distill as distill;
pub use modelopt_io as io;
pub use modelopt_nn as nn;
pub use modelopt_prune as prune;
pub use modelopt_quantize as quantize;
pub use modelopt_tensor_core as tensor_core;
pub use ndarray;
