//! Requantization and fused epilogues: per-output-channel weight scale times the activation
//! scale, bias, optional ReLU, output f32 or int8.

use crate::Result;
use crate::error::invalid;

/// What happens to an exact integer accumulator `acc[i][r]` of output channel `r`:
/// `y = acc * (s_x[i] * s_w[r]) + bias[r]` (f32: one product of the two scales, one multiply, one
/// add, in that order), then `max(y, 0)` with ReLU. Validated when built.
///
/// ```
/// use modelopt_kernels::Epilogue;
/// let e = Epilogue::new(vec![0.5, 0.25])?.bias(vec![1.0, -1.0])?.relu(true);
/// assert_eq!(e.channels(), 2);
/// assert!(Epilogue::new(vec![0.5, f32::NAN]).is_err());
/// assert!(Epilogue::new(vec![0.5]).unwrap().bias(vec![1.0, 2.0]).is_err());
/// # Ok::<(), modelopt_kernels::KernelError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Epilogue {
    pub(crate) weight_scales: Vec<f32>,
    pub(crate) bias: Option<Vec<f32>>,
    pub(crate) relu: bool,
}

impl Epilogue {
    /// One weight scale per output channel (finite, `>= 0`; 0 is an all-zero channel).
    pub fn new(weight_scales: Vec<f32>) -> Result<Self> {
        if weight_scales.is_empty() {
            return Err(invalid(
                "weight scales",
                "need one per output channel, got none",
            ));
        }
        if let Some((i, s)) = weight_scales
            .iter()
            .enumerate()
            .find(|(_, s)| !(s.is_finite() && **s >= 0.0))
        {
            return Err(invalid(
                "weight scales",
                format!("scale {i} is {s}; must be finite and >= 0"),
            ));
        }
        Ok(Epilogue {
            weight_scales,
            bias: None,
            relu: false,
        })
    }

    /// Adds a bias (one finite value per output channel).
    pub fn bias(mut self, bias: Vec<f32>) -> Result<Self> {
        if bias.len() != self.weight_scales.len() {
            return Err(crate::error::shape(
                vec![self.weight_scales.len()],
                vec![bias.len()],
            ));
        }
        if let Some(i) = bias.iter().position(|b| !b.is_finite()) {
            return Err(invalid("bias", format!("value {i} is {}", bias[i])));
        }
        self.bias = Some(bias);
        Ok(self)
    }

    /// Applies ReLU after the bias.
    pub fn relu(mut self, relu: bool) -> Self {
        self.relu = relu;
        self
    }

    /// Output channels.
    pub fn channels(&self) -> usize {
        self.weight_scales.len()
    }

    /// The weight scales.
    pub fn weight_scales(&self) -> &[f32] {
        &self.weight_scales
    }

    /// The bias, if any.
    pub fn bias_values(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }

    /// Whether ReLU is applied.
    pub fn has_relu(&self) -> bool {
        self.relu
    }
}

/// Requantization of an f32 result to int8 codes: `clamp(round(y / scale) + zero_point,
/// -128, 127)` with torch's order (multiply by the f32 reciprocal, round half to even, add the
/// zero point). Validated when built.
///
/// ```
/// use modelopt_kernels::Requantize;
/// let r = Requantize::new(0.5, 0)?;
/// assert_eq!(r.code(1.25), 2); // 2.5 -> 2 (half to even)
/// assert_eq!(r.code(1000.0), 127);
/// assert!(Requantize::new(0.0, 0).is_err());
/// assert!(Requantize::new(0.5, 200).is_err());
/// # Ok::<(), modelopt_kernels::KernelError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Requantize {
    inv: f32,
    scale: f32,
    zero_point: i32,
}

impl Requantize {
    /// Output scale (finite, > 0) and int8 zero point (`-128..=127`).
    pub fn new(scale: f32, zero_point: i32) -> Result<Self> {
        if !(scale.is_finite() && scale > 0.0 && (1.0 / scale).is_finite()) {
            return Err(invalid(
                "output scale",
                format!("must be finite and > 0 with a finite reciprocal, got {scale}"),
            ));
        }
        if !(-128..=127).contains(&zero_point) {
            return Err(invalid(
                "output zero point",
                format!("must be in -128..=127, got {zero_point}"),
            ));
        }
        Ok(Requantize {
            inv: 1.0 / scale,
            scale,
            zero_point,
        })
    }

    /// The output scale.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// The output zero point.
    pub fn zero_point(&self) -> i32 {
        self.zero_point
    }

    /// The int8 code of `y` (NaN maps to the zero point).
    #[inline(always)]
    pub fn code(&self, y: f32) -> i8 {
        let v = crate::act::round_even((y * self.inv).clamp(-512.0, 512.0));
        let v = if v.is_nan() { 0.0 } else { v };
        (v + self.zero_point as f32).clamp(-128.0, 127.0) as i8
    }
}
