use modelopt_tensor_core::{CoreError, Float};
use ndarray::{Array1, Array4, ArrayRef4, Zip};

use crate::Result;
use crate::float_const as c;

/// Batch normalisation over the channels of NCHW batches (Ioffe & Szegedy 2015), as torch's
/// `nn.BatchNorm2d`: `y = gamma (x - mean) / sqrt(var + eps) + beta` per channel.
///
/// In training, mean and (biased) variance come from the batch over `(N, H, W)`, and the running
/// statistics move towards them: `running = (1 - momentum) running + momentum batch`, with the
/// *unbiased* batch variance for `running_var` (torch's convention). In eval mode the running
/// statistics normalise. Parameters `weight` (gamma) and `bias` (beta) train; `running_mean`,
/// `running_var` and `num_batches_tracked` are buffers, named as in torch's `state_dict`.
///
/// ```
/// use modelopt_nn::BatchNorm2d;
/// use ndarray::Array4;
/// let mut bn = BatchNorm2d::<f64>::new(2)?;
/// let x = Array4::from_shape_fn((4, 2, 3, 3), |(n, c, i, j)| (n + c * 10 + i * j) as f64);
/// let y = bn.forward_train(&x)?;
/// let mean: f64 = y.index_axis(ndarray::Axis(1), 0).mean().unwrap();
/// assert!(mean.abs() < 1e-12);
/// assert!(bn.running_mean()[1] > 0.0); // moved towards the batch mean
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNorm2d<A> {
    weight: Array1<A>,
    bias: Array1<A>,
    running_mean: Array1<A>,
    running_var: Array1<A>,
    num_batches_tracked: u64,
    weight_grad: Array1<A>,
    bias_grad: Array1<A>,
    eps: f64,
    momentum: f64,
}

impl<A: Float> BatchNorm2d<A> {
    /// Batch norm over `channels` (> 0) with torch's defaults: gamma 1, beta 0, running mean 0,
    /// running variance 1, eps 1e-5, momentum 0.1.
    pub fn new(channels: usize) -> Result<Self> {
        if channels == 0 {
            return Err(CoreError::invalid("channels", "batch norm needs channels > 0").into());
        }
        Ok(BatchNorm2d {
            weight: Array1::ones(channels),
            bias: Array1::zeros(channels),
            running_mean: Array1::zeros(channels),
            running_var: Array1::ones(channels),
            num_batches_tracked: 0,
            weight_grad: Array1::zeros(channels),
            bias_grad: Array1::zeros(channels),
            eps: 1e-5,
            momentum: 0.1,
        })
    }

    /// Set eps (finite, > 0) and momentum (in `[0, 1]`).
    ///
    /// ```
    /// use modelopt_nn::BatchNorm2d;
    /// assert!(BatchNorm2d::<f32>::new(4)?.with_eps_momentum(1e-3, 0.01).is_ok());
    /// assert!(BatchNorm2d::<f32>::new(4)?.with_eps_momentum(0.0, 0.1).is_err());
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn with_eps_momentum(mut self, eps: f64, momentum: f64) -> Result<Self> {
        if !(eps.is_finite() && eps > 0.0) {
            return Err(
                CoreError::invalid("eps", format!("must be finite and > 0, got {eps}")).into(),
            );
        }
        if !(0.0..=1.0).contains(&momentum) {
            return Err(CoreError::invalid(
                "momentum",
                format!("must be in [0, 1], got {momentum}"),
            )
            .into());
        }
        self.eps = eps;
        self.momentum = momentum;
        Ok(self)
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.weight.len()
    }
    /// eps added to the variance.
    pub fn eps(&self) -> f64 {
        self.eps
    }
    /// Momentum of the running statistics.
    pub fn momentum(&self) -> f64 {
        self.momentum
    }
    /// gamma, `[channels]`.
    pub fn weight(&self) -> &Array1<A> {
        &self.weight
    }
    /// gamma, mutable.
    pub fn weight_mut(&mut self) -> &mut Array1<A> {
        &mut self.weight
    }
    /// beta, `[channels]`.
    pub fn bias(&self) -> &Array1<A> {
        &self.bias
    }
    /// beta, mutable.
    pub fn bias_mut(&mut self) -> &mut Array1<A> {
        &mut self.bias
    }
    /// Running mean, `[channels]`.
    pub fn running_mean(&self) -> &Array1<A> {
        &self.running_mean
    }
    /// Running mean, mutable.
    pub fn running_mean_mut(&mut self) -> &mut Array1<A> {
        &mut self.running_mean
    }
    /// Running (unbiased) variance, `[channels]`.
    pub fn running_var(&self) -> &Array1<A> {
        &self.running_var
    }
    /// Running variance, mutable.
    pub fn running_var_mut(&mut self) -> &mut Array1<A> {
        &mut self.running_var
    }
    /// Training batches seen (torch's `num_batches_tracked`).
    pub fn num_batches_tracked(&self) -> u64 {
        self.num_batches_tracked
    }
    /// Set the count of training batches seen (when loading a `state_dict`).
    pub fn set_num_batches_tracked(&mut self, n: u64) {
        self.num_batches_tracked = n;
    }
    /// Gradient w.r.t. gamma from the last backward.
    pub fn weight_grad(&self) -> &Array1<A> {
        &self.weight_grad
    }
    /// Gradient w.r.t. beta from the last backward.
    pub fn bias_grad(&self) -> &Array1<A> {
        &self.bias_grad
    }

    /// Parameters and gradients together, for optimizers.
    pub(crate) fn parts_mut(&mut self) -> (&mut Array1<A>, &mut Array1<A>, &Array1<A>, &Array1<A>) {
        (
            &mut self.weight,
            &mut self.bias,
            &self.weight_grad,
            &self.bias_grad,
        )
    }

    fn check(&self, x: &ArrayRef4<A>) -> Result<()> {
        if x.dim().1 != self.channels() {
            return Err(CoreError::invalid(
                "channels",
                format!(
                    "input has {} channels, batch norm has {}",
                    x.dim().1,
                    self.channels()
                ),
            )
            .into());
        }
        Ok(())
    }

    /// Eval-mode output: normalised by the running statistics.
    ///
    /// ```
    /// use modelopt_nn::BatchNorm2d;
    /// use ndarray::Array4;
    /// let bn = BatchNorm2d::<f64>::new(1)?;
    /// let y = bn.forward_eval(&Array4::from_elem((1, 1, 1, 1), 2.0))?;
    /// assert!((y[[0, 0, 0, 0]] - 2.0 / (1.0f64 + 1e-5).sqrt()).abs() < 1e-15);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn forward_eval(&self, x: &ArrayRef4<A>) -> Result<Array4<A>> {
        self.check(x)?;
        let (scale, shift) = self.eval_affine();
        let mut y = x.to_owned();
        for mut image in y.outer_iter_mut() {
            for ((mut plane, &s), &t) in image.outer_iter_mut().zip(&scale).zip(&shift) {
                plane.mapv_inplace(|v| v * s + t);
            }
        }
        Ok(y)
    }

    /// The eval-mode transform as `y = scale x + shift` per channel (what folding into the
    /// preceding convolution uses).
    ///
    /// ```
    /// use modelopt_nn::BatchNorm2d;
    /// let (scale, shift) = BatchNorm2d::<f64>::new(3)?.eval_affine();
    /// assert_eq!((scale.len(), shift[0]), (3, 0.0));
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn eval_affine(&self) -> (Array1<A>, Array1<A>) {
        let eps: A = c(self.eps);
        let scale = Zip::from(&self.weight)
            .and(&self.running_var)
            .map_collect(|&g, &v| g / (v + eps).sqrt());
        let shift = Zip::from(&self.bias)
            .and(&self.running_mean)
            .and(&scale)
            .map_collect(|&b, &m, &s| b - m * s);
        (scale, shift)
    }

    /// Per-channel batch mean and biased variance over `(N, H, W)`, accumulated in f64.
    fn batch_stats(x: &ArrayRef4<A>) -> Result<(Vec<f64>, Vec<f64>, usize)> {
        let (n, ch, h, w) = x.dim();
        let count = n * h * w;
        if count == 0 {
            return Err(CoreError::Empty {
                what: "batch norm input",
            }
            .into());
        }
        let (mut mean, mut var) = (vec![0.0; ch], vec![0.0; ch]);
        for image in x.outer_iter() {
            for (ci, plane) in image.outer_iter().enumerate() {
                mean[ci] += plane.iter().map(|v| v.to_f64_lossless()).sum::<f64>();
            }
        }
        mean.iter_mut().for_each(|m| *m /= count as f64);
        for image in x.outer_iter() {
            for (ci, plane) in image.outer_iter().enumerate() {
                let m = mean[ci];
                var[ci] += plane
                    .iter()
                    .map(|v| (v.to_f64_lossless() - m).powi(2))
                    .sum::<f64>();
            }
        }
        var.iter_mut().for_each(|v| *v /= count as f64);
        Ok((mean, var, count))
    }

    /// Training-mode output: normalised by the batch statistics, which also update the running
    /// statistics. Needs more than one value per channel (as torch).
    pub fn forward_train(&mut self, x: &ArrayRef4<A>) -> Result<Array4<A>> {
        self.check(x)?;
        let (mean, var, count) = Self::batch_stats(x)?;
        if count < 2 {
            return Err(CoreError::invalid(
                "batch norm input",
                "training needs more than one value per channel",
            )
            .into());
        }
        let mut y = x.to_owned();
        for mut image in y.outer_iter_mut() {
            for (ci, mut plane) in image.outer_iter_mut().enumerate() {
                let inv: A = c(1.0 / (var[ci] + self.eps).sqrt());
                let (m, g, b): (A, A, A) = (c(mean[ci]), self.weight[ci], self.bias[ci]);
                plane.mapv_inplace(|v| (v - m) * inv * g + b);
            }
        }
        let mo = self.momentum;
        let unbias = count as f64 / (count - 1) as f64;
        for ci in 0..self.channels() {
            let rm = self.running_mean[ci].to_f64_lossless();
            let rv = self.running_var[ci].to_f64_lossless();
            self.running_mean[ci] = c((1.0 - mo) * rm + mo * mean[ci]);
            self.running_var[ci] = c((1.0 - mo) * rv + mo * var[ci] * unbias);
        }
        self.num_batches_tracked += 1;
        Ok(y)
    }

    /// Backward pass of a training-mode forward on `x`: stores the gamma and beta gradients and
    /// returns `dL/dx` (the batch statistics depend on every input, which the formula accounts for).
    ///
    /// ```
    /// use modelopt_nn::BatchNorm2d;
    /// use ndarray::Array4;
    /// let mut bn = BatchNorm2d::<f64>::new(1)?;
    /// let x = Array4::from_shape_fn((2, 1, 2, 1), |(n, _, i, _)| (n * 2 + i) as f64);
    /// bn.forward_train(&x)?;
    /// // A gradient constant over the batch moves nothing: the mean absorbs it.
    /// let dx = bn.backward_train(&x, &Array4::ones((2, 1, 2, 1)))?;
    /// assert!(dx.iter().all(|v| v.abs() < 1e-12));
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn backward_train(&mut self, x: &ArrayRef4<A>, dy: &ArrayRef4<A>) -> Result<Array4<A>> {
        self.check(x)?;
        check_same(x, dy)?;
        let (mean, var, count) = Self::batch_stats(x)?;
        let ch = self.channels();
        // Per channel: sum(dy) and sum(dy * xhat).
        let (mut sum_dy, mut sum_dy_xhat) = (vec![0.0f64; ch], vec![0.0f64; ch]);
        let inv: Vec<f64> = var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        for (xi, di) in x.outer_iter().zip(dy.outer_iter()) {
            for (ci, (xp, dp)) in xi.outer_iter().zip(di.outer_iter()).enumerate() {
                Zip::from(&xp).and(&dp).for_each(|&xv, &dv| {
                    let d = dv.to_f64_lossless();
                    sum_dy[ci] += d;
                    sum_dy_xhat[ci] += d * (xv.to_f64_lossless() - mean[ci]) * inv[ci];
                });
            }
        }
        for ci in 0..ch {
            self.bias_grad[ci] = c(sum_dy[ci]);
            self.weight_grad[ci] = c(sum_dy_xhat[ci]);
        }
        let n = count as f64;
        let mut dx = Array4::zeros(x.raw_dim());
        for ((xi, di), mut dxi) in x.outer_iter().zip(dy.outer_iter()).zip(dx.outer_iter_mut()) {
            for (ci, ((xp, dp), mut dxp)) in xi
                .outer_iter()
                .zip(di.outer_iter())
                .zip(dxi.outer_iter_mut())
                .enumerate()
            {
                let k = self.weight[ci].to_f64_lossless() * inv[ci];
                let (m, i, mdy, mdx) = (mean[ci], inv[ci], sum_dy[ci] / n, sum_dy_xhat[ci] / n);
                Zip::from(&mut dxp)
                    .and(&xp)
                    .and(&dp)
                    .for_each(|o, &xv, &dv| {
                        let xhat = (xv.to_f64_lossless() - m) * i;
                        *o = c(k * (dv.to_f64_lossless() - mdy - xhat * mdx));
                    });
            }
        }
        Ok(dx)
    }

    /// Backward pass of an eval-mode forward (running statistics are constants): stores the gamma
    /// and beta gradients and returns `dL/dx = dy * gamma / sqrt(running_var + eps)`.
    pub fn backward_eval(&mut self, x: &ArrayRef4<A>, dy: &ArrayRef4<A>) -> Result<Array4<A>> {
        self.check(x)?;
        check_same(x, dy)?;
        let (scale, _) = self.eval_affine();
        let eps: A = c(self.eps);
        let mut dx = dy.to_owned();
        self.weight_grad.fill(A::zero());
        self.bias_grad.fill(A::zero());
        for (xi, mut di) in x.outer_iter().zip(dx.outer_iter_mut()) {
            for (ci, (xp, mut dp)) in xi.outer_iter().zip(di.outer_iter_mut()).enumerate() {
                let (m, inv) = (
                    self.running_mean[ci],
                    A::one() / (self.running_var[ci] + eps).sqrt(),
                );
                let (mut gw, mut gb) = (A::zero(), A::zero());
                Zip::from(&mut dp).and(&xp).for_each(|d, &xv| {
                    gb = gb + *d;
                    gw = gw + *d * (xv - m) * inv;
                    *d = *d * scale[ci];
                });
                self.weight_grad[ci] = self.weight_grad[ci] + gw;
                self.bias_grad[ci] = self.bias_grad[ci] + gb;
            }
        }
        Ok(dx)
    }
}

fn check_same<A>(x: &ArrayRef4<A>, dy: &ArrayRef4<A>) -> Result<()> {
    if x.shape() != dy.shape() {
        return Err(CoreError::ShapeMismatch {
            expected: x.shape().to_vec(),
            found: dy.shape().to_vec(),
        }
        .into());
    }
    Ok(())
}
