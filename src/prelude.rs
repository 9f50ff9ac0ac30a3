//! `use modelopt::prelude::*;` brings the three traits and the main types into scope.
//!
//! ```
//! use modelopt::prelude::*;
//! use modelopt::ndarray::array;
//!
//! let w = array![[0.1f32, -0.2, 0.3, 0.4], [0.5, -0.6, 0.7, -0.8]];
//! let q = LinearQuantizer::new(10.0).apply(&w)?;
//! assert_eq!(q.codes()[[0, 1]], -2);
//! let w8 = QuantScheme::int8().per_channel(0).quantize(&w)?;
//! assert!(w8.error_metrics(&w)?.sqnr_db > 40.0);
//! let mask = Pruner::new(L1Magnitude).amount(Amount::fraction(0.5)?).prune(&w)?;
//! assert_eq!(mask.sparsity(), 0.5);
//! let kd = KdLoss::new(4.0, 0.1)?;
//! let out = kd.loss(&array![[2.0f32, 0.0]], &array![[1.0f32, 0.0]], &[0])?;
//! assert!(out.total > 0.0);
//! # Ok::<(), modelopt::Error>(())
//! ```

pub use crate::pipeline::{Pipeline, PipelineReport, PruneStage};
pub use crate::{Error, Result};
pub use modelopt_distill::{Distiller, KdLoss, MlpStudent, Student, Teacher, Trainer};
pub use modelopt_nn::{Adam, Mlp, Optimizer, Sgd};
pub use modelopt_prune::{
    Amount, L1Magnitude, L2Magnitude, Mask, Norm, Pruner, PruningCriterion, Structure,
};
pub use modelopt_quantize::{LinearQuantizer, QuantScheme, Quantizer};
pub use modelopt_tensor_core::{ErrorMetrics, Granularity, Par};
