//! Histogram calibration of `|x|`: percentile, MSE search and entropy (KL divergence), as in
//! NVIDIA's pytorch-quantization (`HistogramCalibrator`, `_compute_amax_*`) used for TensorRT.

use modelopt_tensor_core::{CoreError, Granularity};
use ndarray::ArrayViewD;

use super::{NonFinitePolicy, Observer, screen};
use crate::Result;
use crate::params::QuantParams;
use crate::scheme::CheckedScheme;

/// Bins of the first batch's histogram.
pub const DEFAULT_BINS: usize = 2048;
/// Smallest candidate threshold (in bins) of the MSE and entropy searches.
pub const START_BIN: usize = 128;

/// How the clipping threshold `amax` is chosen from the histogram of `|x|`.
///
/// ```
/// use modelopt_quantize::observer::HistogramMethod;
/// assert_ne!(HistogramMethod::Entropy, HistogramMethod::Mse);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum HistogramMethod {
    /// The left edge of the bin where the cumulative share reaches `percentile / 100`.
    Percentile(f64),
    /// The bin centre (from bin 128 on) minimising the count-weighted squared error of
    /// fake-quantizing every bin centre with the scheme.
    Mse,
    /// TensorRT's entropy calibration: for each candidate `i` (from 128 bins up) the reference
    /// distribution `P` = bins `[0, i)` with the tail folded into the last one, the candidate `Q` =
    /// those bins merged into `2^(b-1)` levels (`2^b` unsigned) and expanded back over their
    /// non-empty bins; `amax` = the right edge of the `i` minimising `KL(P || Q)`.
    Entropy,
}

/// A histogram of `|x|` fed batch after batch, and a [`HistogramMethod`] to pick `amax` from it.
///
/// The first batch with a non-zero value sets 2048 bins over `[0, max|x|]`; a later batch with a
/// larger value appends bins of the same width (pytorch-quantization's growth rule). Parameters
/// are per tensor, for the range `[-amax, amax]` (or `[0, amax]` when no negative value was seen).
///
/// ```
/// use modelopt_quantize::observer::{HistogramObserver, Observer};
/// use modelopt_quantize::QuantScheme;
/// let mut o = HistogramObserver::percentile(100.0)?;
/// o.observe(&ndarray::Array1::linspace(-1.0f32, 1.0, 4097))?;
/// assert!((o.amax()? - 1.0).abs() < 1e-3);
/// let p = o.quant_params(&QuantScheme::int8().check()?)?;
/// assert!((p.scales()[[0]] * 127.0 - o.amax()? as f32).abs() < 1e-6);
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramObserver {
    method: HistogramMethod,
    policy: NonFinitePolicy,
    counts: Vec<u64>,
    width: f64,
    /// Zeros seen before the first non-zero batch fixed the bin width.
    pending_zeros: u64,
    saw_negative: bool,
}

impl HistogramObserver {
    /// An observer choosing `amax` with `method`; a percentile must be in `(0, 100]`.
    ///
    /// ```
    /// use modelopt_quantize::observer::{HistogramMethod, HistogramObserver};
    /// assert!(HistogramObserver::new(HistogramMethod::Percentile(0.0)).is_err());
    /// ```
    pub fn new(method: HistogramMethod) -> Result<Self> {
        if let HistogramMethod::Percentile(p) = method
            && !(p > 0.0 && p <= 100.0)
        {
            return Err(
                CoreError::invalid("percentile", format!("must be in (0, 100], got {p}")).into(),
            );
        }
        Ok(HistogramObserver {
            method,
            policy: NonFinitePolicy::Error,
            counts: Vec::new(),
            width: 0.0,
            pending_zeros: 0,
            saw_negative: false,
        })
    }

    /// Percentile calibration (e.g. 99.99).
    ///
    /// ```
    /// assert!(modelopt_quantize::observer::HistogramObserver::percentile(99.9).is_ok());
    /// ```
    pub fn percentile(percentile: f64) -> Result<Self> {
        Self::new(HistogramMethod::Percentile(percentile))
    }

    /// MSE-optimal clipping search.
    ///
    /// ```
    /// let _ = modelopt_quantize::observer::HistogramObserver::mse();
    /// ```
    pub fn mse() -> Self {
        Self::with_method(HistogramMethod::Mse)
    }

    /// Entropy (KL divergence) calibration.
    ///
    /// ```
    /// let _ = modelopt_quantize::observer::HistogramObserver::entropy();
    /// ```
    pub fn entropy() -> Self {
        Self::with_method(HistogramMethod::Entropy)
    }

    /// An observer over an existing histogram of `|x|`: `counts[i]` values in
    /// `[i * bin_width, (i + 1) * bin_width)`, from signed data (range `[-amax, amax]`).
    /// Errors on no bins, a zero total, or a width that is not finite and positive.
    ///
    /// ```
    /// use modelopt_quantize::observer::{HistogramMethod, HistogramObserver};
    /// let o = HistogramObserver::from_counts(HistogramMethod::Percentile(50.0), vec![1, 1, 2], 0.5)?;
    /// assert_eq!(o.amax()?, 0.5); // left edge of the bin where the CDF reaches 50 %
    /// assert!(HistogramObserver::from_counts(HistogramMethod::Mse, vec![0, 0], 1.0).is_err());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn from_counts(method: HistogramMethod, counts: Vec<u64>, bin_width: f64) -> Result<Self> {
        let mut o = Self::new(method)?;
        if !(bin_width.is_finite() && bin_width > 0.0) {
            return Err(CoreError::invalid(
                "bin_width",
                format!("must be finite and > 0, got {bin_width}"),
            )
            .into());
        }
        if counts.iter().sum::<u64>() == 0 {
            return Err(CoreError::Empty {
                what: "histogram counts",
            }
            .into());
        }
        o.counts = counts;
        o.width = bin_width;
        o.saw_negative = true;
        Ok(o)
    }

    fn with_method(method: HistogramMethod) -> Self {
        HistogramObserver {
            method,
            policy: NonFinitePolicy::Error,
            counts: Vec::new(),
            width: 0.0,
            pending_zeros: 0,
            saw_negative: false,
        }
    }

    /// Sets the non-finite policy.
    ///
    /// ```
    /// use modelopt_quantize::observer::{HistogramObserver, NonFinitePolicy};
    /// let _ = HistogramObserver::mse().non_finite(NonFinitePolicy::Ignore);
    /// ```
    pub fn non_finite(mut self, policy: NonFinitePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The bin counts so far (empty before the first non-zero value).
    ///
    /// ```
    /// use modelopt_quantize::observer::{HistogramObserver, Observer};
    /// let mut o = HistogramObserver::mse();
    /// o.observe(&ndarray::array![1.0f32])?;
    /// assert_eq!(o.counts().len(), 2048);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Width of one bin.
    ///
    /// ```
    /// use modelopt_quantize::observer::{HistogramObserver, Observer};
    /// let mut o = HistogramObserver::mse();
    /// o.observe(&ndarray::array![2048.0f32])?;
    /// assert_eq!(o.bin_width(), 1.0);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn bin_width(&self) -> f64 {
        self.width
    }

    /// The clipping threshold chosen by the method, for 8-bit signed codes.
    /// Errors if nothing was observed; 0 if only zeros were.
    ///
    /// ```
    /// use modelopt_quantize::observer::{HistogramObserver, Observer};
    /// let mut o = HistogramObserver::entropy();
    /// o.observe(&ndarray::array![0.0f32, 0.0])?;
    /// assert_eq!(o.amax()?, 0.0);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn amax(&self) -> Result<f64> {
        let int8 = crate::QuantScheme::int8().check()?;
        self.amax_for(&int8)
    }

    /// The clipping threshold for `scheme` (its bit width and signedness drive the MSE and
    /// entropy searches).
    ///
    /// ```
    /// use modelopt_quantize::observer::{HistogramObserver, Observer};
    /// use modelopt_quantize::QuantScheme;
    /// let mut o = HistogramObserver::mse();
    /// o.observe(&ndarray::Array1::linspace(-1.0f32, 1.0, 1000))?;
    /// assert!(o.amax_for(&QuantScheme::new(2).check()?)? < o.amax_for(&QuantScheme::int8().check()?)?);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn amax_for(&self, scheme: &CheckedScheme) -> Result<f64> {
        if self.counts.is_empty() {
            if self.pending_zeros > 0 {
                return Ok(0.0);
            }
            return Err(CoreError::Empty {
                what: "histogram observer has seen no value",
            }
            .into());
        }
        Ok(match self.method {
            HistogramMethod::Percentile(p) => self.amax_percentile(p),
            HistogramMethod::Mse => self.amax_mse(scheme),
            HistogramMethod::Entropy => {
                let levels = 1usize << (scheme.bits() - 1 + u8::from(!scheme.is_signed()));
                self.amax_entropy(levels)
            }
        })
    }

    fn amax_percentile(&self, p: f64) -> f64 {
        let total: u64 = self.counts.iter().sum();
        let target = p / 100.0;
        let mut cum = 0.0f64;
        for (i, &c) in self.counts.iter().enumerate() {
            cum += c as f64 / total as f64;
            if cum >= target {
                return i as f64 * self.width;
            }
        }
        self.counts.len() as f64 * self.width
    }

    fn amax_mse(&self, scheme: &CheckedScheme) -> f64 {
        let centers: Vec<f64> = (0..self.counts.len())
            .map(|i| (i as f64 + 0.5) * self.width)
            .collect();
        let (qmin, qmax) = (f64::from(scheme.qmin()), f64::from(scheme.qmax()));
        let mut best = (f64::INFINITY, centers.len() - 1);
        for (i, &amax) in centers.iter().enumerate().skip(START_BIN) {
            let (scale, zp) = scheme.params_for_range(self.low_for(amax) as f32, amax as f32);
            let (s, z) = (f64::from(scale), f64::from(zp));
            let err: f64 = centers
                .iter()
                .zip(&self.counts)
                .filter(|(_, c)| **c > 0)
                .map(|(&x, &c)| {
                    let q = ((x / s).round_ties_even() + z).clamp(qmin, qmax);
                    let d = (q - z) * s - x;
                    d * d * c as f64
                })
                .sum();
            if err < best.0 {
                best = (err, i);
            }
        }
        centers[best.1]
    }

    fn amax_entropy(&self, levels: usize) -> f64 {
        let mut bins: Vec<f64> = self.counts.iter().map(|&c| c as f64).collect();
        // pytorch-quantization: the zero bin is dominated by exact zeros; it copies bin 1.
        if bins.len() > 1 {
            bins[0] = bins[1];
        }
        let mut tail: Vec<f64> = vec![0.0; bins.len() + 1];
        for i in (0..bins.len()).rev() {
            tail[i] = tail[i + 1] + bins[i];
        }
        let mut best = (f64::INFINITY, bins.len());
        let mut merged = vec![0f64; levels];
        let mut members = vec![0usize; levels];
        let mut which = vec![0usize; bins.len()];
        let mut level_ln = vec![0f64; levels];
        let bin_ln: Vec<f64> = bins
            .iter()
            .map(|&b| if b > 0.0 { b.ln() } else { 0.0 })
            .collect();
        for i in START_BIN.min(bins.len())..=bins.len() {
            // Candidate: bins [0, i) quantized to `levels` levels of equal width (numpy's
            // `digitize(range(i), linspace(0, i, levels + 1)) - 1`).
            merged.iter_mut().for_each(|m| *m = 0.0);
            members.iter_mut().for_each(|m| *m = 0);
            let step = i as f64 / levels as f64;
            let mut level = 0usize;
            for (j, w) in which.iter_mut().enumerate().take(i) {
                while level + 1 < levels && ((level + 1) as f64 * step) <= j as f64 {
                    level += 1;
                }
                *w = level;
                if bins[j] != 0.0 {
                    merged[level] += bins[j];
                    members[level] += 1;
                }
            }
            // Expanded Q (mean of each level over its non-empty bins) and reference P.
            let q_total: f64 = merged.iter().sum();
            let p_total = tail[0];
            if q_total == 0.0 || p_total == 0.0 {
                continue;
            }
            // KL(P || Q) = S / P_total + ln Q_total - ln P_total with
            // S = sum_j a_j (ln a_j - ln(merged_l / members_l)): one logarithm per bin and
            // level instead of one per bin and candidate.
            for ((lq, &m), &c) in level_ln.iter_mut().zip(&merged).zip(&members) {
                *lq = if c > 0 { (m / c as f64).ln() } else { 0.0 };
            }
            let mut sum = 0.0f64;
            for j in 0..i - 1 {
                if bins[j] != 0.0 {
                    sum += bins[j] * (bin_ln[j] - level_ln[which[j]]);
                }
            }
            let last = bins[i - 1] + tail[i];
            if last > 0.0 {
                sum += if bins[i - 1] == 0.0 {
                    f64::INFINITY // P has mass where Q has none
                } else {
                    last * (last.ln() - level_ln[which[i - 1]])
                };
            }
            let kl = sum / p_total + q_total.ln() - p_total.ln();
            // Ties go to the larger threshold (pytorch-quantization takes the last argmin).
            if kl <= best.0 {
                best = (kl, i);
            }
        }
        best.1 as f64 * self.width
    }

    /// The low end of the calibrated range for a threshold.
    fn low_for(&self, amax: f64) -> f64 {
        if self.saw_negative { -amax } else { 0.0 }
    }

    fn add(&mut self, v: f32) {
        let a = f64::from(v.abs());
        let b = (a / self.width).floor();
        let b = if b < 0.0 {
            0
        } else {
            (b as usize).min(self.counts.len() - 1)
        };
        self.counts[b] += 1;
    }
}

impl Observer for HistogramObserver {
    fn observe_dyn(&mut self, batch: ArrayViewD<'_, f32>) -> Result<()> {
        screen(&batch, self.policy)?;
        let finite = || batch.iter().copied().filter(|x| x.is_finite());
        let amax = finite().fold(0f32, |m, x| m.max(x.abs()));
        self.saw_negative |= finite().any(|x| x < 0.0);
        if amax == 0.0 {
            if self.counts.is_empty() {
                self.pending_zeros += finite().count() as u64;
            } else {
                self.counts[0] += finite().count() as u64;
            }
            return Ok(());
        }
        let amax = f64::from(amax);
        if self.counts.is_empty() {
            self.width = amax / DEFAULT_BINS as f64;
            self.counts = vec![0; DEFAULT_BINS];
            self.counts[0] = self.pending_zeros;
        } else if amax > self.counts.len() as f64 * self.width {
            let bins = (amax / self.width).ceil() as usize;
            self.counts.resize(bins.max(self.counts.len()), 0);
        }
        for x in finite() {
            self.add(x);
        }
        Ok(())
    }

    fn quant_params(&self, scheme: &CheckedScheme) -> Result<QuantParams> {
        if scheme.granularity() != Granularity::PerTensor {
            return Err(CoreError::invalid("scheme", "histogram observers are per tensor").into());
        }
        let amax = self.amax_for(scheme)? as f32;
        let (s, z) = scheme.params_for_range(self.low_for(f64::from(amax)) as f32, amax);
        QuantParams::from_vecs(vec![1], vec![s], vec![z], Granularity::PerTensor)
    }
}
