//! Fake quantization: quantize then dequantize in f32, for simulation and quantization-aware
//! training (with the mask a straight-through estimator needs).

use modelopt_tensor_core::{CoreError, stats};
use ndarray::{Array, ArrayRef, Dimension};

use crate::Result;
use crate::params::QuantParams;
use crate::scheme::CheckedScheme;
use crate::uniform::standard_slice;

/// Fake-quantized values and the in-range mask.
///
/// `values = (clamp(round(x / s) + z, qmin, qmax) - z) * s` (torch's
/// `fake_quantize_per_*_affine`); `in_range` is true where no clamping happened
/// (`qmin <= round(x / s) + z <= qmax`), i.e. where the straight-through estimator passes the
/// gradient (torch's `fake_quantize_*_cachemask`).
///
/// ```
/// use modelopt_quantize::QuantScheme;
/// use ndarray::array;
/// let s = QuantScheme::new(2).check()?; // codes -1..=1
/// let params = s.quantize(&array![1.0f32])?.params().clone(); // scale 1
/// let fq = s.fake_quantize_with(&array![0.4f32, 0.6, 3.0], &params)?;
/// assert_eq!(fq.values(), &array![0.0f32, 1.0, 1.0]);
/// assert_eq!(fq.in_range(), &array![true, true, false]);
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FakeQuantized<D: Dimension> {
    values: Array<f32, D>,
    in_range: Array<bool, D>,
}

impl<D: Dimension> FakeQuantized<D> {
    /// The fake-quantized values.
    ///
    /// ```
    /// let s = modelopt_quantize::QuantScheme::int8().check()?;
    /// let fq = s.fake_quantize(&ndarray::array![127.0f32, 0.4])?;
    /// assert_eq!(fq.values().to_vec(), vec![127.0, 0.0]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn values(&self) -> &Array<f32, D> {
        &self.values
    }

    /// True where the value was inside the clipping range (gradient passes), false where clamped.
    ///
    /// ```
    /// let s = modelopt_quantize::QuantScheme::int8().check()?;
    /// assert!(s.fake_quantize(&ndarray::array![1.0f32, -1.0])?.in_range().iter().all(|&m| m));
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn in_range(&self) -> &Array<bool, D> {
        &self.in_range
    }

    /// The straight-through estimator's backward pass: `upstream` where the value was in range,
    /// 0 where it was clamped (torch's `fake_quantize_*_backward`). Errors on a shape mismatch.
    ///
    /// ```
    /// use modelopt_quantize::QuantScheme;
    /// use ndarray::array;
    /// let s = QuantScheme::new(2).check()?;
    /// let p = s.quantize(&array![1.0f32])?.params().clone();
    /// let fq = s.fake_quantize_with(&array![0.4f32, 3.0], &p)?;
    /// assert_eq!(fq.straight_through(&array![0.5f32, 0.5])?, array![0.5f32, 0.0]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn straight_through(&self, upstream: &ArrayRef<f32, D>) -> Result<Array<f32, D>> {
        if upstream.shape() != self.in_range.shape() {
            return Err(CoreError::ShapeMismatch {
                expected: self.in_range.shape().to_vec(),
                found: upstream.shape().to_vec(),
            }
            .into());
        }
        let mut g = upstream.to_owned();
        ndarray::Zip::from(&mut g)
            .and(&self.in_range)
            .for_each(|g, &m| {
                if !m {
                    *g = 0.0;
                }
            });
        Ok(g)
    }

    /// Splits into `(values, in_range)`.
    ///
    /// ```
    /// let s = modelopt_quantize::QuantScheme::int8().check()?;
    /// let (v, m) = s.fake_quantize(&ndarray::array![2.0f32])?.into_parts();
    /// assert_eq!((v[0], m[0]), (2.0, true));
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn into_parts(self) -> (Array<f32, D>, Array<bool, D>) {
        (self.values, self.in_range)
    }
}

impl CheckedScheme {
    /// Fake-quantizes `x` with parameters from its own range.
    ///
    /// ```
    /// let s = modelopt_quantize::QuantScheme::int4().per_channel(0).check()?;
    /// let fq = s.fake_quantize(&ndarray::array![[0.7f32, -0.35], [0.0, 0.0]])?;
    /// assert_eq!(fq.values().row(1).to_vec(), vec![0.0, 0.0]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn fake_quantize<D: Dimension>(&self, x: &ArrayRef<f32, D>) -> Result<FakeQuantized<D>> {
        let params = self.quantize(x)?.params().clone();
        self.fake_quantize_with(x, &params)
    }

    /// Fake-quantizes `x` with given parameters (e.g. from an observer).
    ///
    /// ```
    /// use modelopt_quantize::QuantScheme;
    /// let s = QuantScheme::int8().check()?;
    /// let p = s.quantize(&ndarray::array![1.0f32])?.params().clone();
    /// assert!(s.fake_quantize_with(&ndarray::array![f32::NAN], &p).is_err());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn fake_quantize_with<D: Dimension>(
        &self,
        x: &ArrayRef<f32, D>,
        params: &QuantParams,
    ) -> Result<FakeQuantized<D>> {
        if x.is_empty() {
            return Err(CoreError::Empty {
                what: "tensor to fake-quantize",
            }
            .into());
        }
        let runs = self.check_params(x.shape(), params)?;
        stats::check_finite(x)?;
        let cow = x.as_standard_layout();
        let xs = standard_slice(&cow)?;
        let scales: Vec<f32> = params.scales.iter().copied().collect();
        let zps: Vec<i32> = params.zero_points.iter().copied().collect();
        let mut values = vec![0f32; xs.len()];
        let mut mask = vec![false; xs.len()];
        let (qmin, qmax) = (self.qmin as f32, self.qmax as f32);
        runs.for_each(|start, len, p| {
            let (s, z) = (scales[p], zps[p] as f32);
            let inv = 1.0 / s;
            let range = start..start + len;
            for ((v, m), &x) in values[range.clone()]
                .iter_mut()
                .zip(&mut mask[range.clone()])
                .zip(&xs[range])
            {
                let q = (x * inv).round_ties_even() + z;
                *m = (qmin..=qmax).contains(&q);
                *v = (q.clamp(qmin, qmax) - z) * s;
            }
        });
        let dim = x.raw_dim();
        let wrap = |e: ndarray::ShapeError| CoreError::invalid("fake_quantize", e.to_string());
        Ok(FakeQuantized {
            values: Array::from_shape_vec(dim.clone(), values).map_err(wrap)?,
            in_range: Array::from_shape_vec(dim, mask).map_err(wrap)?,
        })
    }
}
