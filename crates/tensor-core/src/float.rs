use std::fmt::{Debug, Display};

use ndarray::ScalarOperand;
use num_traits::{FromPrimitive, ToPrimitive};

/// The floating-point element bound modelopt's generic code is written against: `f32` and `f64`.
///
/// It bundles what array code needs (arithmetic, conversions, `ScalarOperand` for `array * x`)
/// so signatures say `A: Float` rather than a list of bounds.
///
/// ```
/// use modelopt_tensor_core::Float;
/// fn half<A: Float>(x: A) -> A { x / A::from_f64(2.0).unwrap() }
/// assert_eq!(half(3.0f32), 1.5);
/// ```
pub trait Float:
    num_traits::Float
    + FromPrimitive
    + ToPrimitive
    + ScalarOperand
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + 'static
{
    /// Widen to f64 (exact for both implementors).
    fn to_f64_lossless(self) -> f64;
    /// Narrow an f32 to this type (exact for both implementors).
    fn from_f32_lossless(x: f32) -> Self;
}

impl Float for f32 {
    #[inline]
    fn to_f64_lossless(self) -> f64 {
        f64::from(self)
    }
    #[inline]
    fn from_f32_lossless(x: f32) -> Self {
        x
    }
}

impl Float for f64 {
    #[inline]
    fn to_f64_lossless(self) -> f64 {
        self
    }
    #[inline]
    fn from_f32_lossless(x: f32) -> Self {
        f64::from(x)
    }
}
