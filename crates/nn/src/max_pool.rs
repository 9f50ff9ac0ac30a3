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
        let x = x.as_standard_layout();
        let src = x
            .as_slice()
            .ok_or_else(|| CoreError::invalid("max pool input", "not contiguous"))?;
        let (ys, is) = (
            y.as_slice_mut()
                .ok_or_else(|| CoreError::invalid("max pool output", "not contiguous"))?,
            idx.as_slice_mut()
                .ok_or_else(|| CoreError::invalid("max pool indices", "not contiguous"))?,
        );
        // Row by row of the output: for each kernel tap, sweep the output columns it reaches (a
        // contiguous range, so no padding test per element) and keep the running maximum. Which tap
        // wins is data, so it is a select, not a branch.
        let [kh, kw] = self.window.kernel;
        let sw = self.window.stride[1];
        let col_taps: Vec<_> = (0..kw)
            .map(|j| self.window.valid_range(1, j, w, ow))
            .collect();
        let unset = u32::MAX;
        if self.window.kernel == [2, 2]
            && self.window.stride == [2, 2]
            && self.window.padding == [0, 0]
        {
            pool_2x2(src, ys, is, h, w, oh, ow);
            return Ok((y, idx));
        }
        for ((plane, yp), ip) in src
            .chunks_exact(h * w)
            .zip(ys.chunks_exact_mut(oh * ow))
            .zip(is.chunks_exact_mut(oh * ow))
        {
            for r in 0..oh {
                let (yr, ir) = (&mut yp[r * ow..(r + 1) * ow], &mut ip[r * ow..(r + 1) * ow]);
                yr.fill(A::neg_infinity());
                ir.fill(unset);
                for i in 0..kh {
                    let Some(ih) = self.window.source(0, r, i, h) else {
                        continue;
                    };
                    let row = &plane[ih * w..(ih + 1) * w];
                    for (qs, iw0) in &col_taps {
                        let (yq, iq) = (&mut yr[qs.clone()], &mut ir[qs.clone()]);
                        for (t, (best, at)) in yq.iter_mut().zip(iq.iter_mut()).enumerate() {
                            let iw = iw0 + t * sw;
                            let v = row[iw];
                            // `>` keeps the first maximum; a NaN wins, as in torch.
                            let take = (v > *best) | v.is_nan() | (*at == unset);
                            *best = if take { v } else { *best };
                            *at = if take { (ih * w + iw) as u32 } else { *at };
                        }
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

/// The common 2x2, stride 2, unpadded window with the four taps in registers (the general sweep
/// costs 3x more on the distillation example's teacher). Same tie and NaN rules.
fn pool_2x2<A: Float>(
    src: &[A],
    ys: &mut [A],
    is: &mut [u32],
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
) {
    for ((plane, yp), ip) in src
        .chunks_exact(h * w)
        .zip(ys.chunks_exact_mut(oh * ow))
        .zip(is.chunks_exact_mut(oh * ow))
    {
        for r in 0..oh {
            let (top, bottom) = (
                &plane[2 * r * w..][..2 * ow],
                &plane[(2 * r + 1) * w..][..2 * ow],
            );
            let (yr, ir) = (&mut yp[r * ow..][..ow], &mut ip[r * ow..][..ow]);
            for (q, (y, i)) in yr.iter_mut().zip(ir.iter_mut()).enumerate() {
                let (mut best, mut at) = (top[2 * q], 2 * q);
                for (v, o) in [
                    (top[2 * q + 1], 2 * q + 1),
                    (bottom[2 * q], w + 2 * q),
                    (bottom[2 * q + 1], w + 2 * q + 1),
                ] {
                    let take = (v > best) | (v.is_nan() & !best.is_nan());
                    best = if take { v } else { best };
                    at = if take { o } else { at };
                }
                *y = best;
                *i = (2 * r * w + at) as u32;
            }
        }
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
