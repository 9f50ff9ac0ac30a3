//! Calibrated uniform schemes: bit width, signedness, symmetric/affine mapping, granularity.

use modelopt_tensor_core::{CoreError, Granularity};
use ndarray::{ArrayRef, Dimension};

use crate::{Quantizer, Result, UniformQuantized};

/// How real values map to integer codes.
///
/// ```
/// use modelopt_quantize::{QuantMode, QuantScheme};
/// let s = QuantScheme::int8().mode(QuantMode::Affine).check()?;
/// assert_eq!((s.qmin(), s.qmax()), (-128, 127));
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum QuantMode {
    /// Narrow-range symmetric (TensorRT, ONNX weights, llama.cpp): codes in
    /// `[-(2^(b-1) - 1), 2^(b-1) - 1]`, `scale = absmax / (2^(b-1) - 1)`, zero point 0.
    #[default]
    Symmetric,
    /// torch.ao's symmetric: full range `[-2^(b-1), 2^(b-1) - 1]`,
    /// `scale = max(|min|, |max|) / ((qmax - qmin) / 2)` (absmax / 127.5 for 8 bits).
    SymmetricFullRange,
    /// torch.ao's affine: the range `[min(min, 0), max(max, 0)]` maps onto `[qmin, qmax]`,
    /// `scale = (max - min) / (qmax - qmin)`, `zero_point = qmin - round(min / scale)`.
    Affine,
}

/// Unchecked parameters of a uniform quantization scheme (a builder; see [`QuantScheme::check`]).
///
/// Defaults of [`QuantScheme::new`]: signed codes, [`QuantMode::Symmetric`],
/// [`Granularity::PerTensor`], `eps = f32::MIN_POSITIVE` (the smallest scale; keeps `1/scale`
/// finite and makes an all-zero channel exact).
///
/// Unsigned codes are the signed ones offset by `2^(b-1)` in the symmetric modes (so the zero
/// point is `2^(b-1)`, torch's `quint8` convention), and span `[0, 2^b - 1]` in affine mode.
///
/// ```
/// use modelopt_quantize::QuantScheme;
/// use ndarray::array;
///
/// let w = array![[0.5f32, -1.0, 0.25, 0.0], [2.0, 1.0, -0.5, 0.1]];
/// let q = QuantScheme::int8().per_channel(0).quantize(&w)?;
/// assert_eq!(q.codes().row(0).to_vec(), vec![64, -127, 32, 0]); // scale = 1/127
/// assert!(q.error_metrics(&w)?.sqnr_db > 40.0);
///
/// let q4 = QuantScheme::int4().per_group(1, 2).quantize(&w)?;
/// assert_eq!(q4.storage_bytes(), 4 + 4 * 4); // 8 codes packed in 4 bytes + 4 f32 scales
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantScheme {
    bits: u8,
    signed: bool,
    mode: QuantMode,
    granularity: Granularity,
    eps: f32,
}

impl QuantScheme {
    /// A signed, symmetric (narrow-range), per-tensor scheme of `bits` bits.
    ///
    /// ```
    /// assert!(modelopt_quantize::QuantScheme::new(9).check().is_err());
    /// ```
    pub fn new(bits: u8) -> Self {
        QuantScheme {
            bits,
            signed: true,
            mode: QuantMode::Symmetric,
            granularity: Granularity::PerTensor,
            eps: f32::MIN_POSITIVE,
        }
    }

    /// Signed 8-bit symmetric per tensor.
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::QuantScheme::int8().check()?.qmax(), 127);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn int8() -> Self {
        Self::new(8)
    }

    /// Signed 4-bit symmetric per tensor (codes in `[-7, 7]`, stored two per byte).
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::QuantScheme::int4().check()?.qmin(), -7);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn int4() -> Self {
        Self::new(4)
    }

    /// torch.ao's `qint8` with `torch.per_tensor_symmetric`: full range `[-128, 127]`,
    /// `scale = max(absmax / 127.5, f32::EPSILON)`. Combine with [`QuantScheme::per_channel`] for
    /// `per_channel_symmetric`, or use [`QuantScheme::torch`] for any torch configuration.
    ///
    /// ```
    /// let s = modelopt_quantize::QuantScheme::torch_qint8_symmetric().check()?;
    /// assert_eq!((s.qmin(), s.qmax(), s.eps()), (-128, 127, f32::EPSILON));
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn torch_qint8_symmetric() -> Self {
        Self::torch(true, false)
    }

    /// A scheme reproducing torch.ao's `MinMaxObserver` / `PerChannelMinMaxObserver` followed by
    /// `quantize_per_tensor` / `quantize_per_channel`: 8 bits, `qint8` (`signed`) or `quint8`,
    /// affine or [`QuantMode::SymmetricFullRange`], `eps = f32::EPSILON` (torch's default).
    ///
    /// ```
    /// let s = modelopt_quantize::QuantScheme::torch(false, true).check()?;
    /// assert_eq!((s.qmin(), s.qmax()), (0, 255));
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn torch(signed: bool, affine: bool) -> Self {
        let mode = if affine {
            QuantMode::Affine
        } else {
            QuantMode::SymmetricFullRange
        };
        Self::new(8).signed(signed).mode(mode).eps(f32::EPSILON)
    }

    /// Sets the bit width (2..=8).
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::QuantScheme::int8().bits(3).check()?.qmax(), 3);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn bits(mut self, bits: u8) -> Self {
        self.bits = bits;
        self
    }

    /// Signed (`true`) or unsigned codes.
    ///
    /// ```
    /// let s = modelopt_quantize::QuantScheme::int8().signed(false).check()?;
    /// assert_eq!((s.qmin(), s.qmax()), (1, 255)); // narrow symmetric, offset 128
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn signed(mut self, signed: bool) -> Self {
        self.signed = signed;
        self
    }

    /// Sets the mapping (symmetric, torch full-range symmetric, affine).
    ///
    /// ```
    /// use modelopt_quantize::{QuantMode, QuantScheme};
    /// let s = QuantScheme::int8().mode(QuantMode::SymmetricFullRange).check()?;
    /// assert_eq!(s.qmin(), -128);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn mode(mut self, mode: QuantMode) -> Self {
        self.mode = mode;
        self
    }

    /// Shorthand for `.mode(QuantMode::Affine)`.
    ///
    /// ```
    /// let s = modelopt_quantize::QuantScheme::int8().affine().check()?;
    /// assert_eq!(s.mode(), modelopt_quantize::QuantMode::Affine);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn affine(self) -> Self {
        self.mode(QuantMode::Affine)
    }

    /// Sets the granularity directly.
    ///
    /// ```
    /// use modelopt_tensor_core::Granularity;
    /// let s = modelopt_quantize::QuantScheme::int8().granularity(Granularity::PerChannel { axis: 1 });
    /// assert_eq!(s.check()?.granularity(), Granularity::PerChannel { axis: 1 });
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn granularity(mut self, granularity: Granularity) -> Self {
        self.granularity = granularity;
        self
    }

    /// One scale for the whole tensor (the default).
    ///
    /// ```
    /// let s = modelopt_quantize::QuantScheme::int8().per_channel(0).per_tensor().check()?;
    /// assert_eq!(s.granularity(), modelopt_tensor_core::Granularity::PerTensor);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn per_tensor(self) -> Self {
        self.granularity(Granularity::PerTensor)
    }

    /// One scale per index along `axis` (axis 0 of a `[out, in]` weight: per output channel).
    ///
    /// ```
    /// let q = modelopt_quantize::QuantScheme::int8().per_channel(1).quantize(&ndarray::array![[1.0f32, 2.0]])?;
    /// assert_eq!(q.scales().len(), 2);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn per_channel(self, axis: usize) -> Self {
        self.granularity(Granularity::PerChannel { axis })
    }

    /// One scale per `group_size` consecutive elements along `axis` (axis 1 of `[out, in]`: the
    /// GPTQ/AWQ/GGML convention).
    ///
    /// ```
    /// let q = modelopt_quantize::QuantScheme::int4().per_group(1, 2).quantize(&ndarray::array![[1.0f32, 2.0, 3.0, 4.0]])?;
    /// assert_eq!(q.scales().shape(), &[1, 2]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn per_group(self, axis: usize, group_size: usize) -> Self {
        self.granularity(Granularity::PerGroup { axis, group_size })
    }

    /// The smallest scale allowed (`scale = max(scale, eps)`); must be `>= f32::MIN_POSITIVE`.
    ///
    /// ```
    /// assert!(modelopt_quantize::QuantScheme::int8().eps(0.0).check().is_err());
    /// ```
    pub fn eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }

    /// Validates the parameters once: bits in 2..=8, group size at least 1, `eps` finite and
    /// `>= f32::MIN_POSITIVE`. The axis and group divisibility are checked against the tensor's
    /// shape when it is quantized.
    ///
    /// ```
    /// use modelopt_quantize::QuantScheme;
    /// let e = QuantScheme::new(1).check().unwrap_err();
    /// assert_eq!(e.to_string(), "invalid parameter `bits`: must be in 2..=8, got 1");
    /// assert!(QuantScheme::int4().per_group(1, 0).check().is_err());
    /// ```
    pub fn check(&self) -> Result<CheckedScheme> {
        if !(2..=8).contains(&self.bits) {
            return Err(
                CoreError::invalid("bits", format!("must be in 2..=8, got {}", self.bits)).into(),
            );
        }
        if let Granularity::PerGroup { group_size: 0, .. } = self.granularity {
            return Err(CoreError::invalid("group_size", "must be at least 1").into());
        }
        if !(self.eps.is_finite() && self.eps >= f32::MIN_POSITIVE) {
            return Err(CoreError::invalid(
                "eps",
                format!("must be finite and >= f32::MIN_POSITIVE, got {}", self.eps),
            )
            .into());
        }
        let b = i32::from(self.bits);
        let half = 1i32 << (b - 1);
        let (qmin, qmax, sym_zero) = match (self.mode, self.signed) {
            (QuantMode::Symmetric, true) => (-(half - 1), half - 1, 0),
            (QuantMode::Symmetric, false) => (1, 2 * half - 1, half),
            (QuantMode::SymmetricFullRange, true) | (QuantMode::Affine, true) => {
                (-half, half - 1, 0)
            }
            (QuantMode::SymmetricFullRange, false) => (0, 2 * half - 1, half),
            (QuantMode::Affine, false) => (0, 2 * half - 1, 0),
        };
        let divisor = match self.mode {
            QuantMode::Symmetric => (half - 1) as f32,
            // (qmax - qmin) / 2 as torch computes it: a float division (127.5 for 8 bits).
            QuantMode::SymmetricFullRange => (qmax - qmin) as f32 / 2.0,
            QuantMode::Affine => (qmax - qmin) as f32,
        };
        Ok(CheckedScheme {
            bits: self.bits,
            signed: self.signed,
            mode: self.mode,
            granularity: self.granularity,
            eps: self.eps,
            qmin,
            qmax,
            sym_zero,
            divisor,
        })
    }

    /// Checks the parameters, then quantizes `x` (see [`CheckedScheme::quantize`]).
    ///
    /// ```
    /// let q = modelopt_quantize::QuantScheme::int8().quantize(&ndarray::array![1.0f32, -0.5])?;
    /// assert_eq!(q.codes().to_vec(), vec![127, -64]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn quantize<D: Dimension>(&self, x: &ArrayRef<f32, D>) -> Result<UniformQuantized<D>> {
        self.check()?.quantize(x)
    }
}

impl<D: Dimension> Quantizer<D> for QuantScheme {
    type Output = UniformQuantized<D>;

    fn quantize(&self, x: &ArrayRef<f32, D>) -> Result<UniformQuantized<D>> {
        QuantScheme::quantize(self, x)
    }
}

/// Validated scheme parameters (from [`QuantScheme::check`]); nothing quantizes with unchecked ones.
///
/// ```
/// let s = modelopt_quantize::QuantScheme::int8().affine().signed(false).check()?;
/// assert_eq!((s.bits(), s.is_signed(), s.qmin(), s.qmax()), (8, false, 0, 255));
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckedScheme {
    pub(crate) bits: u8,
    pub(crate) signed: bool,
    pub(crate) mode: QuantMode,
    pub(crate) granularity: Granularity,
    pub(crate) eps: f32,
    pub(crate) qmin: i32,
    pub(crate) qmax: i32,
    /// Zero point of the symmetric modes (0 signed, `2^(b-1)` unsigned).
    pub(crate) sym_zero: i32,
    /// `absmax` (symmetric) or `max - min` (affine) is divided by this to get the scale.
    pub(crate) divisor: f32,
}

impl CheckedScheme {
    /// Bit width of the codes.
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::QuantScheme::int4().check()?.bits(), 4);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// Whether codes are signed.
    ///
    /// ```
    /// assert!(modelopt_quantize::QuantScheme::int4().check()?.is_signed());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn is_signed(&self) -> bool {
        self.signed
    }

    /// The mapping.
    ///
    /// ```
    /// use modelopt_quantize::{QuantMode, QuantScheme};
    /// assert_eq!(QuantScheme::int8().check()?.mode(), QuantMode::Symmetric);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn mode(&self) -> QuantMode {
        self.mode
    }

    /// The granularity.
    ///
    /// ```
    /// let s = modelopt_quantize::QuantScheme::int8().per_channel(0).check()?;
    /// assert_eq!(s.granularity(), modelopt_tensor_core::Granularity::PerChannel { axis: 0 });
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// The smallest scale.
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::QuantScheme::int8().check()?.eps(), f32::MIN_POSITIVE);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn eps(&self) -> f32 {
        self.eps
    }

    /// Smallest code.
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::QuantScheme::new(2).check()?.qmin(), -1);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn qmin(&self) -> i32 {
        self.qmin
    }

    /// Largest code.
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::QuantScheme::new(3).check()?.qmax(), 3);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn qmax(&self) -> i32 {
        self.qmax
    }

    /// Whether codes are stored two per byte (4 bits or fewer).
    ///
    /// ```
    /// assert!(modelopt_quantize::QuantScheme::new(3).check()?.is_packed());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn is_packed(&self) -> bool {
        self.bits <= 4
    }

    /// Whether the zero points can differ from a constant (affine mode) and so are stored.
    ///
    /// ```
    /// assert!(!modelopt_quantize::QuantScheme::int8().check()?.stores_zero_points());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn stores_zero_points(&self) -> bool {
        self.mode == QuantMode::Affine
    }

    /// The same scheme with another granularity (checked again).
    ///
    /// ```
    /// let s = modelopt_quantize::QuantScheme::int8().check()?.with_granularity(
    ///     modelopt_tensor_core::Granularity::PerGroup { axis: 0, group_size: 0 });
    /// assert!(s.is_err());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn with_granularity(&self, granularity: Granularity) -> Result<CheckedScheme> {
        self.unchecked().granularity(granularity).check()
    }

    /// The builder this was checked from.
    ///
    /// ```
    /// let b = modelopt_quantize::QuantScheme::int4();
    /// assert_eq!(b.check()?.unchecked(), b);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn unchecked(&self) -> QuantScheme {
        QuantScheme {
            bits: self.bits,
            signed: self.signed,
            mode: self.mode,
            granularity: self.granularity,
            eps: self.eps,
        }
    }

    /// `(scale, zero_point)` for an observed range `[lo, hi]` (torch.ao's `_calculate_qparams`
    /// formulas; the range is first widened to include 0). `lo <= hi`, both finite.
    ///
    /// ```
    /// use modelopt_quantize::QuantScheme;
    /// assert_eq!(QuantScheme::int8().check()?.params_for_range(-0.5, 127.0), (1.0, 0));
    /// let affine = QuantScheme::int8().affine().signed(false).check()?;
    /// assert_eq!(affine.params_for_range(-55.0, 200.0), (1.0, 55));
    /// assert_eq!(affine.params_for_range(10.0, 255.0), (1.0, 0)); // range widened to include 0
    /// assert_eq!(QuantScheme::int8().check()?.params_for_range(0.0, 0.0).0, f32::MIN_POSITIVE);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    #[inline(always)]
    pub fn params_for_range(&self, lo: f32, hi: f32) -> (f32, i32) {
        let min_neg = lo.min(0.0);
        let max_pos = hi.max(0.0);
        match self.mode {
            QuantMode::Symmetric | QuantMode::SymmetricFullRange => {
                let amax = (-min_neg).max(max_pos);
                ((amax / self.divisor).max(self.eps), self.sym_zero)
            }
            QuantMode::Affine => {
                let scale = ((max_pos - min_neg) / self.divisor).max(self.eps);
                let zp = self.qmin - (min_neg / scale).round_ties_even() as i32;
                (scale, zp.clamp(self.qmin, self.qmax))
            }
        }
    }
}
