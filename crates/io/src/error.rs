use std::path::{Path, PathBuf};

use modelopt_quantize::QuantError;
use modelopt_tensor_core::CoreError;
use thiserror::Error;

/// Errors of the io crate: each names the file and what is wrong with it.
///
/// ```
/// use modelopt_io::IoError;
/// let e = IoError::format("model.gguf", "bad magic");
/// assert_eq!(e.to_string(), "model.gguf: bad magic");
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IoError {
    /// The operating system refused a read, write, rename, ...
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file whose content is not what its format allows (corrupt, truncated, hostile).
    #[error("{}: {problem}", path.display())]
    Format {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong, with where (tensor name, offset, key).
        problem: String,
    },
    /// A request that does not fit the file or the format (unknown tensor, wrong byte count, ...).
    #[error("{0}")]
    Usage(String),
    /// An error from the quantize crate (block formats).
    #[error(transparent)]
    Quant(#[from] QuantError),
    /// An error from the shared core.
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl IoError {
    /// A [`IoError::Format`] error for `path`.
    ///
    /// ```
    /// let e = modelopt_io::IoError::format("a.safetensors", "tensor `w`: offsets out of range");
    /// assert!(e.to_string().starts_with("a.safetensors: "));
    /// ```
    pub fn format(path: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        IoError::Format {
            path: path.as_ref().to_path_buf(),
            problem: problem.into(),
        }
    }

    /// A [`IoError::Io`] error for `path`.
    ///
    /// ```
    /// let e = modelopt_io::IoError::io("x.gguf", std::io::Error::other("disk full"));
    /// assert_eq!(e.to_string(), "x.gguf: disk full");
    /// ```
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        IoError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

/// `Result` with [`IoError`].
pub type Result<T, E = IoError> = std::result::Result<T, E>;
