use modelopt_tensor_core::CoreError;
use thiserror::Error;

/// Errors of the prune crate.
///
/// ```
/// use modelopt_prune::PruneError;
/// let e: PruneError = modelopt_tensor_core::CoreError::Empty { what: "weights" }.into();
/// assert_eq!(e.to_string(), "empty input: weights");
/// ```
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum PruneError {
    /// An error from the shared core (non-finite input, empty input, bad axis, bad parameter, ...).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// An amount that asks for more units than the tensor (or tensors) have.
    #[error("amount of {requested} {unit} to prune exceeds the {available} available")]
    AmountTooLarge {
        /// Units the amount asks to prune.
        requested: usize,
        /// Units that can be pruned.
        available: usize,
        /// What is being counted (`"weights"`, `"channels"`, `"blocks"`).
        unit: &'static str,
    },
    /// A dimension that is not a multiple of the group or block size the structure needs.
    #[error("dimension {axis} has length {len}, which is not a multiple of {multiple} ({what})")]
    NotMultiple {
        /// The axis concerned.
        axis: usize,
        /// Its length.
        len: usize,
        /// The required multiple.
        multiple: usize,
        /// The structure that needs it.
        what: &'static str,
    },
    /// A coupling specification that cannot be parsed or does not fit the tensors.
    #[error("coupling spec: {0}")]
    Coupling(String),
    /// An error while pruning one tensor of a named set.
    #[error("tensor `{name}`: {source}")]
    InTensor {
        /// The tensor's name.
        name: String,
        /// What went wrong.
        source: Box<PruneError>,
    },
    /// A named tensor that is missing from the collection.
    #[error("tensor `{0}` not found")]
    MissingTensor(String),
}

/// `Result` with [`PruneError`].
pub type Result<T, E = PruneError> = std::result::Result<T, E>;
