use modelopt_tensor_core::{CoreError, Float};
use ndarray::{Array4, ArrayRef4};

use crate::{Result, Window};

/// Max pooling over NCHW batches, as torch's `nn.MaxPool2d(kernel, stride, padding)`: the padding
/// is `-inf` (never selected), at most half the kernel, and the stride defaults to the kernel.
/// The gradient flows to the first maximum of each window in row-major order (torch's choice on
/// ties).
///
/// ```
/// use modelopt_nn::MaxPool2d;
/// use ndarray::Array4;
/// let pool = MaxPool2d::new(2, 2, 0)?;
/// let x = Array4::from_shape_vec((1, 1, 2, 2), vec![1.0f32, 4.0, 3.0, 2.0]).unwrap();
/// assert_eq!(pool.forward(&x)?[[0, 0, 0, 0]], 4.0);
/// assert!(MaxPool2d::new(2, 2, 2).is_err()); // padding larger than half the kernel
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2d {
    window: Window,
}

/// Where each output of a max pooling came from: the flat index `h * width + w` of the maximum in
/// its input plane, one per output element (what the backward pass needs).
pub type PoolIndices = Array4<u32>;

impl MaxPool2d {
    /// Square pooling window `kernel` (> 0), `stride` (> 0), `padding` (<= kernel / 2).
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Result<Self> {
        let window = Window::square(kernel, stride, padding, 1)?;
        check_padding(&window)?;
        Ok(MaxPool2d { window })
    }

    /// The pooling window.
    pub fn window(&self) -> &Window {
        &self.window
    }

    /// Output `[channels, height, width]` for an input of `[channels, height, width]`.
    ///
    /// ```
    /// use modelopt_nn::MaxPool2d;
    /// assert_eq!(MaxPool2d::new(2, 2, 0)?.output_shape([8, 13, 13])?, [8, 6, 6]);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn output_shape(&self, input: [usize; 3]) -> Result<[usize; 3]> {
        let (h, w) = self.window.output_size(input[1], input[2])?;
        Ok([input[0], h, w])
    }

    /// Pooled batch.
    pub fn forward<A: Float>(&self, x: &ArrayRef4<A>) -> Result<Array4<A>> {
        Ok(self.forward_with_indices(x)?.0)
    }

    /// Pooled batch and, for the backward pass, where each maximum was.
    pub fn forward_with_indices<A: Float>(
        &self,
        x: &ArrayRef4<A>,
    ) -> Result<(Array4<A>, PoolIndices)> {
        let (n, ch, h, w) = x.dim();
        let [_, oh, ow] = self.output_shape([ch, h, w])?;
        if h * w > u32::MAX as usize {
            return Err(CoreError::invalid("max pool input", "plane too large").into());
        }
        let mut y = Array4::zeros((n, ch, oh, ow));
        let mut idx = Array4::zeros((n, ch, oh, ow));
        let [kh, kw] = self.window.kernel;
        for ((xi, mut yi), mut ii) in x
            .outer_iter()
            .zip(y.outer_iter_mut())
            .zip(idx.outer_iter_mut())
        {
            for ((plane, mut yp), mut ip) in xi
                .outer_iter()
                .zip(yi.outer_iter_mut())
                .zip(ii.outer_iter_mut())
            {
                for r in 0..oh {
                    for q in 0..ow {
                        let (mut best, mut at) = (A::neg_infinity(), usize::MAX);
                        for i in 0..kh {
                            let Some(ih) = self.window.source(0, r, i, h) else {
                                continue;
                            };
                            for j in 0..kw {
                                let Some(iw) = self.window.source(1, q, j, w) else {
                                    continue;
                                };
                                let v = plane[[ih, iw]];
                                // `>` keeps the first maximum; NaN wins, as in torch.
                                if v > best || v.is_nan() || at == usize::MAX {
                                    best = v;
                                    at = ih * w + iw;
                                    if v.is_nan() {
                                        break;
                                    }
                                }
                            }
                        }
                        yp[[r, q]] = best;
                        ip[[r, q]] = at as u32;
                    }
                }
            }
        }
        Ok((y, idx))
    }

    /// Gradient w.r.t. the input `[batch, channels, height, width]` (`input_dim`) from the indices
    /// of the forward pass and `dy`.
    ///
    /// ```
    /// use modelopt_nn::MaxPool2d;
    /// use ndarray::Array4;
    /// let pool = MaxPool2d::new(2, 2, 0)?;
    /// let x = Array4::from_shape_vec((1, 1, 2, 2), vec![1.0f64, 4.0, 3.0, 2.0]).unwrap();
    /// let (_, idx) = pool.forward_with_indices(&x)?;
    /// let dx = pool.backward((1, 1, 2, 2), &idx, &Array4::<f64>::ones((1, 1, 1, 1)))?;
    /// assert_eq!(dx.iter().copied().collect::<Vec<_>>(), [0.0, 1.0, 0.0, 0.0]);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn backward<A: Float>(
        &self,
        input_dim: (usize, usize, usize, usize),
        indices: &PoolIndices,
        dy: &ArrayRef4<A>,
    ) -> Result<Array4<A>> {
        let (n, ch, h, w) = input_dim;
        let [_, oh, ow] = self.output_shape([ch, h, w])?;
        if dy.dim() != (n, ch, oh, ow) || indices.dim() != dy.dim() {
            return Err(CoreError::ShapeMismatch {
                expected: vec![n, ch, oh, ow],
                found: dy.shape().to_vec(),
            }
            .into());
        }
        let mut dx = Array4::zeros(input_dim);
        for ((mut dxi, di), ii) in dx
            .outer_iter_mut()
            .zip(dy.outer_iter())
            .zip(indices.outer_iter())
        {
            for ((mut dxp, dp), ip) in dxi
                .outer_iter_mut()
                .zip(di.outer_iter())
                .zip(ii.outer_iter())
            {
                let flat = dxp
                    .as_slice_mut()
                    .ok_or_else(|| CoreError::invalid("max pool gradient", "not contiguous"))?;
                for (&g, &at) in dp.iter().zip(ip.iter()) {
                    if let Some(slot) = flat.get_mut(at as usize) {
                        *slot = *slot + g;
                    }
                }
            }
        }
        Ok(dx)
    }
}

pub(crate) fn check_padding(window: &Window) -> Result<()> {
    for d in 0..2 {
        if window.padding[d] * 2 > window.kernel[d] {
            return Err(CoreError::invalid(
                "padding",
                format!(
                    "pooling padding {:?} must be at most half the kernel {:?}",
                    window.padding, window.kernel
                ),
            )
            .into());
        }
    }
    Ok(())
}
