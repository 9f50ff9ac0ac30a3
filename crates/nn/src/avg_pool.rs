use modelopt_tensor_core::{CoreError, Float};
use ndarray::{Array4, ArrayRef4};

use crate::max_pool::check_padding;
use crate::{Result, Window};

/// Average pooling over NCHW batches, as torch's `nn.AvgPool2d(kernel, stride, padding)`: the
/// padding counts as zeros in the divisor by default (`count_include_pad=True`), the stride
/// defaults to the kernel, and the padding is at most half the kernel.
///
/// ```
/// use modelopt_nn::AvgPool2d;
/// use ndarray::Array4;
/// let pool = AvgPool2d::new(2, 2, 0)?;
/// let x = Array4::from_shape_vec((1, 1, 2, 2), vec![1.0f32, 4.0, 3.0, 2.0]).unwrap();
/// assert_eq!(pool.forward(&x)?[[0, 0, 0, 0]], 2.5);
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvgPool2d {
    window: Window,
    count_include_pad: bool,
}

impl AvgPool2d {
    /// Square pooling window `kernel` (> 0), `stride` (> 0), `padding` (<= kernel / 2).
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Result<Self> {
        let window = Window::square(kernel, stride, padding, 1)?;
        check_padding(&window)?;
        Ok(AvgPool2d {
            window,
            count_include_pad: true,
        })
    }

    /// Whether padded positions count in the divisor (torch's default `true`); with `false` each
    /// window is divided by the number of real pixels under it.
    ///
    /// ```
    /// use modelopt_nn::AvgPool2d;
    /// use ndarray::Array4;
    /// let x = Array4::<f64>::ones((1, 1, 2, 2));
    /// let inc = AvgPool2d::new(2, 2, 1)?;
    /// let exc = inc.count_include_pad(false);
    /// assert_eq!((inc.forward(&x)?[[0, 0, 0, 0]], exc.forward(&x)?[[0, 0, 0, 0]]), (0.25, 1.0));
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn count_include_pad(mut self, include: bool) -> Self {
        self.count_include_pad = include;
        self
    }

    /// Whether padded positions count in the divisor (see [`AvgPool2d::count_include_pad`]).
    pub fn includes_pad(&self) -> bool {
        self.count_include_pad
    }

    /// The pooling window.
    pub fn window(&self) -> &Window {
        &self.window
    }

    /// Output `[channels, height, width]` for an input of `[channels, height, width]`.
    pub fn output_shape(&self, input: [usize; 3]) -> Result<[usize; 3]> {
        let (h, w) = self.window.output_size(input[1], input[2])?;
        Ok([input[0], h, w])
    }

    /// Visit every (output position, input pixel, weight) of one plane.
    fn for_each_tap(
        &self,
        h: usize,
        w: usize,
        oh: usize,
        ow: usize,
        mut f: impl FnMut(usize, usize, f64),
    ) {
        let [kh, kw] = self.window.kernel;
        for r in 0..oh {
            for q in 0..ow {
                let rows: Vec<usize> = (0..kh)
                    .filter_map(|i| self.window.source(0, r, i, h))
                    .collect();
                let cols: Vec<usize> = (0..kw)
                    .filter_map(|j| self.window.source(1, q, j, w))
                    .collect();
                let divisor = if self.count_include_pad {
                    kh * kw
                } else {
                    rows.len() * cols.len()
                };
                let weight = 1.0 / divisor.max(1) as f64;
                for &ih in &rows {
                    for &iw in &cols {
                        f(r * ow + q, ih * w + iw, weight);
                    }
                }
            }
        }
    }

    /// Pooled batch.
    pub fn forward<A: Float>(&self, x: &ArrayRef4<A>) -> Result<Array4<A>> {
        let (n, ch, h, w) = x.dim();
        let [_, oh, ow] = self.output_shape([ch, h, w])?;
        let mut y = Array4::<A>::zeros((n, ch, oh, ow));
        let x = x.as_standard_layout();
        let src = x
            .as_slice()
            .ok_or_else(|| CoreError::invalid("avg pool input", "not contiguous"))?;
        let dst = y
            .as_slice_mut()
            .ok_or_else(|| CoreError::invalid("avg pool output", "not contiguous"))?;
        let mut taps = Vec::new();
        self.for_each_tap(h, w, oh, ow, |o, i, wt| taps.push((o, i, wt)));
        for (plane, out) in src.chunks_exact(h * w).zip(dst.chunks_exact_mut(oh * ow)) {
            let mut acc = vec![0.0f64; oh * ow];
            for &(o, i, wt) in &taps {
                acc[o] += plane[i].to_f64_lossless() * wt;
            }
            for (d, a) in out.iter_mut().zip(acc) {
                *d = crate::float_const(a);
            }
        }
        Ok(y)
    }

    /// Gradient w.r.t. the input `[batch, channels, height, width]` (`input_dim`) from `dy`.
    ///
    /// ```
    /// use modelopt_nn::AvgPool2d;
    /// use ndarray::Array4;
    /// let dx = AvgPool2d::new(2, 2, 0)?.backward((1, 1, 2, 2), &Array4::<f64>::ones((1, 1, 1, 1)))?;
    /// assert!(dx.iter().all(|&v| v == 0.25));
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn backward<A: Float>(
        &self,
        input_dim: (usize, usize, usize, usize),
        dy: &ArrayRef4<A>,
    ) -> Result<Array4<A>> {
        let (n, ch, h, w) = input_dim;
        let [_, oh, ow] = self.output_shape([ch, h, w])?;
        if dy.dim() != (n, ch, oh, ow) {
            return Err(CoreError::ShapeMismatch {
                expected: vec![n, ch, oh, ow],
                found: dy.shape().to_vec(),
            }
            .into());
        }
        let mut dx = Array4::<A>::zeros(input_dim);
        let dy = dy.as_standard_layout();
        let src = dy
            .as_slice()
            .ok_or_else(|| CoreError::invalid("avg pool gradient", "not contiguous"))?;
        let dst = dx
            .as_slice_mut()
            .ok_or_else(|| CoreError::invalid("avg pool gradient", "not contiguous"))?;
        let mut taps = Vec::new();
        self.for_each_tap(h, w, oh, ow, |o, i, wt| taps.push((o, i, wt)));
        for (g, out) in src.chunks_exact(oh * ow).zip(dst.chunks_exact_mut(h * w)) {
            for &(o, i, wt) in &taps {
                out[i] = out[i] + g[o] * crate::float_const(wt);
            }
        }
        Ok(dx)
    }
}

/// Global average pooling, as torch's `nn.AdaptiveAvgPool2d(1)`: `[N, C, H, W] -> [N, C, 1, 1]`.
///
/// ```
/// use modelopt_nn::global_avg_pool;
/// use ndarray::Array4;
/// let y = global_avg_pool(&Array4::from_shape_fn((1, 2, 2, 2), |(_, c, i, j)| (c * 4 + i * 2 + j) as f32))?;
/// assert_eq!((y[[0, 0, 0, 0]], y[[0, 1, 0, 0]]), (1.5, 5.5));
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
pub fn global_avg_pool<A: Float>(x: &ArrayRef4<A>) -> Result<Array4<A>> {
    let (n, ch, h, w) = x.dim();
    if h * w == 0 {
        return Err(CoreError::Empty {
            what: "global average pool input plane",
        }
        .into());
    }
    let mut y = Array4::zeros((n, ch, 1, 1));
    for ((i, c), v) in (0..n)
        .flat_map(|i| (0..ch).map(move |c| (i, c)))
        .zip(y.iter_mut())
    {
        let plane = x.slice(ndarray::s![i, c, .., ..]);
        let s: f64 = plane.iter().map(|v| v.to_f64_lossless()).sum();
        *v = crate::float_const(s / (h * w) as f64);
    }
    Ok(y)
}

/// Backward of [`global_avg_pool`]: every pixel of `[N, C, H, W]` (`input_dim`) gets `dy / (H W)`.
///
/// ```
/// use modelopt_nn::global_avg_pool_backward;
/// use ndarray::Array4;
/// let dx = global_avg_pool_backward((1, 1, 2, 2), &Array4::<f64>::ones((1, 1, 1, 1)))?;
/// assert!(dx.iter().all(|&v| v == 0.25));
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
pub fn global_avg_pool_backward<A: Float>(
    input_dim: (usize, usize, usize, usize),
    dy: &ArrayRef4<A>,
) -> Result<Array4<A>> {
    let (n, ch, h, w) = input_dim;
    if dy.dim() != (n, ch, 1, 1) {
        return Err(CoreError::ShapeMismatch {
            expected: vec![n, ch, 1, 1],
            found: dy.shape().to_vec(),
        }
        .into());
    }
    let scale: A = crate::float_const(1.0 / (h * w).max(1) as f64);
    let mut dx = Array4::zeros(input_dim);
    for ((i, c), &g) in (0..n)
        .flat_map(|i| (0..ch).map(move |c| (i, c)))
        .zip(dy.iter())
    {
        dx.slice_mut(ndarray::s![i, c, .., ..]).fill(g * scale);
    }
    Ok(dx)
}
