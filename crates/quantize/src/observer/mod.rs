//! Observers: calibration statistics gathered batch after batch, turned into [`QuantParams`].
//!
//! - [`MinMaxObserver`]: running min and max (torch.ao's `MinMaxObserver`,
//!   `PerChannelMinMaxObserver`);
//! - [`MovingAverageMinMaxObserver`]: exponential moving average of each batch's min and max
//!   (torch.ao's, `averaging_constant = 0.01`);
//! - [`HistogramObserver`] with a [`HistogramMethod`]: a 2048-bin histogram of `|x|` that grows
//!   with the data (NVIDIA pytorch-quantization's `HistogramCalibrator`), from which the clipping
//!   threshold `amax` is chosen by percentile, MSE search, or entropy (KL divergence, TensorRT's
//!   calibration).
//!
//! NaN and ±Inf are an error naming the first offending index unless the observer is built
//! with [`NonFinitePolicy::Ignore`].
//!
//! ```
//! use modelopt_quantize::observer::{HistogramObserver, MinMaxObserver, Observer};
//! use modelopt_quantize::QuantScheme;
//! use ndarray::array;
//!
//! let scheme = QuantScheme::int8().check()?;
//! let mut mm = MinMaxObserver::new();
//! let mut kl = HistogramObserver::entropy();
//! for batch in [array![0.5f32, -1.0, 0.25], array![2.0f32, 0.0, -0.5]] {
//!     mm.observe(&batch)?;
//!     kl.observe(&batch)?;
//! }
//! let params = mm.quant_params(&scheme)?;
//! assert_eq!(params.scales()[[0]], 2.0 / 127.0);
//! let q = scheme.quantize_with(&array![2.0f32, 0.0, -4.0], &params)?;
//! assert_eq!(q.codes().to_vec(), vec![127, 0, -127]);
//! assert!(kl.amax()? > 0.0);
//! # Ok::<(), modelopt_quantize::QuantError>(())
//! ```

mod histogram;
mod min_max;

use ndarray::{ArrayRef, ArrayViewD, Dimension};

pub use histogram::{HistogramMethod, HistogramObserver};
pub use min_max::{MinMaxObserver, MovingAverageMinMaxObserver};

use crate::Result;
use crate::params::QuantParams;
use crate::scheme::CheckedScheme;

/// What an observer does with NaN and ±Inf.
///
/// ```
/// use modelopt_quantize::observer::{MinMaxObserver, NonFinitePolicy, Observer};
/// let mut o = MinMaxObserver::new();
/// assert!(o.observe(&ndarray::array![1.0f32, f32::NAN]).is_err());
/// let mut o = MinMaxObserver::new().non_finite(NonFinitePolicy::Ignore);
/// o.observe(&ndarray::array![1.0f32, f32::NAN, -2.0])?;
/// assert_eq!(o.range()?, (vec![-2.0], vec![1.0]));
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum NonFinitePolicy {
    /// Reject the batch with an error naming the first non-finite element (the default).
    #[default]
    Error,
    /// Skip non-finite values (opt-in).
    Ignore,
}

/// A calibrator fed batch after batch that yields quantization parameters for a scheme.
///
/// Object-safe: `Box<dyn Observer>` works (it calls [`Observer::observe_dyn`]).
///
/// ```
/// use modelopt_quantize::observer::{HistogramObserver, MinMaxObserver, Observer};
/// let mut observers: Vec<Box<dyn Observer>> =
///     vec![Box::new(MinMaxObserver::new()), Box::new(HistogramObserver::percentile(99.9)?)];
/// let batch = ndarray::array![[0.5f32, -1.0], [0.25, 1.5]].into_dyn();
/// let scheme = modelopt_quantize::QuantScheme::int8().check()?;
/// for o in &mut observers {
///     o.observe_dyn(batch.view())?;
///     assert!(o.quant_params(&scheme)?.scales()[[0]] > 0.0);
/// }
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
pub trait Observer {
    /// Adds one batch.
    fn observe_dyn(&mut self, batch: ArrayViewD<'_, f32>) -> Result<()>;

    /// Scale and zero point(s) for `scheme`, from everything observed so far. Errors if nothing
    /// was observed or the scheme's granularity is not the observer's.
    fn quant_params(&self, scheme: &CheckedScheme) -> Result<QuantParams>;

    /// Adds one batch of any dimension.
    fn observe<D: Dimension>(&mut self, batch: &ArrayRef<f32, D>) -> Result<()>
    where
        Self: Sized,
    {
        self.observe_dyn(batch.view().into_dyn())
    }
}

/// Index of the first non-finite element, as an error, when the policy says so.
pub(crate) fn screen(batch: &ArrayViewD<'_, f32>, policy: NonFinitePolicy) -> Result<()> {
    if batch.is_empty() {
        return Err(modelopt_tensor_core::CoreError::Empty {
            what: "observer batch",
        }
        .into());
    }
    if policy == NonFinitePolicy::Error {
        modelopt_tensor_core::stats::check_finite(batch)?;
    }
    Ok(())
}
