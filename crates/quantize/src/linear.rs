//! The textbook fixed-scale quantizer: `code = round(x * Q)`, `x' = code / Q`.

use modelopt_tensor_core::{CoreError, ErrorMetrics, stats};
use ndarray::{Array, ArrayRef, Dimension};

use crate::{Quantizer, Result};

/// Fixed-scale linear quantization: `code = round_half_even(x * Q)`, dequantized as `code / Q`.
///
/// Defaults (see [`LinearQuantizer::new`]): no bit width, so codes are only limited by `i32`.
/// With [`LinearQuantizer::bits`] the codes are clamped to the signed range
/// `[-2^(b-1), 2^(b-1) - 1]` and the result reports how many were clamped.
///
/// ```
/// use modelopt_quantize::LinearQuantizer;
/// use ndarray::array;
///
/// let q = LinearQuantizer::new(10.0).apply(&array![0.1f32, 0.2, 0.3, 0.4, 0.5])?;
/// assert_eq!(q.codes(), array![1, 2, 3, 4, 5]);
/// assert_eq!(q.dequantize(), array![0.1f32, 0.2, 0.3, 0.4, 0.5]);
///
/// let q = LinearQuantizer::new(100.0).bits(8).apply(&array![1.0f32, -2.0, 0.5].view())?;
/// assert_eq!(q.codes(), array![100, -128, 50]);
/// assert_eq!(q.clamped(), 1);
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearQuantizer {
    q: f32,
    bits: Option<u8>,
}

impl LinearQuantizer {
    /// A quantizer with scale factor `q` (codes per unit); no bit-width limit.
    ///
    /// `q` must be finite and positive; this is checked by [`LinearQuantizer::check`], which
    /// [`LinearQuantizer::apply`] calls.
    ///
    /// ```
    /// let lq = modelopt_quantize::LinearQuantizer::new(4.0);
    /// assert_eq!(lq.scale_factor(), 4.0);
    /// ```
    pub fn new(q: f32) -> Self {
        LinearQuantizer { q, bits: None }
    }

    /// Limits codes to `bits` signed bits (2..=8), clamping the ones outside.
    ///
    /// ```
    /// assert!(modelopt_quantize::LinearQuantizer::new(1.0).bits(9).check().is_err());
    /// ```
    pub fn bits(mut self, bits: u8) -> Self {
        self.bits = Some(bits);
        self
    }

    /// The scale factor `Q`.
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::LinearQuantizer::new(2.5).scale_factor(), 2.5);
    /// ```
    pub fn scale_factor(&self) -> f32 {
        self.q
    }

    /// Validates the parameters: `Q` finite and positive, bits in 2..=8.
    ///
    /// ```
    /// use modelopt_quantize::LinearQuantizer;
    /// assert!(LinearQuantizer::new(0.0).check().is_err());
    /// assert!(LinearQuantizer::new(f32::NAN).check().is_err());
    /// LinearQuantizer::new(3.0).bits(4).check()?;
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn check(&self) -> Result<Self> {
        if !(self.q.is_finite() && self.q > 0.0) {
            return Err(
                CoreError::invalid("q", format!("must be finite and > 0, got {}", self.q)).into(),
            );
        }
        if let Some(b) = self.bits
            && !(2..=8).contains(&b)
        {
            return Err(CoreError::invalid("bits", format!("must be in 2..=8, got {b}")).into());
        }
        Ok(*self)
    }

    /// Quantizes `x` (any dimension; owned array or view). Errors on a non-finite element (naming
    /// its index), an empty input, or a product `x * Q` outside the `i32` range without `bits`.
    ///
    /// ```
    /// use modelopt_quantize::{LinearQuantizer, QuantError};
    /// use ndarray::array;
    /// let e = LinearQuantizer::new(1.0).apply(&array![[1.0f32, f32::NAN]]).unwrap_err();
    /// assert_eq!(e.to_string(), "non-finite value NaN at flat index 1 ([0, 1])");
    /// ```
    pub fn apply<D: Dimension>(&self, x: &ArrayRef<f32, D>) -> Result<LinearQuantized<D>> {
        let me = self.check()?;
        if x.is_empty() {
            return Err(CoreError::Empty {
                what: "LinearQuantizer input",
            }
            .into());
        }
        stats::check_finite(x)?;
        let (lo, hi) = match me.bits {
            Some(b) => (-(1i64 << (b - 1)) as f32, ((1i64 << (b - 1)) - 1) as f32),
            // 2^31 is exactly representable; anything at or beyond it does not fit an i32.
            None => (i32::MIN as f32, 2_147_483_520.0),
        };
        let mut clamped = 0usize;
        let mut overflow = None;
        let mut codes = Array::<i32, D>::zeros(x.raw_dim());
        for (i, (c, &v)) in codes.iter_mut().zip(x.iter()).enumerate() {
            let r = (v * me.q).round_ties_even();
            if r < lo || r > hi {
                if me.bits.is_none() {
                    overflow.get_or_insert(i);
                }
                clamped += 1;
            }
            *c = r.clamp(lo, hi) as i32;
        }
        if let Some(i) = overflow {
            return Err(CoreError::invalid(
                "q",
                format!(
                    "x * Q at flat index {i} ({:?}) does not fit an i32 code",
                    stats::unravel_index(i, x.shape())
                ),
            )
            .into());
        }
        Ok(LinearQuantized {
            codes,
            q: me.q,
            clamped,
        })
    }
}

impl<D: Dimension> Quantizer<D> for LinearQuantizer {
    type Output = LinearQuantized<D>;

    fn quantize(&self, x: &ArrayRef<f32, D>) -> Result<LinearQuantized<D>> {
        self.apply(x)
    }
}

/// The result of [`LinearQuantizer::apply`]: integer codes of the input's shape and the factor `Q`.
///
/// ```
/// use modelopt_quantize::LinearQuantizer;
/// let q = LinearQuantizer::new(2.0).apply(&ndarray::array![[0.75f32, -0.25]])?;
/// assert_eq!(q.codes(), ndarray::array![[2, 0]]); // 1.5 -> 2, -0.5 -> -0 (ties to even)
/// assert_eq!(q.dequantize(), ndarray::array![[1.0f32, 0.0]]);
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LinearQuantized<D: Dimension> {
    codes: Array<i32, D>,
    q: f32,
    clamped: usize,
}

impl<D: Dimension> LinearQuantized<D> {
    /// The integer codes, shaped like the input.
    ///
    /// ```
    /// let q = modelopt_quantize::LinearQuantizer::new(1.0).apply(&ndarray::array![2.5f32])?;
    /// assert_eq!(q.codes()[0], 2);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn codes(&self) -> Array<i32, D> {
        self.codes.clone()
    }

    /// A borrowed view of the codes.
    ///
    /// ```
    /// let q = modelopt_quantize::LinearQuantizer::new(1.0).apply(&ndarray::array![3.0f32])?;
    /// assert_eq!(q.codes_view()[0], 3);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn codes_view(&self) -> ndarray::ArrayView<'_, i32, D> {
        self.codes.view()
    }

    /// The reconstruction `code / Q` as `f32`, shaped like the input.
    ///
    /// ```
    /// let q = modelopt_quantize::LinearQuantizer::new(4.0).apply(&ndarray::array![0.3f32])?;
    /// assert_eq!(q.dequantize()[0], 0.25);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn dequantize(&self) -> Array<f32, D> {
        // Computed in f64 and rounded once, so `code / Q` is the correctly rounded f32 quotient.
        let q = f64::from(self.q);
        self.codes.mapv(|c| (f64::from(c) / q) as f32)
    }

    /// The scale factor `Q`.
    ///
    /// ```
    /// let q = modelopt_quantize::LinearQuantizer::new(8.0).apply(&ndarray::array![1.0f32])?;
    /// assert_eq!(q.scale_factor(), 8.0);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn scale_factor(&self) -> f32 {
        self.q
    }

    /// How many codes were clamped to the bit-width range (0 without a bit width).
    ///
    /// ```
    /// use modelopt_quantize::LinearQuantizer;
    /// let q = LinearQuantizer::new(1.0).bits(2).apply(&ndarray::array![-3.0f32, 0.0, 2.0])?;
    /// assert_eq!((q.codes().to_vec(), q.clamped()), (vec![-2, 0, 1], 2));
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn clamped(&self) -> usize {
        self.clamped
    }

    /// MSE, max abs error and SQNR of the reconstruction against `original`.
    ///
    /// ```
    /// use modelopt_quantize::LinearQuantizer;
    /// let x = ndarray::array![0.5f32, 1.0];
    /// let m = LinearQuantizer::new(2.0).apply(&x)?.error_metrics(&x)?;
    /// assert_eq!(m.max_abs_error, 0.0);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn error_metrics(&self, original: &ArrayRef<f32, D>) -> Result<ErrorMetrics> {
        Ok(ErrorMetrics::between(original, &self.dequantize())?)
    }
}
