//! The result of uniform quantization: packed codes, parameters, shape.

use modelopt_tensor_core::ErrorMetrics;
use ndarray::{Array, ArrayRef, ArrayViewD, Dimension};

use crate::layout::Runs;
use crate::packing::{unpack_nibbles, widen_bytes};
use crate::params::QuantParams;
use crate::scheme::CheckedScheme;
use crate::{QuantError, Result};
use modelopt_tensor_core::CoreError;

/// A uniformly quantized tensor: codes in row-major order (two per byte for 4 bits or fewer, see
/// [`packing`](crate::packing)), its [`QuantParams`], its scheme and shape.
///
/// ```
/// use modelopt_quantize::QuantScheme;
/// use ndarray::array;
///
/// let w = array![[0.3f32, -0.7, 0.1, 0.0], [1.0, 0.3, -0.25, 0.75]];
/// let q = QuantScheme::int4().per_channel(0).quantize(&w)?;
/// assert_eq!(q.packed_codes().len(), 4);       // 8 four-bit codes
/// assert_eq!(q.storage_bytes(), 4 + 2 * 4);    // + two f32 scales
/// assert_eq!(q.codes().row(1).to_vec(), vec![7, 2, -2, 5]); // scale 1/7
/// let m = q.error_metrics(&w)?;
/// assert!(m.max_abs_error <= 0.5 / 7.0 + 1e-6);
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct UniformQuantized<D: Dimension> {
    dim: D,
    scheme: CheckedScheme,
    params: QuantParams,
    data: Vec<u8>,
}

impl<D: Dimension> UniformQuantized<D> {
    pub(crate) fn from_parts(
        dim: D,
        scheme: CheckedScheme,
        params: QuantParams,
        data: Vec<u8>,
    ) -> Self {
        UniformQuantized {
            dim,
            scheme,
            params,
            data,
        }
    }

    /// Rebuilds a quantized tensor from stored parts (e.g. read back from a file): its shape,
    /// scheme, parameters and [`packed_codes`](Self::packed_codes) bytes. Checks that the
    /// parameters fit the shape and scheme, that the byte count is right and that every code is
    /// inside `[qmin, qmax]`.
    ///
    /// ```
    /// use modelopt_quantize::{QuantScheme, UniformQuantized};
    /// let w = ndarray::array![[0.5f32, -1.0, 0.25, 2.0]];
    /// let q = QuantScheme::int4().per_group(1, 2).quantize(&w)?;
    /// let back = UniformQuantized::from_stored(
    ///     w.raw_dim(), *q.scheme(), q.params().clone(), q.packed_codes().to_vec())?;
    /// assert_eq!(back, q);
    /// assert!(UniformQuantized::from_stored(w.raw_dim(), *q.scheme(), q.params().clone(), vec![0; 3]).is_err());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn from_stored(
        dim: D,
        scheme: CheckedScheme,
        params: QuantParams,
        packed_codes: Vec<u8>,
    ) -> Result<Self> {
        let n = dim.size();
        if n == 0 {
            return Err(CoreError::Empty {
                what: "stored quantized tensor",
            }
            .into());
        }
        scheme.check_params(dim.slice(), &params)?;
        let expected = if scheme.is_packed() { n.div_ceil(2) } else { n };
        if packed_codes.len() != expected {
            return Err(QuantError::Length {
                what: "stored codes",
                expected,
                found: packed_codes.len(),
                unit: "bytes",
            });
        }
        let q = UniformQuantized {
            dim,
            scheme,
            params,
            data: packed_codes,
        };
        if let Some((i, c)) = q
            .codes_vec()
            .into_iter()
            .enumerate()
            .find(|(_, c)| !(scheme.qmin..=scheme.qmax).contains(c))
        {
            return Err(CoreError::invalid(
                "codes",
                format!(
                    "code {c} at flat index {i} is outside [{}, {}]",
                    scheme.qmin, scheme.qmax
                ),
            )
            .into());
        }
        Ok(q)
    }

    /// Shape of the quantized tensor.
    ///
    /// ```
    /// let q = modelopt_quantize::QuantScheme::int8().quantize(&ndarray::Array2::<f32>::ones((2, 3)))?;
    /// assert_eq!(q.shape(), &[2, 3]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn shape(&self) -> &[usize] {
        self.dim.slice()
    }

    /// Number of elements.
    ///
    /// ```
    /// let q = modelopt_quantize::QuantScheme::int8().quantize(&ndarray::Array2::<f32>::ones((2, 3)))?;
    /// assert_eq!(q.len(), 6);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.dim.size()
    }

    /// Always false (empty tensors are rejected).
    ///
    /// ```
    /// let q = modelopt_quantize::QuantScheme::int8().quantize(&ndarray::array![1.0f32])?;
    /// assert!(!q.is_empty());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The scheme it was quantized with.
    ///
    /// ```
    /// let q = modelopt_quantize::QuantScheme::int4().quantize(&ndarray::array![1.0f32])?;
    /// assert_eq!(q.scheme().bits(), 4);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn scheme(&self) -> &CheckedScheme {
        &self.scheme
    }

    /// Scales and zero points.
    ///
    /// ```
    /// let q = modelopt_quantize::QuantScheme::int8().quantize(&ndarray::array![-254.0f32])?;
    /// assert_eq!(q.params().scales()[[0]], 2.0);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn params(&self) -> &QuantParams {
        &self.params
    }

    /// The scales (see [`QuantParams`] for their layout).
    ///
    /// ```
    /// let q = modelopt_quantize::QuantScheme::int8().per_channel(0).quantize(&ndarray::array![[127.0f32], [63.5]])?;
    /// assert_eq!(q.scales().iter().copied().collect::<Vec<_>>(), vec![1.0, 0.5]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn scales(&self) -> ArrayViewD<'_, f32> {
        self.params.scales()
    }

    /// The zero points.
    ///
    /// ```
    /// let q = modelopt_quantize::QuantScheme::int8().affine().quantize(&ndarray::array![0.0f32, 2.55])?;
    /// assert_eq!(q.zero_points()[[0]], -128);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn zero_points(&self) -> ArrayViewD<'_, i32> {
        self.params.zero_points()
    }

    /// The stored code bytes: one per code (two's complement when signed) for 5..=8 bits, two
    /// per byte (low nibble first) for 4 bits or fewer.
    ///
    /// ```
    /// let q = modelopt_quantize::QuantScheme::int4().quantize(&ndarray::array![7.0f32, -7.0])?;
    /// assert_eq!(q.packed_codes(), &[0x97]); // 7 = 0x7 low, -7 = 0x9 high
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn packed_codes(&self) -> &[u8] {
        &self.data
    }

    /// True storage in bytes: the codes, 4 per f32 scale, and 1 per zero point when the scheme
    /// stores zero points (affine; symmetric zero points are a constant of the scheme).
    ///
    /// ```
    /// let w = ndarray::Array2::<f32>::ones((4, 64));
    /// let q = modelopt_quantize::QuantScheme::int4().per_group(1, 32).quantize(&w)?;
    /// assert_eq!(q.storage_bytes(), 128 + 8 * 4);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn storage_bytes(&self) -> usize {
        let zp = if self.scheme.stores_zero_points() {
            self.params.len()
        } else {
            0
        };
        self.data.len() + 4 * self.params.len() + zp
    }

    /// Storage bits per element (`storage_bytes * 8 / len`).
    ///
    /// ```
    /// let w = ndarray::Array2::<f32>::ones((1, 128));
    /// let q = modelopt_quantize::QuantScheme::int4().per_group(1, 32).quantize(&w)?;
    /// assert_eq!(q.bits_per_weight(), 5.0);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn bits_per_weight(&self) -> f64 {
        (self.storage_bytes() * 8) as f64 / self.len() as f64
    }

    fn codes_vec(&self) -> Vec<i32> {
        if self.scheme.is_packed() {
            // ok: `data` holds ceil(len / 2) bytes by construction, so unpacking cannot fail.
            unpack_nibbles(&self.data, self.len(), self.scheme.signed).unwrap_or_default()
        } else {
            widen_bytes(&self.data, self.scheme.signed)
        }
    }

    /// The integer codes as `i32`, shaped like the input.
    ///
    /// ```
    /// let q = modelopt_quantize::QuantScheme::new(2).quantize(&ndarray::array![[1.0f32, -0.4]])?;
    /// assert_eq!(q.codes(), ndarray::array![[1, 0]]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn codes(&self) -> Array<i32, D> {
        shaped(self.dim.clone(), self.codes_vec())
    }

    /// The reconstruction `(code - zero_point) * scale`, shaped like the input.
    ///
    /// ```
    /// let q = modelopt_quantize::QuantScheme::int8().quantize(&ndarray::array![127.0f32, 0.5, -1.6])?;
    /// assert_eq!(q.dequantize().to_vec(), vec![127.0, 0.0, -2.0]); // ties to even
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn dequantize(&self) -> Array<f32, D> {
        let codes = self.codes_vec();
        let mut out = vec![0f32; codes.len()];
        let scales: Vec<f32> = self.params.scales.iter().copied().collect();
        let zps: Vec<i32> = self.params.zero_points.iter().copied().collect();
        // ok: the runs were built from this shape and granularity at quantization time.
        if let Ok(runs) = Runs::new(self.shape(), self.scheme.granularity) {
            runs.for_each(|start, len, p| {
                let (s, z) = (scales[p], zps[p]);
                for (o, &c) in out[start..start + len]
                    .iter_mut()
                    .zip(&codes[start..start + len])
                {
                    *o = (c - z) as f32 * s;
                }
            });
        }
        shaped(self.dim.clone(), out)
    }

    /// MSE, max abs error and SQNR (dB) of [`dequantize`](Self::dequantize) against `original`.
    ///
    /// ```
    /// let x = ndarray::array![1.0f32, -0.5, 0.25];
    /// let m = modelopt_quantize::QuantScheme::int8().quantize(&x)?.error_metrics(&x)?;
    /// assert!(m.sqnr_db > 40.0);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn error_metrics(&self, original: &ArrayRef<f32, D>) -> Result<ErrorMetrics> {
        Ok(ErrorMetrics::between(original, &self.dequantize())?)
    }
}

fn shaped<T: Clone + Default, D: Dimension>(dim: D, v: Vec<T>) -> Array<T, D> {
    // ok: `v` has exactly `dim.size()` elements by construction; the fallback is never taken.
    Array::from_shape_vec(dim.clone(), v).unwrap_or_else(|_| Array::default(dim))
}
