use modelopt_tensor_core::{CoreError, Float};
use ndarray::{Array1, Array2, Array4, ArrayRef4, ArrayView2, ArrayViewMut2, Axis, s};
use rand::rngs::StdRng;

use crate::im2col::{col2im, im2col};
use crate::matmul::gemm;
use crate::{Init, Result, Window};

/// A 2-D convolution over NCHW batches, as torch's `nn.Conv2d`: weight `[out, in / groups, kh, kw]`,
/// optional bias `[out]`, stride, zero padding, dilation and groups (`groups == in == out` is a
/// depthwise convolution).
///
/// Each image is unfolded with [`im2col`](crate::im2col()) and multiplied by the weight, one GEMM per
/// image and group through the same kernel as [`crate::Dense`]; the backward pass multiplies by the
/// unfolded image again (weight gradient) and folds the input gradient back with
/// [`col2im`](crate::col2im()). Like [`crate::Dense`], the layer keeps no activations:
/// [`Conv2d::backward`] takes the forward input and stores the gradients of its last call.
///
/// ```
/// use modelopt_nn::Conv2d;
/// use ndarray::Array4;
/// use rand::SeedableRng;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let conv = Conv2d::<f32>::builder(1, 8, 3).padding(1).build(&mut rng)?;
/// let y = conv.forward(&Array4::zeros((2, 1, 28, 28)))?;
/// assert_eq!(y.dim(), (2, 8, 28, 28));
/// assert!(conv.forward(&Array4::zeros((2, 3, 28, 28))).is_err()); // 3 channels, expects 1
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2d<A> {
    weight: Array4<A>,
    bias: Option<Array1<A>>,
    weight_grad: Array4<A>,
    bias_grad: Option<Array1<A>>,
    window: Window,
    groups: usize,
}

/// Unchecked parameters of a [`Conv2d`]. Defaults: stride 1, padding 0, dilation 1, groups 1, with
/// bias, He-normal initialisation (bias zero).
///
/// ```
/// use modelopt_nn::Conv2d;
/// use rand::SeedableRng;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let depthwise = Conv2d::<f32>::builder(16, 16, 3).groups(16).padding(1).bias(false).build(&mut rng)?;
/// assert_eq!(depthwise.weight().dim(), (16, 1, 3, 3));
/// assert!(Conv2d::<f32>::builder(6, 4, 3).groups(4).build(&mut rng).is_err()); // 4 does not divide 6
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conv2dBuilder<A> {
    marker: std::marker::PhantomData<A>,
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
    groups: usize,
    bias: bool,
    init: Init,
}

impl<A: Float> Conv2dBuilder<A> {
    /// Step between windows (> 0).
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }
    /// Zeros added on every side.
    pub fn padding(mut self, padding: usize) -> Self {
        self.padding = padding;
        self
    }
    /// Spacing between kernel taps (> 0).
    pub fn dilation(mut self, dilation: usize) -> Self {
        self.dilation = dilation;
        self
    }
    /// Number of channel groups; must divide both channel counts.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
    /// Whether the layer has a bias.
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
    /// Weight initialisation (fan-in `in / groups * kh * kw`).
    pub fn init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }
    /// Validate and build, drawing the weights from `rng`.
    pub fn build(self, rng: &mut StdRng) -> Result<Conv2d<A>> {
        let window = Window::square(self.kernel, self.stride, self.padding, self.dilation)?;
        check_groups(self.in_channels, self.out_channels, self.groups)?;
        let fan_in = self.in_channels / self.groups * self.kernel * self.kernel;
        let w = self.init.weight::<A>(self.out_channels, fan_in, rng);
        let weight = w
            .into_shape_with_order((
                self.out_channels,
                self.in_channels / self.groups,
                self.kernel,
                self.kernel,
            ))
            .map_err(|e| CoreError::invalid("conv2d weight", e.to_string()))?;
        let bias = self.bias.then(|| Array1::zeros(self.out_channels));
        Conv2d::from_parts(weight, bias, window, self.groups)
    }
}

fn check_groups(in_channels: usize, out_channels: usize, groups: usize) -> Result<()> {
    if in_channels == 0 || out_channels == 0 {
        return Err(CoreError::invalid(
            "channels",
            format!("a convolution needs channels, got {in_channels} -> {out_channels}"),
        )
        .into());
    }
    if groups == 0 || !in_channels.is_multiple_of(groups) || !out_channels.is_multiple_of(groups) {
        return Err(CoreError::invalid(
            "groups",
            format!("{groups} groups must divide both {in_channels} input and {out_channels} output channels"),
        )
        .into());
    }
    Ok(())
}

impl<A: Float> Conv2d<A> {
    /// Parameters of a convolution from `in_channels` to `out_channels` with a square `kernel`;
    /// see [`Conv2dBuilder`].
    pub fn builder(in_channels: usize, out_channels: usize, kernel: usize) -> Conv2dBuilder<A> {
        Conv2dBuilder {
            marker: std::marker::PhantomData,
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
            bias: true,
            init: Init::HeNormal,
        }
    }

    /// A layer from an existing weight `[out, in / groups, kh, kw]`, optional bias `[out]`, the
    /// window (its kernel must be the weight's `kh x kw`) and the group count.
    ///
    /// ```
    /// use modelopt_nn::{Conv2d, Window};
    /// use ndarray::{Array1, Array4};
    /// let w = Array4::<f64>::ones((4, 2, 3, 3));
    /// let conv = Conv2d::from_parts(w.clone(), Some(Array1::zeros(4)), Window::square(3, 1, 1, 1)?, 1)?;
    /// assert_eq!(conv.in_channels(), 2);
    /// assert!(Conv2d::from_parts(w, None, Window::square(5, 1, 1, 1)?, 1).is_err()); // kernel 5 vs 3x3
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn from_parts(
        weight: Array4<A>,
        bias: Option<Array1<A>>,
        window: Window,
        groups: usize,
    ) -> Result<Self> {
        let (out, in_per_group, kh, kw) = weight.dim();
        if weight.is_empty() {
            return Err(CoreError::Empty {
                what: "conv2d weight",
            }
            .into());
        }
        if window.kernel != [kh, kw] {
            return Err(CoreError::invalid(
                "kernel",
                format!(
                    "window kernel {:?} does not match the weight's {kh}x{kw}",
                    window.kernel
                ),
            )
            .into());
        }
        check_groups(in_per_group * groups, out, groups)?;
        if let Some(b) = &bias
            && b.len() != out
        {
            return Err(CoreError::ShapeMismatch {
                expected: vec![out],
                found: vec![b.len()],
            }
            .into());
        }
        Ok(Conv2d {
            weight_grad: Array4::zeros(weight.raw_dim()),
            bias_grad: bias.as_ref().map(|b| Array1::zeros(b.raw_dim())),
            weight: weight.as_standard_layout().into_owned(),
            bias,
            window,
            groups,
        })
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.weight.dim().1 * self.groups
    }

    /// Output channels (filters).
    pub fn out_channels(&self) -> usize {
        self.weight.dim().0
    }

    /// Channel groups.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Kernel, stride, padding and dilation.
    pub fn window(&self) -> &Window {
        &self.window
    }

    /// The weight `[out, in / groups, kh, kw]`.
    pub fn weight(&self) -> &Array4<A> {
        &self.weight
    }

    /// The weight, mutable (values only; the shape is fixed).
    pub fn weight_mut(&mut self) -> &mut Array4<A> {
        &mut self.weight
    }

    /// The bias `[out]`, if the layer has one.
    pub fn bias(&self) -> Option<&Array1<A>> {
        self.bias.as_ref()
    }

    /// The bias, mutable.
    pub fn bias_mut(&mut self) -> Option<&mut Array1<A>> {
        self.bias.as_mut()
    }

    /// Gradient of the loss w.r.t. the weight from the last [`Conv2d::backward`].
    pub fn weight_grad(&self) -> &Array4<A> {
        &self.weight_grad
    }

    /// Gradient of the loss w.r.t. the bias from the last [`Conv2d::backward`].
    pub fn bias_grad(&self) -> Option<&Array1<A>> {
        self.bias_grad.as_ref()
    }

    /// Parameters and gradients together, for optimizers.
    pub(crate) fn parts_mut(&mut self) -> ConvParts<'_, A> {
        (
            &mut self.weight,
            self.bias.as_mut(),
            &self.weight_grad,
            self.bias_grad.as_ref(),
        )
    }

    /// Output `[channels, height, width]` for an input of `[channels, height, width]`: an error when
    /// the channels differ from the layer's or the kernel does not fit the padded input.
    ///
    /// ```
    /// use modelopt_nn::Conv2d;
    /// use rand::SeedableRng;
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    /// let conv = Conv2d::<f32>::builder(1, 4, 3).build(&mut rng)?;
    /// assert_eq!(conv.output_shape([1, 28, 28])?, [4, 26, 26]);
    /// assert!(conv.output_shape([1, 2, 2]).is_err());
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn output_shape(&self, input: [usize; 3]) -> Result<[usize; 3]> {
        if input[0] != self.in_channels() {
            return Err(CoreError::invalid(
                "channels",
                format!(
                    "input has {} channels, the convolution expects {}",
                    input[0],
                    self.in_channels()
                ),
            )
            .into());
        }
        let (oh, ow) = self.window.output_size(input[1], input[2])?;
        Ok([self.out_channels(), oh, ow])
    }

    /// Multiply-accumulate operations for one image of `[channels, height, width]`.
    ///
    /// ```
    /// use modelopt_nn::Conv2d;
    /// use rand::SeedableRng;
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    /// let conv = Conv2d::<f32>::builder(1, 64, 3).build(&mut rng)?;
    /// assert_eq!(conv.macs([1, 28, 28])?, 64 * 26 * 26 * 9);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn macs(&self, input: [usize; 3]) -> Result<usize> {
        let [c, h, w] = self.output_shape(input)?;
        let (_, in_per_group, kh, kw) = self.weight.dim();
        Ok(c * h * w * in_per_group * kh * kw)
    }

    fn input_shape(&self, x: &ArrayRef4<A>) -> Result<[usize; 3]> {
        let (_, c, h, w) = x.dim();
        self.output_shape([c, h, w])
    }

    /// The weight as a matrix `[out, in / groups * kh * kw]` (rows are filters).
    fn weight_matrix(&self) -> ArrayView2<'_, A> {
        let (out, ..) = self.weight.dim();
        let k = self.weight.len() / out;
        self.weight
            .view()
            .into_shape_with_order((out, k))
            .expect("the weight is kept in standard layout")
    }

    /// The convolution of a batch `x` `[batch, in, height, width]`.
    ///
    /// ```
    /// use modelopt_nn::{Conv2d, Window};
    /// use ndarray::{array, Array4};
    /// // A 2x2 box filter on a 1x1x2x2 image: one output, the sum, plus the bias.
    /// let conv = Conv2d::from_parts(Array4::ones((1, 1, 2, 2)), Some(array![0.5]), Window::square(2, 1, 0, 1)?, 1)?;
    /// let y = conv.forward(&Array4::from_shape_vec((1, 1, 2, 2), vec![1.0f32, 2.0, 3.0, 4.0]).unwrap())?;
    /// assert_eq!(y[[0, 0, 0, 0]], 10.5);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn forward(&self, x: &ArrayRef4<A>) -> Result<Array4<A>> {
        let [out, oh, ow] = self.input_shape(x)?;
        let batch = x.dim().0;
        let mut y = Array4::zeros((batch, out, oh, ow));
        if let Some(b) = &self.bias {
            for mut image in y.outer_iter_mut() {
                for (mut plane, &bv) in image.outer_iter_mut().zip(b) {
                    plane.fill(bv);
                }
            }
        }
        let w = self.weight_matrix();
        let (k, out_g, g) = (w.ncols(), out / self.groups, self.groups);
        let mut cols = Array2::zeros((k * g, oh * ow));
        for (xn, mut yn) in x.outer_iter().zip(y.outer_iter_mut()) {
            im2col(&xn, &self.window, &mut cols)?;
            let mut yn = matrix_mut(yn.view_mut(), out, oh * ow);
            for gi in 0..g {
                gemm(
                    A::one(),
                    &w.slice(s![gi * out_g..(gi + 1) * out_g, ..]),
                    &cols.slice(s![gi * k..(gi + 1) * k, ..]),
                    A::one(),
                    &mut yn.slice_mut(s![gi * out_g..(gi + 1) * out_g, ..]),
                );
            }
        }
        Ok(y)
    }

    /// Backward pass: from the forward input `x` and `dy = dL/dy` `[batch, out, oh, ow]`, store the
    /// weight and bias gradients and return `dL/dx` when `input_grad` (the first layer of a network
    /// does not need it).
    ///
    /// ```
    /// use modelopt_nn::{Conv2d, Window};
    /// use ndarray::Array4;
    /// let mut conv = Conv2d::from_parts(Array4::from_elem((1, 1, 1, 1), 2.0f64), None, Window::square(1, 1, 0, 1)?, 1)?;
    /// let x = Array4::from_elem((1, 1, 2, 2), 3.0);
    /// let dx = conv.backward(&x, &Array4::ones((1, 1, 2, 2)), true)?.unwrap();
    /// assert_eq!((conv.weight_grad()[[0, 0, 0, 0]], dx[[0, 0, 1, 1]]), (12.0, 2.0));
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn backward(
        &mut self,
        x: &ArrayRef4<A>,
        dy: &ArrayRef4<A>,
        input_grad: bool,
    ) -> Result<Option<Array4<A>>> {
        let [out, oh, ow] = self.input_shape(x)?;
        let batch = x.dim().0;
        if dy.dim() != (batch, out, oh, ow) {
            return Err(CoreError::ShapeMismatch {
                expected: vec![batch, out, oh, ow],
                found: dy.shape().to_vec(),
            }
            .into());
        }
        if let Some(bg) = self.bias_grad.as_mut() {
            bg.assign(&dy.sum_axis(Axis(3)).sum_axis(Axis(2)).sum_axis(Axis(0)));
        }
        let (k, g) = (self.weight.len() / out, self.groups);
        let out_g = out / g;
        let mut wg = std::mem::take(&mut self.weight_grad)
            .into_shape_with_order((out, k))
            .map_err(|e| CoreError::invalid("conv2d weight gradient", e.to_string()))?;
        wg.fill(A::zero());
        let mut cols = Array2::zeros((k * g, oh * ow));
        let mut dcols = Array2::zeros(if input_grad { (k * g, oh * ow) } else { (0, 0) });
        let mut dx = input_grad.then(|| Array4::zeros(x.raw_dim()));
        let result = (|| -> Result<()> {
            let w = self.weight_matrix();
            for (n, xn) in x.outer_iter().enumerate() {
                im2col(&xn, &self.window, &mut cols)?;
                let dyn_ = dy.index_axis(Axis(0), n);
                let dyn_ = dyn_
                    .into_shape_with_order((out, oh * ow))
                    .map_err(|e| CoreError::invalid("conv2d upstream gradient", e.to_string()))?;
                for gi in 0..g {
                    let rows = s![gi * out_g..(gi + 1) * out_g, ..];
                    let krows = s![gi * k..(gi + 1) * k, ..];
                    gemm(
                        A::one(),
                        &dyn_.slice(rows),
                        &cols.slice(krows).t(),
                        A::one(),
                        &mut wg.slice_mut(rows),
                    );
                    if input_grad {
                        gemm(
                            A::one(),
                            &w.slice(rows).t(),
                            &dyn_.slice(rows),
                            A::zero(),
                            &mut dcols.slice_mut(krows),
                        );
                    }
                }
                if let Some(dx) = dx.as_mut() {
                    col2im(&dcols, &self.window, &mut dx.index_axis_mut(Axis(0), n))?;
                }
            }
            Ok(())
        })();
        let shape = self.weight.raw_dim();
        self.weight_grad = wg
            .into_shape_with_order(shape)
            .map_err(|e| CoreError::invalid("conv2d weight gradient", e.to_string()))?;
        result?;
        Ok(dx)
    }
}

/// Weight, bias, and their gradients, borrowed together for an optimizer step.
pub(crate) type ConvParts<'a, A> = (
    &'a mut Array4<A>,
    Option<&'a mut Array1<A>>,
    &'a Array4<A>,
    Option<&'a Array1<A>>,
);

/// A standard-layout `[c, h, w]` image view as a `[rows, cols]` matrix.
fn matrix_mut<A>(
    v: ndarray::ArrayViewMut3<'_, A>,
    rows: usize,
    cols: usize,
) -> ArrayViewMut2<'_, A> {
    v.into_shape_with_order((rows, cols))
        .expect("images of a freshly allocated batch are contiguous")
}
