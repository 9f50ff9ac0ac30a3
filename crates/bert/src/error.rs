use std::path::PathBuf;

use modelopt_io::IoError;
use modelopt_nn::NnError;
use modelopt_tensor_core::CoreError;
use thiserror::Error;

/// Errors of `modelopt-bert`: every one names the file (or the input) and the problem.
///
/// ```
/// use modelopt_bert::{BertConfig, BertError};
/// let err = BertConfig::from_file("/nonexistent/config.json").unwrap_err();
/// assert!(matches!(err, BertError::File { .. }));
/// assert!(err.to_string().contains("/nonexistent/config.json"));
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BertError {
    /// A file of the model folder is missing, unreadable or malformed (config.json,
    /// tokenizer.json, a text file).
    #[error("{}: {problem}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A weight tensor is missing or has the wrong shape.
    #[error("{}: tensor `{tensor}`: {problem}", path.display())]
    Weight {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name as the model asks for it.
        tensor: String,
        /// What is wrong (missing, expected vs found shape, not a float tensor).
        problem: String,
    },
    /// Reading the weights file failed (format errors name the file).
    #[error(transparent)]
    Io(#[from] IoError),
    /// A token batch the model cannot run (token id past the vocabulary, position past the
    /// model's positions, inconsistent lengths).
    #[error("input: {0}")]
    Input(String),
    /// A base error (shape mismatch in a matrix product).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A matrix-product error from `modelopt-nn`.
    #[error(transparent)]
    Nn(#[from] NnError),
}

impl BertError {
    /// A [`BertError::File`] for `path`.
    pub(crate) fn file(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        BertError::File {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

/// `Result` with [`BertError`].
pub type Result<T, E = BertError> = std::result::Result<T, E>;
