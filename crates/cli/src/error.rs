//! The command's two kinds of failure and their exit statuses.

use modelopt_io::IoError;

/// A failure of the command: a usage error (exit 2) or anything else (exit 1).
#[derive(Debug)]
pub enum CliError {
    /// The arguments do not make sense together (exit status 2).
    Usage(String),
    /// A file could not be read, written or processed (exit status 1).
    Failure(String),
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failure(_) => 1,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Failure(m) => f.write_str(m),
        }
    }
}

impl From<IoError> for CliError {
    fn from(e: IoError) -> Self {
        CliError::Failure(e.to_string())
    }
}

/// `Result` with [`CliError`].
pub type CliResult<T> = Result<T, CliError>;

/// A failure naming `path` and the problem.
pub fn failure(path: &std::path::Path, problem: impl std::fmt::Display) -> CliError {
    CliError::Failure(format!("{}: {problem}", path.display()))
}
