use modelopt_tensor_core::CoreError;
use thiserror::Error;

/// Errors of the quantize crate.
///
/// ```
/// use modelopt_quantize::QuantError;
/// let e: QuantError = modelopt_tensor_core::CoreError::Empty { what: "weights" }.into();
/// assert_eq!(e.to_string(), "empty input: weights");
/// ```
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum QuantError {
    /// An error from the shared core (non-finite input, empty input, bad axis, bad parameter, ...).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A buffer whose length does not fit the block format.
    #[error("{what}: expected {expected} {unit}, found {found}")]
    Length {
        /// What was being sized.
        what: &'static str,
        /// The required length.
        expected: usize,
        /// The length given.
        found: usize,
        /// Unit of the lengths (`"elements"`, `"bytes"`).
        unit: &'static str,
    },
    /// GPTQ: the layer's Hessian stayed indefinite after the allowed dampening raises.
    #[error(
        "Hessian is not positive definite (input column {column}) even with dampening {damp} \
         of the mean diagonal"
    )]
    NotPositiveDefinite {
        /// The input column where the factorisation failed.
        column: usize,
        /// The last dampening fraction tried.
        damp: f64,
    },
}

/// `Result` with [`QuantError`].
pub type Result<T, E = QuantError> = std::result::Result<T, E>;
