//! Quantization parameters: scales and zero points laid out by granularity.

use modelopt_tensor_core::{CoreError, Granularity};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

use crate::Result;

/// Scales and zero points of a quantized tensor, one pair per parameter set of its granularity.
///
/// Layout (row-major): per tensor `[1]`; per channel along `axis`: `[shape[axis]]`; per group of
/// `G` along `axis`: the tensor's shape with `shape[axis]` replaced by `shape[axis] / G`.
/// A value `x` at a position with parameters `(s, z)` is coded `clamp(round(x / s) + z)` and
/// reconstructed as `(code - z) * s`.
///
/// ```
/// use modelopt_quantize::QuantParams;
/// use modelopt_tensor_core::Granularity;
/// use ndarray::{arr1, IxDyn};
///
/// let p = QuantParams::new(arr1(&[0.5f32, 0.25]).into_dyn(), arr1(&[0, 0]).into_dyn(),
///                          Granularity::PerChannel { axis: 0 })?;
/// assert_eq!(p.scales().len(), 2);
/// assert!(QuantParams::new(arr1(&[0.0f32]).into_dyn(), arr1(&[0]).into_dyn(), Granularity::PerTensor).is_err());
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct QuantParams {
    pub(crate) scales: ArrayD<f32>,
    pub(crate) zero_points: ArrayD<i32>,
    pub(crate) granularity: Granularity,
}

impl QuantParams {
    /// Builds parameters; scales must be finite and `>= f32::MIN_POSITIVE`, and both arrays must
    /// have the same shape.
    ///
    /// ```
    /// use modelopt_quantize::QuantParams;
    /// use ndarray::arr1;
    /// let e = QuantParams::new(arr1(&[1.0f32]).into_dyn(), arr1(&[0, 0]).into_dyn(),
    ///                          modelopt_tensor_core::Granularity::PerTensor);
    /// assert!(e.is_err());
    /// ```
    pub fn new(
        scales: ArrayD<f32>,
        zero_points: ArrayD<i32>,
        granularity: Granularity,
    ) -> Result<Self> {
        if scales.shape() != zero_points.shape() {
            return Err(CoreError::ShapeMismatch {
                expected: scales.shape().to_vec(),
                found: zero_points.shape().to_vec(),
            }
            .into());
        }
        if let Some((i, s)) = scales
            .iter()
            .enumerate()
            .find(|(_, s)| !(s.is_finite() && **s >= f32::MIN_POSITIVE))
        {
            return Err(CoreError::invalid(
                "scales",
                format!("scale {s} at flat index {i} is not finite and >= f32::MIN_POSITIVE"),
            )
            .into());
        }
        Ok(QuantParams {
            scales,
            zero_points,
            granularity,
        })
    }

    /// The scales.
    ///
    /// ```
    /// let q = modelopt_quantize::QuantScheme::int8().quantize(&ndarray::array![127.0f32])?;
    /// assert_eq!(q.params().scales()[[0]], 1.0);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn scales(&self) -> ArrayViewD<'_, f32> {
        self.scales.view()
    }

    /// The zero points.
    ///
    /// ```
    /// let q = modelopt_quantize::QuantScheme::int8().quantize(&ndarray::array![127.0f32])?;
    /// assert_eq!(q.params().zero_points()[[0]], 0);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn zero_points(&self) -> ArrayViewD<'_, i32> {
        self.zero_points.view()
    }

    /// The granularity the parameters were made for.
    ///
    /// ```
    /// let q = modelopt_quantize::QuantScheme::int8().quantize(&ndarray::array![1.0f32])?;
    /// assert_eq!(q.params().granularity(), modelopt_tensor_core::Granularity::PerTensor);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// Number of parameter sets.
    ///
    /// ```
    /// let q = modelopt_quantize::QuantScheme::int8().per_channel(1).quantize(&ndarray::array![[1.0f32, 2.0]])?;
    /// assert_eq!(q.params().len(), 2);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.scales.len()
    }

    /// Always false for parameters made by this crate (at least one set).
    ///
    /// ```
    /// let q = modelopt_quantize::QuantScheme::int8().quantize(&ndarray::array![1.0f32])?;
    /// assert!(!q.params().is_empty());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    pub(crate) fn from_vecs(
        shape: Vec<usize>,
        scales: Vec<f32>,
        zero_points: Vec<i32>,
        granularity: Granularity,
    ) -> Result<Self> {
        let shape = IxDyn(&shape);
        let wrap = |e: ndarray::ShapeError| CoreError::invalid("params", e.to_string());
        Ok(QuantParams {
            scales: ArrayD::from_shape_vec(shape.clone(), scales).map_err(wrap)?,
            zero_points: ArrayD::from_shape_vec(shape, zero_points).map_err(wrap)?,
            granularity,
        })
    }
}

/// The shape of the parameter arrays for a tensor of `shape` (after `granularity.check`).
pub(crate) fn params_shape(shape: &[usize], granularity: Granularity) -> Vec<usize> {
    match granularity {
        Granularity::PerChannel { axis } => vec![shape[axis]],
        Granularity::PerGroup { axis, group_size } => {
            let mut s = shape.to_vec();
            s[axis] /= group_size;
            s
        }
        _ => vec![1],
    }
}
