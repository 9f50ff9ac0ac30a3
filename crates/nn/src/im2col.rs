//! The geometry of a 2-D sliding window and the `im2col` / `col2im` rearrangements that turn a
//! convolution into one matrix product per image (and, in reverse, scatter the gradient of that
//! product's right-hand side back onto the image).
//!
//! Public so integer kernels (a quantized convolution) can reuse the same unfolding.

use modelopt_tensor_core::{CoreError, Float};
use ndarray::{ArrayRef2, ArrayRef3};

use crate::Result;

/// Kernel size, stride, padding and dilation of a 2-D window (rows, columns), and the output size it
/// gives on an input of a given height and width, with torch's formula
/// `out = floor((in + 2 pad - dilation (kernel - 1) - 1) / stride) + 1`.
///
/// ```
/// use modelopt_nn::Window;
/// let w = Window::square(3, 2, 1, 1)?;
/// assert_eq!(w.output_size(9, 7)?, (5, 4));
/// assert!(Window::square(0, 1, 0, 1).is_err());
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Step between windows.
    pub stride: [usize; 2],
    /// Zeros (or `-inf` for max pooling) added on each side.
    pub padding: [usize; 2],
    /// Spacing between kernel taps.
    pub dilation: [usize; 2],
}

impl Window {
    /// A window with the given sizes per dimension; kernel, stride and dilation must be > 0.
    ///
    /// ```
    /// use modelopt_nn::Window;
    /// let w = Window::new([3, 1], [1, 1], [1, 0], [1, 1])?;
    /// assert_eq!(w.output_size(5, 5)?, (5, 5));
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn new(
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
    ) -> Result<Self> {
        for (name, v) in [
            ("kernel", kernel),
            ("stride", stride),
            ("dilation", dilation),
        ] {
            if v.contains(&0) {
                return Err(CoreError::invalid(name, format!("must be > 0, got {v:?}")).into());
            }
        }
        Ok(Window {
            kernel,
            stride,
            padding,
            dilation,
        })
    }

    /// A square window (same size in both dimensions).
    ///
    /// ```
    /// use modelopt_nn::Window;
    /// assert_eq!(Window::square(2, 2, 0, 1)?.kernel, [2, 2]);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn square(kernel: usize, stride: usize, padding: usize, dilation: usize) -> Result<Self> {
        Self::new([kernel; 2], [stride; 2], [padding; 2], [dilation; 2])
    }

    /// Output height and width for an input of `height x width`; an error when the dilated kernel
    /// is larger than the padded input.
    ///
    /// ```
    /// use modelopt_nn::Window;
    /// assert!(Window::square(5, 1, 0, 1)?.output_size(4, 4).is_err());
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn output_size(&self, height: usize, width: usize) -> Result<(usize, usize)> {
        let out = |i: usize, size: usize| -> Result<usize> {
            let span = self.dilation[i] * (self.kernel[i] - 1) + 1;
            let padded = size + 2 * self.padding[i];
            if span > padded {
                return Err(CoreError::invalid(
                    "kernel",
                    format!(
                        "the (dilated) kernel spans {span} but the padded input is only {padded} wide in dimension {i}"
                    ),
                )
                .into());
            }
            Ok((padded - span) / self.stride[i] + 1)
        };
        Ok((out(0, height)?, out(1, width)?))
    }

    /// Input row/column index of output position `o` and kernel tap `k` in dimension `dim`, or
    /// `None` when it falls into the padding.
    #[inline]
    pub(crate) fn source(&self, dim: usize, o: usize, k: usize, size: usize) -> Option<usize> {
        let i = (o * self.stride[dim] + k * self.dilation[dim]).checked_sub(self.padding[dim])?;
        (i < size).then_some(i)
    }

    /// The output positions `q` in `0..outputs` whose tap `k` lands inside the input (not in the
    /// padding) in dimension `dim`, and the input index of the first of them: the positions are
    /// contiguous, so the hot loops run without a bounds test per element.
    #[inline]
    pub(crate) fn valid_range(
        &self,
        dim: usize,
        k: usize,
        size: usize,
        outputs: usize,
    ) -> (std::ops::Range<usize>, usize) {
        let (s, offset, pad) = (self.stride[dim], k * self.dilation[dim], self.padding[dim]);
        // i = q s + offset - pad must satisfy 0 <= i < size.
        let first = pad.saturating_sub(offset).div_ceil(s);
        let last = match (size + pad).checked_sub(offset + 1) {
            Some(max_qs) => (max_qs / s + 1).min(outputs),
            None => 0,
        };
        let first = first.min(last);
        (first..last, (first * s + offset).saturating_sub(pad))
    }
}

/// Unfold one image `x` `[channels, height, width]` into `cols` `[channels * kh * kw, oh * ow]`:
/// row `(c, i, j)` holds, for every output position, the input pixel under kernel tap `(i, j)` of
/// channel `c` (zero in the padding). Then a convolution is `W [out, channels*kh*kw] x cols`.
///
/// ```
/// use modelopt_nn::{im2col, Window};
/// use ndarray::{Array2, Array3};
/// let x = Array3::from_shape_fn((1, 3, 3), |(_, i, j)| (3 * i + j) as f32);
/// let mut cols = Array2::zeros((4, 4));
/// im2col(&x, &Window::square(2, 1, 0, 1)?, &mut cols)?;
/// assert_eq!(cols.row(0).to_vec(), [0.0, 1.0, 3.0, 4.0]); // top-left tap
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
pub fn im2col<A: Float>(x: &ArrayRef3<A>, window: &Window, cols: &mut ArrayRef2<A>) -> Result<()> {
    let (channels, height, width) = x.dim();
    let (oh, ow) = window.output_size(height, width)?;
    let [kh, kw] = window.kernel;
    let expected = (channels * kh * kw, oh * ow);
    if cols.dim() != expected {
        return Err(CoreError::ShapeMismatch {
            expected: vec![expected.0, expected.1],
            found: cols.shape().to_vec(),
        }
        .into());
    }
    let mut row = 0;
    for c in 0..channels {
        let plane = x.index_axis(ndarray::Axis(0), c);
        for i in 0..kh {
            for j in 0..kw {
                let mut out = cols.row_mut(row);
                let out = out
                    .as_slice_mut()
                    .expect("rows of a standard-layout cols matrix are contiguous");
                let (qs, iw0) = window.valid_range(1, j, width, ow);
                let sw = window.stride[1];
                for (r, out_row) in out.chunks_exact_mut(ow).enumerate() {
                    match window.source(0, r, i, height) {
                        None => out_row.fill(A::zero()),
                        Some(ih) => {
                            let src = plane.row(ih);
                            out_row[..qs.start].fill(A::zero());
                            out_row[qs.end..].fill(A::zero());
                            let dst = &mut out_row[qs.clone()];
                            match src.as_slice() {
                                Some(src) if sw == 1 => {
                                    dst.copy_from_slice(&src[iw0..iw0 + dst.len()]);
                                }
                                Some(src) => {
                                    for (t, v) in dst.iter_mut().enumerate() {
                                        *v = src[iw0 + t * sw];
                                    }
                                }
                                None => {
                                    for (t, v) in dst.iter_mut().enumerate() {
                                        *v = src[iw0 + t * sw];
                                    }
                                }
                            }
                        }
                    }
                }
                row += 1;
            }
        }
    }
    Ok(())
}

/// The adjoint of [`im2col`]: add every entry of `cols` `[channels * kh * kw, oh * ow]` onto the
/// input pixel it was read from in `dx` `[channels, height, width]` (entries from the padding are
/// dropped). This turns the gradient of the unfolded matrix into the gradient of the image.
///
/// ```
/// use modelopt_nn::{col2im, Window};
/// use ndarray::{Array2, Array3};
/// let cols = Array2::<f64>::ones((4, 4));
/// let mut dx = Array3::zeros((1, 3, 3));
/// col2im(&cols, &Window::square(2, 1, 0, 1)?, &mut dx)?;
/// assert_eq!(dx[[0, 1, 1]], 4.0); // the centre is under all four taps
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
pub fn col2im<A: Float>(cols: &ArrayRef2<A>, window: &Window, dx: &mut ArrayRef3<A>) -> Result<()> {
    let (channels, height, width) = dx.dim();
    let (oh, ow) = window.output_size(height, width)?;
    let [kh, kw] = window.kernel;
    let expected = (channels * kh * kw, oh * ow);
    if cols.dim() != expected {
        return Err(CoreError::ShapeMismatch {
            expected: vec![expected.0, expected.1],
            found: cols.shape().to_vec(),
        }
        .into());
    }
    let mut row = 0;
    for c in 0..channels {
        let mut plane = dx.index_axis_mut(ndarray::Axis(0), c);
        for i in 0..kh {
            for j in 0..kw {
                let src = cols.row(row);
                let (qs, iw0) = window.valid_range(1, j, width, ow);
                let sw = window.stride[1];
                for r in 0..oh {
                    let Some(ih) = window.source(0, r, i, height) else {
                        continue;
                    };
                    let mut dst = plane.row_mut(ih);
                    let from = r * ow;
                    match (dst.as_slice_mut(), src.as_slice()) {
                        (Some(d), Some(sv)) => {
                            let sv = &sv[from + qs.start..from + qs.end];
                            if sw == 1 {
                                for (o, &v) in d[iw0..iw0 + sv.len()].iter_mut().zip(sv) {
                                    *o = *o + v;
                                }
                            } else {
                                for (t, &v) in sv.iter().enumerate() {
                                    d[iw0 + t * sw] = d[iw0 + t * sw] + v;
                                }
                            }
                        }
                        _ => {
                            for (t, q) in qs.clone().enumerate() {
                                let iw = iw0 + t * sw;
                                dst[iw] = dst[iw] + src[from + q];
                            }
                        }
                    }
                }
                row += 1;
            }
        }
    }
    Ok(())
}
