use modelopt_tensor_core::CoreError;
use thiserror::Error;

/// Errors of `modelopt-nn`: what a caller can get wrong when building, running or training a network.
///
/// ```
/// use modelopt_nn::{Mlp, NnError};
/// let err = Mlp::<f32>::builder(&[4]).build().unwrap_err();
/// assert!(matches!(err, NnError::Core(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum NnError {
    /// A base error (shape mismatch, invalid parameter, non-finite value, empty input).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A class label outside `0..classes`.
    #[error("label {label} at row {row} is out of range for {classes} classes")]
    LabelOutOfRange {
        /// Row of the batch holding the label.
        row: usize,
        /// The offending label.
        label: usize,
        /// Number of classes (columns of the logits).
        classes: usize,
    },
    /// `backward` was called without a preceding training-mode `forward`.
    #[error("backward called before forward (no cached activations in `{layer}`)")]
    NoForwardCache {
        /// The layer that had nothing cached.
        layer: String,
    },
    /// A named parameter is missing from, or unknown to, a parameter map.
    #[error("parameter `{name}`: {reason}")]
    Parameter {
        /// The parameter's name, e.g. `layers.0.weight`.
        name: String,
        /// What is wrong (missing, unexpected, wrong shape).
        reason: String,
    },
    /// An error inside one layer of a [`crate::Sequential`], with the layer's name (`features.3`).
    #[error("layer `{layer}` ({kind}): {source}")]
    Layer {
        /// The layer's name as in the `state_dict` (`0`, `features.3`, ...).
        layer: String,
        /// What kind of layer (`Conv2d`, `BatchNorm2d`, ...).
        kind: &'static str,
        /// The error.
        source: Box<NnError>,
    },
}

/// `Result` with [`NnError`].
pub type Result<T, E = NnError> = std::result::Result<T, E>;
