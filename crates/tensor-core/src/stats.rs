//! Statistics over arrays: extremes, finiteness, percentiles by selection, histograms.
//!
//! Functions take `&ArrayRef<A, D>` so owned arrays, views and shared arrays all work.
//! Reductions along an axis return one value per index of that axis, computed over every other
//! dimension (the per-channel convention of torch's `PerChannelMinMaxObserver`).

use ndarray::{Array1, ArrayRef, Axis, Dimension};

pub use crate::granularity::check_axis;
use crate::{CoreError, Float, Result};

/// Returns the flat (row-major, logical order) index of the first NaN or ±Inf, if any.
///
/// ```
/// use modelopt_tensor_core::stats::first_non_finite;
/// use ndarray::array;
/// assert_eq!(first_non_finite(&array![[1.0f32, 2.0], [f32::INFINITY, 0.0]]), Some(2));
/// assert_eq!(first_non_finite(&array![1.0f64]), None);
/// ```
pub fn first_non_finite<A: Float, D: Dimension>(a: &ArrayRef<A, D>) -> Option<usize> {
    if let Some(s) = a.as_slice() {
        // Fast path: a branch-free scan the compiler vectorises, then locate.
        if s.iter().all(|x| x.is_finite()) {
            return None;
        }
        return s.iter().position(|x| !x.is_finite());
    }
    a.iter().position(|x| !x.is_finite())
}

/// `Ok(())` if every element is finite, else [`CoreError::NonFinite`] naming the first offender.
///
/// ```
/// use modelopt_tensor_core::{stats::check_finite, CoreError};
/// use ndarray::array;
/// let e = check_finite(&array![[0.0f32, 1.0], [2.0, f32::NEG_INFINITY]]).unwrap_err();
/// assert!(matches!(e, CoreError::NonFinite { index: 3, ref position, .. } if position == &[1, 1]));
/// ```
pub fn check_finite<A: Float, D: Dimension>(a: &ArrayRef<A, D>) -> Result<()> {
    match first_non_finite(a) {
        None => Ok(()),
        Some(index) => {
            let value = a
                .iter()
                .nth(index)
                .map_or(f64::NAN, |v| v.to_f64_lossless());
            Err(CoreError::NonFinite {
                index,
                position: unravel_index(index, a.shape()),
                value,
            })
        }
    }
}

/// Converts a row-major flat index into one index per dimension.
///
/// ```
/// assert_eq!(modelopt_tensor_core::stats::unravel_index(5, &[2, 3]), vec![1, 2]);
/// ```
pub fn unravel_index(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut pos = vec![0; shape.len()];
    for (p, &len) in pos.iter_mut().zip(shape).rev() {
        if len > 0 {
            *p = flat % len;
            flat /= len;
        }
    }
    pos
}

fn non_empty<A, D: Dimension>(a: &ArrayRef<A, D>, what: &'static str) -> Result<()> {
    if a.is_empty() {
        Err(CoreError::Empty { what })
    } else {
        Ok(())
    }
}

/// `(min, max)` of all elements. Errors on empty input or a non-finite element.
///
/// ```
/// use modelopt_tensor_core::stats::min_max;
/// assert_eq!(min_max(&ndarray::array![3.0f32, -1.0, 2.0])?, (-1.0, 3.0));
/// # Ok::<(), modelopt_tensor_core::CoreError>(())
/// ```
pub fn min_max<A: Float, D: Dimension>(a: &ArrayRef<A, D>) -> Result<(A, A)> {
    non_empty(a, "min_max of an empty array")?;
    check_finite(a)?;
    Ok(fold_min_max(a.iter().copied()))
}

fn fold_min_max<A: Float>(it: impl Iterator<Item = A>) -> (A, A) {
    it.fold((A::infinity(), A::neg_infinity()), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    })
}

/// Largest absolute value of all elements. Errors on empty input or a non-finite element.
///
/// ```
/// use modelopt_tensor_core::stats::abs_max;
/// assert_eq!(abs_max(&ndarray::array![[0.5f32, -4.0]])?, 4.0);
/// # Ok::<(), modelopt_tensor_core::CoreError>(())
/// ```
pub fn abs_max<A: Float, D: Dimension>(a: &ArrayRef<A, D>) -> Result<A> {
    non_empty(a, "abs_max of an empty array")?;
    check_finite(a)?;
    Ok(a.iter().fold(A::zero(), |m, &x| m.max(x.abs())))
}

/// Per-index `(min, max)` along `axis`, each over all other dimensions.
///
/// ```
/// use modelopt_tensor_core::stats::min_max_along;
/// let (lo, hi) = min_max_along(&ndarray::array![[1.0f32, -2.0], [3.0, 4.0]], 0)?;
/// assert_eq!((lo.to_vec(), hi.to_vec()), (vec![-2.0, 3.0], vec![1.0, 4.0]));
/// # Ok::<(), modelopt_tensor_core::CoreError>(())
/// ```
pub fn min_max_along<A: Float, D: Dimension>(
    a: &ArrayRef<A, D>,
    axis: usize,
) -> Result<(Array1<A>, Array1<A>)> {
    check_axis(axis, a.ndim())?;
    non_empty(a, "min_max_along of an empty array")?;
    check_finite(a)?;
    let pairs: Vec<(A, A)> = a
        .view()
        .into_dyn()
        .axis_iter(Axis(axis))
        .map(|lane| fold_min_max(lane.iter().copied()))
        .collect();
    Ok((
        pairs.iter().map(|p| p.0).collect(),
        pairs.iter().map(|p| p.1).collect(),
    ))
}

/// Per-index largest absolute value along `axis`, over all other dimensions.
///
/// ```
/// use modelopt_tensor_core::stats::abs_max_along;
/// let m = abs_max_along(&ndarray::array![[1.0f32, -2.0], [3.0, 0.5]], 1)?;
/// assert_eq!(m.to_vec(), vec![3.0, 2.0]);
/// # Ok::<(), modelopt_tensor_core::CoreError>(())
/// ```
pub fn abs_max_along<A: Float, D: Dimension>(a: &ArrayRef<A, D>, axis: usize) -> Result<Array1<A>> {
    check_axis(axis, a.ndim())?;
    non_empty(a, "abs_max_along of an empty array")?;
    check_finite(a)?;
    Ok(a.view()
        .into_dyn()
        .axis_iter(Axis(axis))
        .map(|lane| lane.iter().fold(A::zero(), |m, &x| m.max(x.abs())))
        .collect())
}

/// The `q`-th percentile (`0 <= q <= 100`) of `values`, with linear interpolation between the
/// two nearest order statistics (numpy's default `method="linear"`).
///
/// Uses selection (`select_nth_unstable`, expected O(n)), never a full sort; `values` is
/// reordered in place.
///
/// ```
/// use modelopt_tensor_core::stats::percentile;
/// let mut v = vec![5.0f32, 1.0, 4.0, 2.0, 3.0];
/// assert_eq!(percentile(&mut v, 50.0)?, 3.0);
/// assert_eq!(percentile(&mut v, 12.5)?, 1.5);
/// # Ok::<(), modelopt_tensor_core::CoreError>(())
/// ```
pub fn percentile<A: Float>(values: &mut [A], q: f64) -> Result<A> {
    if values.is_empty() {
        return Err(CoreError::Empty {
            what: "percentile of an empty slice",
        });
    }
    if !(0.0..=100.0).contains(&q) {
        return Err(CoreError::invalid(
            "q",
            format!("percentile must be in [0, 100], got {q}"),
        ));
    }
    check_finite(&ndarray::ArrayView1::from(&*values))?;
    let pos = q / 100.0 * (values.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = pos - lo as f64;
    let (_, &mut lo_val, upper) = values.select_nth_unstable_by(lo, |a, b| a.total_cmp_f(b));
    if frac == 0.0 || upper.is_empty() {
        return Ok(lo_val);
    }
    // The next order statistic is the minimum of the upper partition.
    let hi_val = upper.iter().copied().fold(A::infinity(), A::min);
    let frac = A::from_f64(frac).unwrap_or_else(A::zero);
    Ok(lo_val + (hi_val - lo_val) * frac)
}

trait TotalCmp {
    fn total_cmp_f(&self, other: &Self) -> std::cmp::Ordering;
}

impl<A: Float> TotalCmp for A {
    fn total_cmp_f(&self, other: &Self) -> std::cmp::Ordering {
        // Inputs were checked finite, so partial_cmp never fails.
        self.partial_cmp(other).unwrap_or(std::cmp::Ordering::Equal)
    }
}

/// A histogram with `counts.len()` equal-width bins over `[lo, hi]`.
///
/// Values below `lo` land in the first bin and above `hi` in the last (so no sample is lost);
/// NaN is skipped. Used by entropy (KL) calibration, which histograms absolute values.
///
/// ```
/// use modelopt_tensor_core::stats::Histogram;
/// let mut h = Histogram::new(4, 0.0, 4.0)?;
/// h.accumulate([0.5f32, 1.5, 1.7, 3.9, 9.0].iter().copied());
/// assert_eq!(h.counts(), &[1, 2, 0, 2]);
/// assert_eq!(h.bin_width(), 1.0);
/// # Ok::<(), modelopt_tensor_core::CoreError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    lo: f64,
    hi: f64,
    counts: Vec<u64>,
}

impl Histogram {
    /// An empty histogram of `bins` bins over `[lo, hi]`; needs `bins >= 1` and `lo < hi`, finite.
    ///
    /// ```
    /// assert!(modelopt_tensor_core::stats::Histogram::new(0, 0.0, 1.0).is_err());
    /// ```
    pub fn new(bins: usize, lo: f64, hi: f64) -> Result<Self> {
        if bins == 0 {
            return Err(CoreError::invalid("bins", "must be at least 1"));
        }
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(CoreError::invalid(
                "range",
                format!("need finite lo < hi, got [{lo}, {hi}]"),
            ));
        }
        Ok(Histogram {
            lo,
            hi,
            counts: vec![0; bins],
        })
    }

    /// Adds samples.
    ///
    /// ```
    /// let mut h = modelopt_tensor_core::stats::Histogram::new(2, 0.0, 2.0)?;
    /// h.accumulate([0.1f64, 1.9].into_iter());
    /// assert_eq!(h.total(), 2);
    /// # Ok::<(), modelopt_tensor_core::CoreError>(())
    /// ```
    pub fn accumulate<A: Float>(&mut self, values: impl Iterator<Item = A>) {
        let bins = self.counts.len();
        let scale = bins as f64 / (self.hi - self.lo);
        for v in values {
            let v = v.to_f64_lossless();
            if v.is_nan() {
                continue;
            }
            let b = ((v - self.lo) * scale).floor();
            let b = if b < 0.0 {
                0
            } else {
                (b as usize).min(bins - 1)
            };
            self.counts[b] += 1;
        }
    }

    /// The bin counts.
    ///
    /// ```
    /// assert_eq!(modelopt_tensor_core::stats::Histogram::new(3, 0.0, 1.0)?.counts(), &[0, 0, 0]);
    /// # Ok::<(), modelopt_tensor_core::CoreError>(())
    /// ```
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Mutable bin counts (for merging histograms built over the same range).
    ///
    /// ```
    /// let mut h = modelopt_tensor_core::stats::Histogram::new(1, 0.0, 1.0)?;
    /// h.counts_mut()[0] = 5;
    /// assert_eq!(h.total(), 5);
    /// # Ok::<(), modelopt_tensor_core::CoreError>(())
    /// ```
    pub fn counts_mut(&mut self) -> &mut [u64] {
        &mut self.counts
    }

    /// `(lo, hi)`: the range the bins cover.
    ///
    /// ```
    /// assert_eq!(modelopt_tensor_core::stats::Histogram::new(1, -1.0, 1.0)?.range(), (-1.0, 1.0));
    /// # Ok::<(), modelopt_tensor_core::CoreError>(())
    /// ```
    pub fn range(&self) -> (f64, f64) {
        (self.lo, self.hi)
    }

    /// Width of one bin.
    ///
    /// ```
    /// assert_eq!(modelopt_tensor_core::stats::Histogram::new(4, 0.0, 2.0)?.bin_width(), 0.5);
    /// # Ok::<(), modelopt_tensor_core::CoreError>(())
    /// ```
    pub fn bin_width(&self) -> f64 {
        (self.hi - self.lo) / self.counts.len() as f64
    }

    /// Number of samples counted.
    ///
    /// ```
    /// assert_eq!(modelopt_tensor_core::stats::Histogram::new(4, 0.0, 2.0)?.total(), 0);
    /// # Ok::<(), modelopt_tensor_core::CoreError>(())
    /// ```
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};
    use proptest::prelude::*;

    #[test]
    fn empty_and_axis_errors() {
        let e: Array2<f32> = Array2::zeros((0, 3));
        assert!(matches!(min_max(&e), Err(CoreError::Empty { .. })));
        assert!(matches!(
            abs_max_along(&array![[1.0f32]], 2),
            Err(CoreError::AxisOutOfRange { axis: 2, ndim: 2 })
        ));
    }

    #[test]
    fn non_finite_in_strided_view_reports_logical_index() {
        let mut a = Array2::<f32>::zeros((3, 2));
        a[[2, 0]] = f32::NAN;
        let t = a.t(); // shape [2, 3]; logical index of (0, 2) is 2
        let e = check_finite(&t).unwrap_err();
        assert!(matches!(e, CoreError::NonFinite { index: 2, .. }));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn percentile_matches_sorted_linear(mut v in proptest::collection::vec(-1e3f64..1e3, 1..50), q in 0.0f64..=100.0) {
            let mut sorted = v.clone();
            sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let pos = q / 100.0 * (v.len() - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            let expected = sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64);
            let got = percentile(&mut v, q).unwrap();
            prop_assert!((got - expected).abs() <= 1e-9 * (1.0 + expected.abs()));
        }
    }
}
