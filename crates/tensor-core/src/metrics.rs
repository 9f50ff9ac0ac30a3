use ndarray::{ArrayRef, Dimension};

use crate::{CoreError, Float, Result, stats::check_finite};

/// How far a reconstruction is from the original: the figures every modelopt result reports.
///
/// All sums are accumulated in f64.
/// - `mse`: mean of `(x - y)^2`;
/// - `max_abs_error`: largest `|x - y|`;
/// - `sqnr_db`: `10 log10(sum x^2 / sum (x - y)^2)`; `+inf` for an exact reconstruction;
/// - `cosine`: `x·y / (|x| |y|)`; 1 when both are all zero, 0 when exactly one is.
///
/// ```
/// use modelopt_tensor_core::ErrorMetrics;
/// use ndarray::array;
/// let m = ErrorMetrics::between(&array![1.0f32, 2.0], &array![1.0f32, 2.5])?;
/// assert_eq!(m.mse, 0.125);
/// assert_eq!(m.max_abs_error, 0.5);
/// assert!((m.sqnr_db - 10.0 * (5.0f64 / 0.25).log10()).abs() < 1e-12);
/// # Ok::<(), modelopt_tensor_core::CoreError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorMetrics {
    /// Mean squared error.
    pub mse: f64,
    /// Largest absolute difference.
    pub max_abs_error: f64,
    /// Signal-to-quantization-noise ratio in decibels.
    pub sqnr_db: f64,
    /// Cosine similarity.
    pub cosine: f64,
}

impl ErrorMetrics {
    /// Compares `original` with `reconstructed` (same shape, finite, non-empty).
    ///
    /// ```
    /// use modelopt_tensor_core::{CoreError, ErrorMetrics};
    /// use ndarray::array;
    /// let e = ErrorMetrics::between(&array![1.0f32], &array![1.0f32, 2.0]).unwrap_err();
    /// assert!(matches!(e, CoreError::ShapeMismatch { .. }));
    /// ```
    pub fn between<A: Float, B: Float, D: Dimension>(
        original: &ArrayRef<A, D>,
        reconstructed: &ArrayRef<B, D>,
    ) -> Result<Self> {
        if original.shape() != reconstructed.shape() {
            return Err(CoreError::ShapeMismatch {
                expected: original.shape().to_vec(),
                found: reconstructed.shape().to_vec(),
            });
        }
        if original.is_empty() {
            return Err(CoreError::Empty {
                what: "error metrics of an empty array",
            });
        }
        check_finite(original)?;
        check_finite(reconstructed)?;
        let mut acc = Accumulator::default();
        match (original.as_slice(), reconstructed.as_slice()) {
            (Some(x), Some(y)) => x.iter().zip(y).for_each(|(a, b)| acc.push(*a, *b)),
            _ => original
                .iter()
                .zip(reconstructed.iter())
                .for_each(|(a, b)| acc.push(*a, *b)),
        }
        Ok(acc.finish(original.len()))
    }

    /// Compares two equally long slices (see [`ErrorMetrics::between`]).
    ///
    /// ```
    /// let m = modelopt_tensor_core::ErrorMetrics::between_slices(&[1.0f32, 0.0], &[1.0f32, 0.0])?;
    /// assert_eq!(m.sqnr_db, f64::INFINITY);
    /// assert_eq!(m.cosine, 1.0);
    /// # Ok::<(), modelopt_tensor_core::CoreError>(())
    /// ```
    pub fn between_slices<A: Float, B: Float>(original: &[A], reconstructed: &[B]) -> Result<Self> {
        Self::between(
            &ndarray::ArrayView1::from(original),
            &ndarray::ArrayView1::from(reconstructed),
        )
    }
}

#[derive(Default)]
struct Accumulator {
    sum_sq_err: f64,
    max_abs: f64,
    sum_sq_x: f64,
    sum_sq_y: f64,
    dot: f64,
}

impl Accumulator {
    #[inline]
    fn push<A: Float, B: Float>(&mut self, a: A, b: B) {
        let (x, y) = (a.to_f64_lossless(), b.to_f64_lossless());
        let d = x - y;
        self.sum_sq_err += d * d;
        self.max_abs = self.max_abs.max(d.abs());
        self.sum_sq_x += x * x;
        self.sum_sq_y += y * y;
        self.dot += x * y;
    }

    fn finish(self, n: usize) -> ErrorMetrics {
        let sqnr_db = if self.sum_sq_err == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (self.sum_sq_x / self.sum_sq_err).log10()
        };
        let cosine = match (self.sum_sq_x == 0.0, self.sum_sq_y == 0.0) {
            (true, true) => 1.0,
            (true, false) | (false, true) => 0.0,
            _ => self.dot / (self.sum_sq_x.sqrt() * self.sum_sq_y.sqrt()),
        };
        ErrorMetrics {
            mse: self.sum_sq_err / n as f64,
            max_abs_error: self.max_abs,
            sqnr_db,
            cosine,
        }
    }
}
