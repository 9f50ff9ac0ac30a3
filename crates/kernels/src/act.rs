//! Activations quantized to u8 codes with a scale and zero point: per token (dynamic, computed
//! at run time from each row's range) or per tensor (static, from calibration).

use modelopt_quantize::{CheckedScheme, QuantScheme};
use modelopt_tensor_core::CoreError;

use crate::Result;
use crate::error::{invalid, shape};

/// How a W8A8 product quantizes its activations (codes are u8 with a zero point, so both
/// torch's `quint8` affine codes and symmetric int8 codes shifted by 128 fit).
///
/// ```
/// use modelopt_kernels::ActScale;
/// assert!(ActScale::per_tensor(0.1, 128).is_ok());
/// assert!(ActScale::per_tensor(0.0, 0).is_err());
/// assert!(ActScale::per_tensor(f32::NAN, 0).is_err());
/// assert!(ActScale::per_tensor(0.1, 300).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ActScale {
    /// Dynamic: each row (token) gets its own affine scale and zero point from its range, widened
    /// to include 0 (torch.ao's `_calculate_qparams` for `quint8`, over 8 full bits).
    PerToken,
    /// Static: one scale and zero point for every row (built with [`ActScale::per_tensor`]).
    PerTensor {
        /// Real value of one code step (finite, > 0).
        scale: f32,
        /// The u8 code of 0.0, in `0..=255`.
        zero_point: i32,
    },
}

impl ActScale {
    /// A static per-tensor scale; an error unless `scale` is finite and positive and
    /// `zero_point` in `0..=255`.
    pub fn per_tensor(scale: f32, zero_point: i32) -> Result<Self> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(invalid(
                "activation scale",
                format!("must be finite and > 0, got {scale}"),
            ));
        }
        if !(0..=255).contains(&zero_point) {
            return Err(invalid(
                "activation zero point",
                format!("must be a u8 code in 0..=255, got {zero_point}"),
            ));
        }
        Ok(ActScale::PerTensor { scale, zero_point })
    }
}

/// Rows of activations as u8 codes, zero padded to `stride`, with one scale and zero point per
/// row: `x ≈ scale * (code - zero_point)`.
///
/// ```
/// use modelopt_kernels::{ActScale, QuantizedActivations};
/// let q = QuantizedActivations::quantize(&[0.0, 254.0, 51.0, -1.0], 1, 4, ActScale::PerToken)?;
/// assert_eq!((q.scales(), q.zero_points()), (&[1.0f32][..], &[1][..])); // range [-1, 254]
/// assert_eq!(q.row(0), &[1, 255, 52, 0]);
/// # Ok::<(), modelopt_kernels::KernelError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedActivations {
    pub(crate) m: usize,
    pub(crate) k: usize,
    pub(crate) stride: usize,
    pub(crate) codes: Vec<u8>,
    pub(crate) scales: Vec<f32>,
    pub(crate) zero_points: Vec<i32>,
}

fn u8_affine() -> CheckedScheme {
    QuantScheme::int8()
        .affine()
        .signed(false)
        .check()
        .expect("the u8 affine scheme is valid")
}

/// Round half to even by the `1.5 * 2^23` trick: exact for `|v| <= 2^22`, vectorizes (unlike
/// a libm call on the baseline target).
#[inline(always)]
pub(crate) fn round_even(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

/// `clamp(round(x * inv) + zp, 0, 255)`, torch's `quantize_val` order (round, then add the zero
/// point). The product is clamped to ±512 before rounding: outside that every code saturates
/// anyway, and inside it the rounding trick is exact.
#[inline(always)]
#[allow(clippy::manual_clamp)] // f32::clamp's NaN handling keeps this loop from vectorizing
fn code(x: f32, inv: f32, zp: f32) -> u8 {
    // max/min rather than clamp: the inputs are finite, and this form vectorizes.
    let v = (round_even((x * inv).max(-512.0).min(512.0)) + zp)
        .max(0.0)
        .min(255.0);
    // v is an integer in [0, 255]: in v + 2^23 its low mantissa byte is v (no float -> int
    // conversion with its NaN/overflow checks, so the loop vectorizes).
    ((v + 8_388_608.0).to_bits() & 0xff) as u8
}

/// Index of the first non-finite value (a branch-free pass per 64 values, then a search).
fn first_non_finite(x: &[f32]) -> Option<usize> {
    let bad = |c: &[f32]| {
        c.iter().fold(0u32, |a, v| {
            a | ((v.to_bits() & 0x7f80_0000 == 0x7f80_0000) as u32)
        })
    };
    x.chunks(64).position(|c| bad(c) != 0).and_then(|c| {
        x[c * 64..]
            .iter()
            .position(|v| !v.is_finite())
            .map(|i| c * 64 + i)
    })
}

/// `(min(row, 0), max(row, 0))` with 16 independent lanes (a plain fold does not vectorize).
fn range_with_zero(row: &[f32]) -> (f32, f32) {
    let (mut lo, mut hi) = ([0f32; 16], [0f32; 16]);
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for j in 0..16 {
            lo[j] = if c[j] < lo[j] { c[j] } else { lo[j] };
            hi[j] = if c[j] > hi[j] { c[j] } else { hi[j] };
        }
    }
    let fold = |a: [f32; 16], f: fn(f32, f32) -> f32| a.into_iter().fold(0f32, f);
    let rest = chunks.remainder();
    (
        rest.iter().copied().fold(fold(lo, f32::min), f32::min),
        rest.iter().copied().fold(fold(hi, f32::max), f32::max),
    )
}

impl QuantizedActivations {
    /// Quantizes `x` (`[m, k]`, row-major, finite) as `how` says.
    pub fn quantize(x: &[f32], m: usize, k: usize, how: ActScale) -> Result<Self> {
        Self::quantize_padded(x, m, k, k.div_ceil(4) * 4, how)
    }

    pub(crate) fn quantize_padded(
        x: &[f32],
        m: usize,
        k: usize,
        stride: usize,
        how: ActScale,
    ) -> Result<Self> {
        if m == 0 || k == 0 {
            return Err(CoreError::Empty {
                what: "activations",
            }
            .into());
        }
        if m.checked_mul(k) != Some(x.len()) {
            return Err(shape(vec![m, k], vec![x.len()]));
        }
        if let Some(i) = first_non_finite(x) {
            return Err(CoreError::NonFinite {
                value: x[i] as f64,
                index: i,
                position: vec![i / k, i % k],
            }
            .into());
        }
        let mut codes = vec![0u8; m * stride];
        let mut scales = Vec::with_capacity(m);
        let mut zero_points = Vec::with_capacity(m);
        let scheme = u8_affine();
        for (row, dst) in x.chunks_exact(k).zip(codes.chunks_exact_mut(stride)) {
            let (scale, zp) = match how {
                ActScale::PerTensor { scale, zero_point } => (scale, zero_point),
                ActScale::PerToken => {
                    let (lo, hi) = range_with_zero(row);
                    scheme.params_for_range(lo, hi)
                }
            };
            let (inv, zpf) = (1.0 / scale, zp as f32);
            for (d, &v) in dst.iter_mut().zip(row) {
                *d = code(v, inv, zpf);
            }
            scales.push(scale);
            zero_points.push(zp);
        }
        Ok(QuantizedActivations {
            m,
            k,
            stride,
            codes,
            scales,
            zero_points,
        })
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.m
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.k
    }

    /// The u8 codes of row `i` (`k` values).
    pub fn row(&self, i: usize) -> &[u8] {
        &self.codes[i * self.stride..i * self.stride + self.k]
    }

    /// One scale per row.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// One zero point per row.
    pub fn zero_points(&self) -> &[i32] {
        &self.zero_points
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_torch_rounding_and_clamping() {
        let how = ActScale::per_tensor(0.5, 10).unwrap();
        let q = QuantizedActivations::quantize(&[0.25, 0.75, -5.0, -6.0, 1e30, -1e30], 1, 6, how)
            .unwrap();
        // 0.5 -> 0 (even), 1.5 -> 2, -10 + 10, -12 + 10 -> clamp 0, saturated both ways.
        assert_eq!(q.row(0), &[10, 12, 0, 0, 255, 0]);
    }

    #[test]
    fn per_token_ranges_include_zero_and_zero_rows_are_exact() {
        let q = QuantizedActivations::quantize(&[1.0, 2.0, 0.0, 0.0], 2, 2, ActScale::PerToken)
            .unwrap();
        assert_eq!(q.zero_points(), &[0, 0]);
        assert_eq!(q.row(0), &[127, 255]); // 1 * (1 / (2/255)) = 127.4999 in f32, as torch gives
        assert_eq!(q.row(1), &[0, 0]);
        assert!(q.scales()[1] > 0.0);
    }

    #[test]
    fn non_finite_and_bad_shapes_are_errors() {
        let e = QuantizedActivations::quantize(&[1.0, f32::NAN], 1, 2, ActScale::PerToken);
        assert!(e.unwrap_err().to_string().contains("index 1"));
        assert!(QuantizedActivations::quantize(&[1.0; 3], 2, 2, ActScale::PerToken).is_err());
        assert!(QuantizedActivations::quantize(&[], 0, 2, ActScale::PerToken).is_err());
    }
}
