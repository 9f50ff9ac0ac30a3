//! `QuantizedConv2d`: a convolution that runs in integers, as an im2col of each image into patch
//! rows and, per group, one [`QuantizedLinear`] product over them.

use modelopt_kernels::{ActScale, Isa, Par};
use modelopt_nn::{Conv2d, Dense, Window, im2col};
use modelopt_quantize::observer::Observer;
use modelopt_tensor_core::CoreError;
use ndarray::{Array2, Array4, ArrayRef4, s};

use super::linear::activation_scheme;
use super::{LinearScheme, QuantizedLinear};
use crate::Result;

/// A 2-D convolution (NCHW, stride, padding, dilation, groups including depthwise) whose products
/// run in integers with a [`LinearScheme`]:
///
/// - `W8A8Static`: int8 weights (one scale per output channel) times the input quantized to u8
///   with one scale and zero point calibrated on data ([`QuantizedConv2d::calibrate`]). Zero
///   padding is exact: a padded 0 is the zero point's code.
/// - `W8A8Dynamic`: the same, with the input quantized per output position (each patch row its
///   own range) at run time.
/// - `WeightOnly(format)`: low-bit filters (Q8_0, Q4_0, IQ4_NL, Q4_K, grouped int4) times patch
///   rows quantized to 8-bit blocks; `in / groups * kh * kw` must be a multiple of the block.
///
/// Each image is unfolded into patch rows `[oh * ow, in / groups * kh * kw]` per group (im2col),
/// and each group's filters are one [`QuantizedLinear`] over them (bias and ReLU fused).
///
/// ```
/// use modelopt::nn::{Conv2d, Window};
/// use modelopt::quantized::{LinearScheme, QuantizedConv2d};
/// use modelopt::kernels::Par;
/// use ndarray::{Array4, array};
/// // A 2x2 box filter plus 0.5 on a 1x1x3x3 image.
/// let conv = Conv2d::from_parts(Array4::ones((1, 1, 2, 2)), Some(array![0.5]), Window::square(2, 1, 0, 1)?, 1)?;
/// let x = Array4::from_shape_fn((1, 1, 3, 3), |(_, _, i, j)| (3 * i + j) as f32);
/// let q = QuantizedConv2d::from_conv(&conv, LinearScheme::W8A8Dynamic)?;
/// let y = q.forward(&x, Par::Seq)?;
/// assert!((y[[0, 0, 0, 0]] - 8.5).abs() < 0.05); // 0 + 1 + 3 + 4 + 0.5
/// # Ok::<(), modelopt::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedConv2d {
    groups: Vec<QuantizedLinear>,
    window: Window,
    in_channels: usize,
    out_channels: usize,
}

impl QuantizedConv2d {
    /// Quantizes `conv`'s filters for `scheme` (each group's filters, viewed as
    /// `[out / groups, in / groups * kh * kw]`, quantized as [`QuantizedLinear::from_dense`] does).
    pub fn from_conv(conv: &Conv2d<f32>, scheme: LinearScheme) -> Result<Self> {
        let (out, in_g, kh, kw) = conv.weight().dim();
        let g = conv.groups();
        let out_g = out / g;
        let k = in_g * kh * kw;
        let w = conv
            .weight()
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((out, k))
            .map_err(|e| CoreError::invalid("weight", e.to_string()))?;
        let groups = (0..g)
            .map(|gi| {
                let rows = gi * out_g..(gi + 1) * out_g;
                let bias = conv.bias().map_or_else(
                    || ndarray::Array1::zeros(out_g),
                    |b| b.slice(s![rows.clone()]).to_owned(),
                );
                let dense = Dense::from_parts(w.slice(s![rows, ..]).to_owned(), bias)?;
                QuantizedLinear::from_dense(&dense, scheme)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(QuantizedConv2d {
            groups,
            window: *conv.window(),
            in_channels: in_g * g,
            out_channels: out,
        })
    }

    /// Builds from one [`QuantizedLinear`] per group (as [`QuantizedConv2d::group_layers`]
    /// returns them): each takes `in_channels / groups * kh * kw` inputs, all have the same
    /// outputs and scheme.
    pub fn from_groups(
        groups: Vec<QuantizedLinear>,
        window: Window,
        in_channels: usize,
    ) -> Result<Self> {
        let g = groups.len();
        let bad = |what: String| crate::Error::from(CoreError::invalid("convolution groups", what));
        let first = groups.first().ok_or_else(|| bad("no groups".into()))?;
        if in_channels == 0 || !in_channels.is_multiple_of(g) {
            return Err(bad(format!(
                "{g} groups do not divide {in_channels} input channels"
            )));
        }
        let k = in_channels / g * window.kernel[0] * window.kernel[1];
        let out_g = first.out_features();
        for (i, l) in groups.iter().enumerate() {
            if l.in_features() != k || l.out_features() != out_g || l.scheme() != first.scheme() {
                return Err(bad(format!(
                    "group {i}: {} -> {} ({}), expected {k} -> {out_g} ({})",
                    l.in_features(),
                    l.out_features(),
                    l.scheme().name(),
                    first.scheme().name()
                )));
            }
        }
        Ok(QuantizedConv2d {
            window,
            in_channels,
            out_channels: out_g * g,
            groups,
        })
    }

    /// The scheme.
    pub fn scheme(&self) -> LinearScheme {
        self.groups[0].scheme()
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    /// The window (kernel, stride, padding, dilation).
    pub fn window(&self) -> &Window {
        &self.window
    }

    /// The group products, one [`QuantizedLinear`] per group.
    pub fn group_layers(&self) -> &[QuantizedLinear] {
        &self.groups
    }

    /// Bytes of weights the kernels read (codes and scales; biases not counted).
    pub fn weight_bytes(&self) -> usize {
        self.groups.iter().map(QuantizedLinear::weight_bytes).sum()
    }

    /// The static input scale, once calibrated (or set).
    pub fn input_scale(&self) -> Option<ActScale> {
        self.groups[0].input_scale()
    }

    /// Sets the static input scale (W8A8 static only): one scale and zero point for the whole
    /// input, shared by the groups.
    pub fn set_input_scale(&mut self, scale: ActScale) -> Result<()> {
        self.groups
            .iter_mut()
            .try_for_each(|g| g.set_input_scale(scale))
    }

    /// Sets the static input scale and zero point from an observer that has seen this layer's
    /// inputs (u8 affine codes; zero is always representable, so padding stays exact).
    pub fn calibrate(&mut self, observer: &dyn Observer) -> Result<()> {
        let params = observer.quant_params(&activation_scheme()?)?;
        self.set_input_scale(ActScale::per_tensor(
            params.scales()[[0]],
            params.zero_points()[[0]],
        )?)
    }

    /// Fuses ReLU into the epilogue (or removes it).
    pub fn set_relu(&mut self, on: bool) {
        self.groups.iter_mut().for_each(|g| g.set_relu(on));
    }

    /// Runs on the instruction set `isa` instead of the best one (to compare them).
    pub fn with_isa(mut self, isa: Isa) -> Result<Self> {
        self.groups = self
            .groups
            .into_iter()
            .map(|g| g.with_isa(isa))
            .collect::<Result<_>>()?;
        Ok(self)
    }

    /// The output shape `[out, oh, ow]` for an input `[in, height, width]`.
    pub fn output_shape(&self, input: [usize; 3]) -> Result<[usize; 3]> {
        if input[0] != self.in_channels {
            return Err(CoreError::ShapeMismatch {
                expected: vec![self.in_channels],
                found: vec![input[0]],
            }
            .into());
        }
        let (oh, ow) = self.window.output_size(input[1], input[2])?;
        Ok([self.out_channels, oh, ow])
    }

    /// The convolution of a batch `x` `[batch, in, height, width]` (finite): per image and
    /// group, the patch rows (`[oh * ow, in / groups * kh * kw]`) in one product, parallel over
    /// output channels as `par` allows. (One image at a time: stacking the whole batch into one
    /// product measured slower, its large fresh buffers costing more in page faults than the
    /// per-call overhead it saves.)
    pub fn forward(&self, x: &ArrayRef4<f32>, par: Par) -> Result<Array4<f32>> {
        let (batch, c, h, w) = x.dim();
        let [out, oh, ow] = self.output_shape([c, h, w])?;
        let g = self.groups.len();
        let [kh, kw] = self.window.kernel;
        let (k, out_g, p) = (c / g * kh * kw, out / g, oh * ow);
        let mut y = Array4::<f32>::zeros((batch, out, oh, ow));
        let mut cols = Array2::<f32>::zeros((k * g, p));
        let mut rows = Array2::<f32>::zeros((p, k));
        for (xn, mut yn) in x.outer_iter().zip(y.outer_iter_mut()) {
            im2col(&xn, &self.window, &mut cols)?;
            for (gi, layer) in self.groups.iter().enumerate() {
                rows.assign(&cols.slice(s![gi * k..(gi + 1) * k, ..]).t());
                let r = layer.forward(&rows, par)?; // [oh * ow, out_g]
                let mut planes = yn
                    .slice_mut(s![gi * out_g..(gi + 1) * out_g, .., ..])
                    .into_shape_with_order((out_g, p))
                    .map_err(|e| CoreError::invalid("output", e.to_string()))?;
                planes.assign(&r.t());
            }
        }
        Ok(y)
    }
}
