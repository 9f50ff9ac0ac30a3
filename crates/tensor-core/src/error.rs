use thiserror::Error;

/// The base error of modelopt: what a caller or a file can get wrong, said with where.
///
/// Each technique crate wraps it (`#[error(transparent)] #[from]`), so `?` carries it upward.
///
/// ```
/// use modelopt_tensor_core::{stats, CoreError};
/// use ndarray::array;
///
/// let err = stats::check_finite(&array![1.0f32, f32::NAN]).unwrap_err();
/// assert!(matches!(err, CoreError::NonFinite { index: 1, .. }));
/// assert_eq!(err.to_string(), "non-finite value NaN at flat index 1 ([1])");
/// ```
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A NaN or ±Inf was found where finite values are required.
    #[error("non-finite value {value} at flat index {index} ({position:?})")]
    NonFinite {
        /// Row-major (logical) flat index of the first offending element.
        index: usize,
        /// The same position as one index per dimension.
        position: Vec<usize>,
        /// The offending value, widened to f64.
        value: f64,
    },
    /// An input had no elements where at least one is needed.
    #[error("empty input: {what}")]
    Empty {
        /// What was empty.
        what: &'static str,
    },
    /// An axis index beyond the array's dimensions.
    #[error("axis {axis} is out of range for an array of {ndim} dimension(s)")]
    AxisOutOfRange {
        /// The requested axis.
        axis: usize,
        /// The array's number of dimensions.
        ndim: usize,
    },
    /// Two arrays that must agree in shape do not.
    #[error("shape mismatch: expected {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// The shape that was required.
        expected: Vec<usize>,
        /// The shape that was given.
        found: Vec<usize>,
    },
    /// A parameter outside its valid range (found when the parameters are built or checked).
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter's name as the API spells it.
        name: &'static str,
        /// What is wrong with it, with the accepted range.
        reason: String,
    },
}

impl CoreError {
    /// Shorthand for [`CoreError::InvalidParameter`].
    ///
    /// ```
    /// use modelopt_tensor_core::CoreError;
    /// let e = CoreError::invalid("bits", "must be in 2..=8, got 9");
    /// assert_eq!(e.to_string(), "invalid parameter `bits`: must be in 2..=8, got 9");
    /// ```
    pub fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        CoreError::InvalidParameter {
            name,
            reason: reason.into(),
        }
    }
}

/// `Result` with [`CoreError`].
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
