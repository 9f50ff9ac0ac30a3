use thiserror::Error;

/// The facade's error: any of the crates' errors, carried by `?`.
///
/// ```
/// use modelopt::Error;
/// let e: Error = modelopt::tensor_core::CoreError::Empty { what: "weights" }.into();
/// assert_eq!(e.to_string(), "empty input: weights");
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// From the shared core.
    #[error(transparent)]
    Core(#[from] modelopt_tensor_core::CoreError),
    /// From quantization.
    #[error(transparent)]
    Quantize(#[from] modelopt_quantize::QuantError),
    /// From pruning.
    #[error(transparent)]
    Prune(#[from] modelopt_prune::PruneError),
    /// From the network crate.
    #[error(transparent)]
    Nn(#[from] modelopt_nn::NnError),
    /// From distillation.
    #[error(transparent)]
    Distill(#[from] modelopt_distill::DistillError),
    /// From the quantized kernels.
    #[error(transparent)]
    Kernels(#[from] modelopt_kernels::KernelError),
    /// From reading or writing model files.
    #[error(transparent)]
    Io(#[from] modelopt_io::IoError),
}

/// `Result` with the facade's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
