use modelopt_tensor_core::CoreError;
use thiserror::Error;

/// What went wrong in a quantized kernel call. Errors say what and where.
///
/// ```
/// use modelopt_kernels::{KernelError, PackedI8};
/// let err = PackedI8::new(&[1, 2, 3], 2, 2).unwrap_err();
/// assert!(matches!(err, KernelError::Core(_)));
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KernelError {
    /// From the shared core (shapes, empty input, non-finite values, parameters).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// From the quantization crate (observers, schemes, GGML blocks).
    #[error(transparent)]
    Quantize(#[from] modelopt_quantize::QuantError),
    /// An exact integer result could exceed the output type (e.g. an `i32` dot product of
    /// more than 131071 int8 pairs); use the `i64` form.
    #[error("{what}: {reason}")]
    Overflow {
        /// The operation.
        what: &'static str,
        /// Why its result may not fit.
        reason: String,
    },
    /// The instruction set asked for is not available on this CPU.
    #[error("instruction set {0:?} is not available on this CPU")]
    IsaUnavailable(crate::Isa),
}

/// `Result` with [`KernelError`].
pub type Result<T, E = KernelError> = std::result::Result<T, E>;

/// A shape mismatch error.
pub(crate) fn shape(expected: Vec<usize>, found: Vec<usize>) -> KernelError {
    CoreError::ShapeMismatch { expected, found }.into()
}

/// An invalid-parameter error.
pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> KernelError {
    CoreError::invalid(name, reason.into()).into()
}
