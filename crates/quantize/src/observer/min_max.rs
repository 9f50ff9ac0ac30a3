//! Min-max observers: running extremes and their moving average (torch.ao semantics).

use modelopt_tensor_core::{CoreError, Granularity};
use ndarray::{ArrayViewD, Axis};

use super::{NonFinitePolicy, Observer, screen};
use crate::Result;
use crate::params::QuantParams;
use crate::scheme::CheckedScheme;

/// Running minimum and maximum per tensor or per channel (torch.ao's `MinMaxObserver` and
/// `PerChannelMinMaxObserver`). Defaults: per tensor, [`NonFinitePolicy::Error`].
///
/// ```
/// use modelopt_quantize::observer::{MinMaxObserver, Observer};
/// let mut o = MinMaxObserver::per_channel(0);
/// o.observe(&ndarray::array![[1.0f32, -2.0], [0.5, 0.25]])?;
/// o.observe(&ndarray::array![[3.0f32, 0.0], [0.0, -1.0]])?;
/// assert_eq!(o.range()?, (vec![-2.0, -1.0], vec![3.0, 0.5]));
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MinMaxObserver {
    ranges: Ranges,
}

/// The running range shared by both min-max observers.
#[derive(Debug, Clone, PartialEq)]
struct Ranges {
    axis: Option<usize>,
    policy: NonFinitePolicy,
    lo: Vec<f32>,
    hi: Vec<f32>,
}

impl Ranges {
    fn new(axis: Option<usize>) -> Self {
        Ranges {
            axis,
            policy: NonFinitePolicy::Error,
            lo: Vec::new(),
            hi: Vec::new(),
        }
    }

    /// The `(min, max)` of each channel of `batch` (one entry per tensor), skipping non-finite.
    fn batch_range(&self, batch: &ArrayViewD<'_, f32>) -> Result<(Vec<f32>, Vec<f32>)> {
        screen(batch, self.policy)?;
        let fold = |it: &mut dyn Iterator<Item = &f32>| {
            it.filter(|x| x.is_finite())
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| {
                    (l.min(x), h.max(x))
                })
        };
        let pairs: Vec<(f32, f32)> = match self.axis {
            None => vec![fold(&mut batch.iter())],
            Some(axis) => {
                modelopt_tensor_core::stats::check_axis(axis, batch.ndim())?;
                batch
                    .axis_iter(Axis(axis))
                    .map(|lane| fold(&mut lane.iter()))
                    .collect()
            }
        };
        if !self.lo.is_empty() && pairs.len() != self.lo.len() {
            return Err(CoreError::ShapeMismatch {
                expected: vec![self.lo.len()],
                found: vec![pairs.len()],
            }
            .into());
        }
        Ok(pairs.into_iter().unzip())
    }

    fn range(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        if self.lo.is_empty() || self.lo.iter().any(|l| !l.is_finite()) {
            return Err(CoreError::Empty {
                what: "observer has seen no finite value",
            }
            .into());
        }
        Ok((self.lo.clone(), self.hi.clone()))
    }

    fn quant_params(&self, scheme: &CheckedScheme) -> Result<QuantParams> {
        let want = match self.axis {
            None => Granularity::PerTensor,
            Some(axis) => Granularity::PerChannel { axis },
        };
        if scheme.granularity() != want {
            return Err(CoreError::invalid(
                "scheme",
                format!(
                    "granularity {:?} does not match the observer's {want:?}",
                    scheme.granularity()
                ),
            )
            .into());
        }
        let (lo, hi) = self.range()?;
        let (scales, zps): (Vec<f32>, Vec<i32>) = lo
            .iter()
            .zip(&hi)
            .map(|(&l, &h)| scheme.params_for_range(l, h))
            .unzip();
        QuantParams::from_vecs(vec![scales.len()], scales, zps, want)
    }
}

impl MinMaxObserver {
    /// A per-tensor observer.
    ///
    /// ```
    /// assert!(modelopt_quantize::observer::MinMaxObserver::new().range().is_err()); // nothing seen
    /// ```
    pub fn new() -> Self {
        MinMaxObserver {
            ranges: Ranges::new(None),
        }
    }

    /// One range per index along `axis` (checked against each batch).
    ///
    /// ```
    /// use modelopt_quantize::observer::{MinMaxObserver, Observer};
    /// assert!(MinMaxObserver::per_channel(3).observe(&ndarray::array![1.0f32]).is_err());
    /// ```
    pub fn per_channel(axis: usize) -> Self {
        MinMaxObserver {
            ranges: Ranges::new(Some(axis)),
        }
    }

    /// Sets the non-finite policy.
    ///
    /// ```
    /// use modelopt_quantize::observer::{MinMaxObserver, NonFinitePolicy};
    /// let _ = MinMaxObserver::new().non_finite(NonFinitePolicy::Ignore);
    /// ```
    pub fn non_finite(mut self, policy: NonFinitePolicy) -> Self {
        self.ranges.policy = policy;
        self
    }

    /// `(min, max)` per channel (one entry per tensor) of everything observed.
    ///
    /// ```
    /// use modelopt_quantize::observer::{MinMaxObserver, Observer};
    /// let mut o = MinMaxObserver::new();
    /// o.observe(&ndarray::array![2.0f32, 3.0])?;
    /// assert_eq!(o.range()?, (vec![2.0], vec![3.0]));
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn range(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        self.ranges.range()
    }
}

impl Default for MinMaxObserver {
    fn default() -> Self {
        Self::new()
    }
}

impl Observer for MinMaxObserver {
    fn observe_dyn(&mut self, batch: ArrayViewD<'_, f32>) -> Result<()> {
        let (lo, hi) = self.ranges.batch_range(&batch)?;
        if self.ranges.lo.is_empty() {
            (self.ranges.lo, self.ranges.hi) = (lo, hi);
        } else {
            for (a, b) in self.ranges.lo.iter_mut().zip(lo) {
                *a = a.min(b);
            }
            for (a, b) in self.ranges.hi.iter_mut().zip(hi) {
                *a = a.max(b);
            }
        }
        Ok(())
    }

    fn quant_params(&self, scheme: &CheckedScheme) -> Result<QuantParams> {
        self.ranges.quant_params(scheme)
    }
}

/// Moving average of each batch's min and max (torch.ao's `MovingAverageMinMaxObserver` and
/// `MovingAveragePerChannelMinMaxObserver`): the first batch sets the range, each later one
/// moves it by `averaging_constant * (batch - running)`. Defaults: constant 0.01, per tensor.
///
/// ```
/// use modelopt_quantize::observer::{MovingAverageMinMaxObserver, Observer};
/// let mut o = MovingAverageMinMaxObserver::new(0.5)?;
/// o.observe(&ndarray::array![-1.0f32, 1.0])?;
/// o.observe(&ndarray::array![-3.0f32, 2.0])?;
/// assert_eq!(o.range()?, (vec![-2.0], vec![1.5]));
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MovingAverageMinMaxObserver {
    ranges: Ranges,
    averaging_constant: f32,
}

impl MovingAverageMinMaxObserver {
    /// Per tensor with the given averaging constant, which must be in `(0, 1]`.
    ///
    /// ```
    /// assert!(modelopt_quantize::observer::MovingAverageMinMaxObserver::new(0.0).is_err());
    /// ```
    pub fn new(averaging_constant: f32) -> Result<Self> {
        if !(averaging_constant > 0.0 && averaging_constant <= 1.0) {
            return Err(CoreError::invalid(
                "averaging_constant",
                format!("must be in (0, 1], got {averaging_constant}"),
            )
            .into());
        }
        Ok(MovingAverageMinMaxObserver {
            ranges: Ranges::new(None),
            averaging_constant,
        })
    }

    /// torch's default: constant 0.01, per tensor.
    ///
    /// ```
    /// let _ = modelopt_quantize::observer::MovingAverageMinMaxObserver::torch_default();
    /// ```
    pub fn torch_default() -> Self {
        MovingAverageMinMaxObserver {
            ranges: Ranges::new(None),
            averaging_constant: 0.01,
        }
    }

    /// One range per index along `axis`.
    ///
    /// ```
    /// use modelopt_quantize::observer::MovingAverageMinMaxObserver;
    /// let _ = MovingAverageMinMaxObserver::torch_default().per_channel(0);
    /// ```
    pub fn per_channel(mut self, axis: usize) -> Self {
        self.ranges.axis = Some(axis);
        self
    }

    /// Sets the non-finite policy.
    ///
    /// ```
    /// use modelopt_quantize::observer::{MovingAverageMinMaxObserver, NonFinitePolicy};
    /// let _ = MovingAverageMinMaxObserver::torch_default().non_finite(NonFinitePolicy::Ignore);
    /// ```
    pub fn non_finite(mut self, policy: NonFinitePolicy) -> Self {
        self.ranges.policy = policy;
        self
    }

    /// The running `(min, max)` per channel.
    ///
    /// ```
    /// use modelopt_quantize::observer::{MovingAverageMinMaxObserver, Observer};
    /// let mut o = MovingAverageMinMaxObserver::torch_default();
    /// o.observe(&ndarray::array![-1.0f32, 1.0])?;
    /// assert_eq!(o.range()?, (vec![-1.0], vec![1.0]));
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn range(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        self.ranges.range()
    }
}

impl Observer for MovingAverageMinMaxObserver {
    fn observe_dyn(&mut self, batch: ArrayViewD<'_, f32>) -> Result<()> {
        let (lo, hi) = self.ranges.batch_range(&batch)?;
        let c = self.averaging_constant;
        if self.ranges.lo.is_empty() {
            (self.ranges.lo, self.ranges.hi) = (lo, hi);
            return Ok(());
        }
        let step = |run: &mut f32, cur: f32| {
            // A channel that has only seen skipped values takes the first real value as is.
            if !run.is_finite() {
                *run = cur;
            } else if cur.is_finite() {
                *run += c * (cur - *run);
            }
        };
        for (a, b) in self.ranges.lo.iter_mut().zip(lo) {
            step(a, b);
        }
        for (a, b) in self.ranges.hi.iter_mut().zip(hi) {
            step(a, b);
        }
        Ok(())
    }

    fn quant_params(&self, scheme: &CheckedScheme) -> Result<QuantParams> {
        self.ranges.quant_params(scheme)
    }
}
