//! The `Quantizer` trait: one verb, turning a float tensor into a quantized result.

use ndarray::{ArrayRef, Dimension};

use crate::Result;

/// Anything that quantizes an `f32` tensor of dimension `D` into some result type.
///
/// The trait is object-safe for a fixed `D` and `Output`, so quantizers can be boxed and chosen at
/// run time (`Box<dyn Quantizer<Ix2, Output = UniformQuantized<Ix2>>>`).
///
/// ```
/// use modelopt_quantize::{LinearQuantizer, QuantScheme, Quantizer, UniformQuantized};
/// use ndarray::{array, Ix2};
///
/// let w = array![[0.5f32, -1.0], [0.25, 2.0]];
/// let q = LinearQuantizer::new(10.0).quantize(&w)?;
/// assert_eq!(q.codes(), array![[5, -10], [2, 20]]); // 2.5 rounds half to even
///
/// let boxed: Vec<Box<dyn Quantizer<Ix2, Output = UniformQuantized<Ix2>>>> =
///     vec![Box::new(QuantScheme::int8()), Box::new(QuantScheme::int4().per_group(1, 2))];
/// for qz in &boxed {
///     assert_eq!(qz.quantize(&w)?.shape(), &[2, 2]);
/// }
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
pub trait Quantizer<D: Dimension> {
    /// The quantized result.
    type Output;

    /// Quantizes `x` (owned array, view or shared array).
    fn quantize(&self, x: &ArrayRef<f32, D>) -> Result<Self::Output>;
}
