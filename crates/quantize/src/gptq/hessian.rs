//! Layer-input statistics for calibration: `XᵀX` (GPTQ's Hessian), `sum |x|` (AWQ) and
//! `sum x²` (Wanda's norms, llama.cpp's importance matrix), accumulated batch by batch.

use modelopt_tensor_core::{CoreError, stats::check_finite};
use ndarray::{Array1, Array2, ArrayRef1, ArrayRef2, Axis, s};

use crate::Result;

/// Rows of one f32 product before it is added to the f64 sums (keeps the f32 rounding of each
/// partial sum small).
const CHUNK_ROWS: usize = 256;

/// Accumulates the inputs `X` (`[tokens, features]`) of one linear layer over calibration
/// batches: `XᵀX` in f64 (each chunk of 256 tokens multiplied in f32), `sum |x|` and the
/// token count.
///
/// ```
/// use modelopt_quantize::gptq::HessianAccumulator;
/// use ndarray::array;
/// let mut acc = HessianAccumulator::new(2);
/// acc.add_batch(&array![[1.0f32, 0.0], [1.0, 2.0]])?;
/// acc.add_batch(&array![[0.0f32, -2.0]])?;
/// let h = acc.finish()?; // H = 2 XᵀX / n
/// assert_eq!(h.samples(), 3);
/// assert_eq!(h.matrix()[[1, 1]], 2.0 * 8.0 / 3.0);
/// assert_eq!(acc.mean_abs()?.to_vec(), vec![2.0 / 3.0, 4.0 / 3.0]);
/// assert!(acc.add_batch(&array![[f32::NAN, 0.0]]).is_err());
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct HessianAccumulator {
    xtx: Array2<f64>,
    abs_sum: Array1<f64>,
    samples: usize,
}

impl HessianAccumulator {
    /// An empty accumulator for inputs of `features` features.
    pub fn new(features: usize) -> Self {
        HessianAccumulator {
            xtx: Array2::zeros((features, features)),
            abs_sum: Array1::zeros(features),
            samples: 0,
        }
    }

    /// Number of input features.
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::gptq::HessianAccumulator::new(5).features(), 5);
    /// ```
    pub fn features(&self) -> usize {
        self.abs_sum.len()
    }

    /// Tokens seen so far.
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::gptq::HessianAccumulator::new(5).samples(), 0);
    /// ```
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Adds a batch of inputs `[tokens, features]`. Errors on a feature count that differs
    /// from the accumulator's or a non-finite value (the batch is then not added).
    ///
    /// ```
    /// let mut acc = modelopt_quantize::gptq::HessianAccumulator::new(3);
    /// assert!(acc.add_batch(&ndarray::Array2::<f32>::zeros((4, 2))).is_err());
    /// ```
    pub fn add_batch(&mut self, x: &ArrayRef2<f32>) -> Result<()> {
        if x.ncols() != self.features() {
            return Err(CoreError::ShapeMismatch {
                expected: vec![x.nrows(), self.features()],
                found: x.shape().to_vec(),
            }
            .into());
        }
        check_finite(x)?;
        let mut start = 0;
        while start < x.nrows() {
            let end = (start + CHUNK_ROWS).min(x.nrows());
            let chunk = x.slice(s![start..end, ..]);
            let g = chunk.t().dot(&chunk);
            self.xtx.zip_mut_with(&g, |a, &b| *a += f64::from(b));
            start = end;
        }
        for row in x.rows() {
            self.abs_sum
                .zip_mut_with(&row, |a, &b| *a += f64::from(b.abs()));
        }
        self.samples += x.nrows();
        Ok(())
    }

    /// Adds the sums of another accumulator (e.g. one filled by another thread).
    ///
    /// ```
    /// use modelopt_quantize::gptq::HessianAccumulator;
    /// let mut a = HessianAccumulator::new(2);
    /// assert!(a.merge(&HessianAccumulator::new(3)).is_err());
    /// ```
    pub fn merge(&mut self, other: &HessianAccumulator) -> Result<()> {
        if other.features() != self.features() {
            return Err(CoreError::ShapeMismatch {
                expected: vec![self.features()],
                found: vec![other.features()],
            }
            .into());
        }
        self.xtx += &other.xtx;
        self.abs_sum += &other.abs_sum;
        self.samples += other.samples;
        Ok(())
    }

    fn need_samples(&self) -> Result<()> {
        if self.samples == 0 {
            return Err(CoreError::Empty {
                what: "calibration inputs (no tokens accumulated)",
            }
            .into());
        }
        Ok(())
    }

    /// GPTQ's Hessian `H = 2 XᵀX / n`. Errors if no token was added.
    ///
    /// ```
    /// assert!(modelopt_quantize::gptq::HessianAccumulator::new(2).finish().is_err());
    /// ```
    pub fn finish(&self) -> Result<Hessian> {
        self.need_samples()?;
        let k = 2.0 / self.samples as f64;
        Hessian::new(self.xtx.mapv(|v| v * k), self.samples)
    }

    /// Mean `|x|` per feature (AWQ's activation scale). Errors if no token was added.
    ///
    /// ```
    /// let mut acc = modelopt_quantize::gptq::HessianAccumulator::new(1);
    /// acc.add_batch(&ndarray::array![[-3.0f32], [1.0]])?;
    /// assert_eq!(acc.mean_abs()?[0], 2.0);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn mean_abs(&self) -> Result<Array1<f64>> {
        self.need_samples()?;
        Ok(self.abs_sum.mapv(|v| v / self.samples as f64))
    }

    /// Sum of `x²` per feature (the diagonal of `XᵀX`): llama.cpp's importance matrix entry
    /// is this over the token count; Wanda's norm is its square root.
    ///
    /// ```
    /// let mut acc = modelopt_quantize::gptq::HessianAccumulator::new(1);
    /// acc.add_batch(&ndarray::array![[3.0f32], [4.0]])?;
    /// assert_eq!(acc.sum_sq()[0].sqrt(), 5.0);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn sum_sq(&self) -> Array1<f64> {
        self.xtx.diag().to_owned()
    }
}

/// A layer's Hessian for GPTQ: a symmetric `n x n` f64 matrix with finite entries and a
/// non-negative diagonal, and the number of tokens it was estimated from.
///
/// ```
/// use modelopt_quantize::gptq::Hessian;
/// let h = Hessian::new(ndarray::array![[2.0, 0.5], [0.5, 1.0]], 10)?;
/// assert_eq!(h.features(), 2);
/// assert!(Hessian::new(ndarray::array![[1.0, 0.0]], 1).is_err());          // not square
/// assert!(Hessian::new(ndarray::array![[1.0, 2.0], [0.0, 1.0]], 1).is_err()); // not symmetric
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Hessian {
    h: Array2<f64>,
    samples: usize,
}

impl Hessian {
    /// Validates and wraps `h`: square, not empty, finite, diagonal `>= 0`, symmetric to
    /// `1e-9` relative to the largest diagonal entry.
    pub fn new(h: Array2<f64>, samples: usize) -> Result<Self> {
        let n = h.nrows();
        if n != h.ncols() {
            return Err(CoreError::ShapeMismatch {
                expected: vec![n, n],
                found: h.shape().to_vec(),
            }
            .into());
        }
        if n == 0 {
            return Err(CoreError::Empty { what: "Hessian" }.into());
        }
        check_finite(&h)?;
        if let Some(i) = h.diag().iter().position(|&d| d < 0.0) {
            return Err(CoreError::invalid(
                "hessian",
                format!("diagonal entry {i} is negative ({})", h[[i, i]]),
            )
            .into());
        }
        let scale = h.diag().iter().fold(0f64, |m, &d| m.max(d));
        for i in 0..n {
            for j in 0..i {
                if (h[[i, j]] - h[[j, i]]).abs() > 1e-9 * scale {
                    return Err(CoreError::invalid(
                        "hessian",
                        format!(
                            "not symmetric: ({i}, {j}) = {} but ({j}, {i}) = {}",
                            h[[i, j]],
                            h[[j, i]]
                        ),
                    )
                    .into());
                }
            }
        }
        Ok(Hessian { h, samples })
    }

    /// The matrix.
    pub fn matrix(&self) -> &Array2<f64> {
        &self.h
    }

    /// Number of input features (the matrix order).
    pub fn features(&self) -> usize {
        self.h.nrows()
    }

    /// Number of tokens it was estimated from (as given to [`Hessian::new`]). With fewer
    /// tokens than features `XᵀX` is singular; GPTQ's dampening still makes it invertible, but
    /// the compensation is then fitted to few directions.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The Hessian of the inputs divided by per-feature scales `s` (`X / s`, as after AWQ's
    /// scaling): `H_ij / (s_i s_j)`. Errors on a length mismatch or a scale that is not finite
    /// and positive.
    ///
    /// ```
    /// let h = modelopt_quantize::gptq::Hessian::new(ndarray::array![[4.0, 2.0], [2.0, 4.0]], 1)?;
    /// let g = h.scaled_inputs(&ndarray::array![2.0f32, 1.0])?;
    /// assert_eq!(g.matrix(), &ndarray::array![[1.0, 1.0], [1.0, 4.0]]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn scaled_inputs(&self, s: &ArrayRef1<f32>) -> Result<Hessian> {
        check_scales(s, self.features())?;
        let inv = s.mapv(|v| 1.0 / f64::from(v));
        let mut h = self.h.clone();
        for (i, mut row) in h.axis_iter_mut(Axis(0)).enumerate() {
            row.zip_mut_with(&inv, |a, &b| *a *= b * inv[i]);
        }
        Ok(Hessian {
            h,
            samples: self.samples,
        })
    }
}

/// Checks per-feature scales: `n` of them, each finite and positive.
pub(crate) fn check_scales(s: &ArrayRef1<f32>, n: usize) -> Result<()> {
    if s.len() != n {
        return Err(CoreError::ShapeMismatch {
            expected: vec![n],
            found: vec![s.len()],
        }
        .into());
    }
    if let Some((i, v)) = s
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && **v > 0.0))
    {
        return Err(CoreError::invalid(
            "scales",
            format!("scale {v} of feature {i} is not finite and positive"),
        )
        .into());
    }
    Ok(())
}
