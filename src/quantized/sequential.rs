//! `QuantizedSequential`: a trained [`Sequential`] network (a CNN) converted in one call —
//! batch norm folded, convolutions and linear layers in integers, calibrated through observers.

use modelopt_kernels::Par;
use modelopt_nn::{Activation, Layer, Sequential, fold_batch_norm};
use modelopt_tensor_core::CoreError;
use ndarray::{Array2, ArrayD, ArrayRef2, Axis, Ix2, Ix4, IxDyn};

use super::{Calibration, LinearScheme, QuantizedConv2d, QuantizedLinear};
use crate::Result;

/// One layer of a [`QuantizedSequential`].
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a handful per network; boxing would only add indirection
pub enum QuantizedLayer {
    /// A convolution in integers (ReLU fused when the network's next layer was one).
    Conv2d(QuantizedConv2d),
    /// A linear layer in integers (ReLU fused likewise).
    Linear(QuantizedLinear),
    /// A layer that runs in f32: pooling, flatten, activations, dropout (identity), and batch
    /// norm that does not follow a convolution.
    Float(Layer<f32>),
}

impl QuantizedLayer {
    /// Bytes of weights the kernels read (0 for f32 layers).
    pub fn weight_bytes(&self) -> usize {
        match self {
            QuantizedLayer::Conv2d(c) => c.weight_bytes(),
            QuantizedLayer::Linear(l) => l.weight_bytes(),
            QuantizedLayer::Float(_) => 0,
        }
    }
}

/// A [`Sequential`] network whose convolutions and linear layers run in integers with one
/// [`LinearScheme`] (see [`QuantizedConv2d`] and [`QuantizedLinear`]); batch norm is folded into
/// the convolution before it, and a ReLU after a quantized layer is fused into its epilogue.
///
/// ```
/// use modelopt::nn::{Activation, Conv2d, Dense, Init, Layer, MaxPool2d, Sequential};
/// use modelopt::quantized::{Calibration, LinearScheme, QuantizedSequential};
/// use modelopt::kernels::Par;
/// use ndarray::Array2;
/// use rand::SeedableRng;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let net = Sequential::builder(&[1, 8, 8])
///     .push(Layer::Conv2d(Conv2d::<f32>::builder(1, 4, 3).padding(1).build(&mut rng)?))
///     .push(Layer::Activation(Activation::Relu))
///     .push(Layer::MaxPool2d(MaxPool2d::new(2, 2, 0)?))
///     .push(Layer::Flatten)
///     .push(Layer::Linear(Dense::new(64, 3, Init::HeNormal, &mut rng)?))
///     .build()?;
/// let x = Array2::from_shape_fn((16, 64), |(i, j)| ((i * 7 + j) % 11) as f32 / 10.0);
/// let q = QuantizedSequential::from_sequential(&net, LinearScheme::W8A8Static, &x, 8, Calibration::MinMax)?;
/// let (y, want) = (q.predict(&x, Par::Seq)?, net.predict(&x)?);
/// assert!(y.iter().zip(&want).all(|(a, b)| (a - b).abs() < 0.1));
/// assert_eq!(q.integer_layers(), 2);
/// # Ok::<(), modelopt::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct QuantizedSequential {
    pub(crate) layers: Vec<(String, QuantizedLayer)>,
    pub(crate) input_shape: Vec<usize>,
}

impl QuantizedSequential {
    /// Folds batch norm into the convolutions of `network`, converts every convolution and
    /// linear layer with `scheme` (ReLUs that follow them fused), and for `W8A8Static` calibrates
    /// each one's input scale and zero point on `data` (`[samples, input_len]`, fed through the
    /// folded float network in batches of `batch`) with an observer of kind `calibration`.
    /// Weight-only schemes need every layer's `in / groups * kh * kw` to be a multiple of the
    /// format's block: an error names the layer that is not.
    pub fn from_sequential(
        network: &Sequential<f32>,
        scheme: LinearScheme,
        data: &ArrayRef2<f32>,
        batch: usize,
        calibration: Calibration,
    ) -> Result<Self> {
        let mut float = fold_batch_norm(network)?;
        float.set_training(false);
        let named = float.named_layers();
        let mut layers: Vec<(String, QuantizedLayer)> = Vec::with_capacity(named.len());
        let in_layer = |name: &str, e: crate::Error| {
            crate::Error::from(CoreError::invalid("layer", format!("`{name}`: {e}")))
        };
        // Which float layer feeds each quantized one (for calibration).
        let mut sources: Vec<Option<usize>> = Vec::with_capacity(named.len());
        for (i, (name, layer)) in named.iter().enumerate() {
            let q = match layer {
                Layer::Conv2d(c) => QuantizedLayer::Conv2d(
                    QuantizedConv2d::from_conv(c, scheme).map_err(|e| in_layer(name, e))?,
                ),
                Layer::Linear(d) => QuantizedLayer::Linear(
                    QuantizedLinear::from_dense(d, scheme).map_err(|e| in_layer(name, e))?,
                ),
                Layer::Activation(Activation::Relu) => {
                    // Fused into the quantized layer just before it, if any.
                    match layers.last_mut() {
                        Some((_, QuantizedLayer::Conv2d(c)))
                            if sources.last() == Some(&Some(i - 1)) =>
                        {
                            c.set_relu(true);
                            continue;
                        }
                        Some((_, QuantizedLayer::Linear(l)))
                            if sources.last() == Some(&Some(i - 1)) =>
                        {
                            l.set_relu(true);
                            continue;
                        }
                        _ => QuantizedLayer::Float(layer.clone()),
                    }
                }
                other => QuantizedLayer::Float(other.clone()),
            };
            sources.push(
                matches!(q, QuantizedLayer::Conv2d(_) | QuantizedLayer::Linear(_)).then_some(i),
            );
            layers.push((name.clone(), q));
        }
        let mut out = QuantizedSequential {
            layers,
            input_shape: network.input_shape().to_vec(),
        };
        if scheme == LinearScheme::W8A8Static {
            out.calibrate(&float, &sources, data, batch, calibration)?;
        }
        Ok(out)
    }

    fn calibrate(
        &mut self,
        float: &Sequential<f32>,
        sources: &[Option<usize>],
        data: &ArrayRef2<f32>,
        batch: usize,
        calibration: Calibration,
    ) -> Result<()> {
        if batch == 0 || data.nrows() == 0 {
            return Err(CoreError::invalid(
                "calibration",
                "need at least one sample and a batch size >= 1",
            )
            .into());
        }
        // observers[i]: the input of float layer i, when a quantized layer starts there.
        let mut observers = float
            .layers()
            .iter()
            .enumerate()
            .map(|(i, _)| {
                sources
                    .contains(&Some(i))
                    .then(|| calibration.observer())
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        for chunk in data.axis_chunks_iter(Axis(0), batch) {
            let mut h = self.input(&chunk)?;
            for (layer, obs) in float.layers().iter().zip(observers.iter_mut()) {
                if let Some(o) = obs {
                    o.observe_dyn(h.view())?;
                }
                h = layer.forward(&h)?;
            }
        }
        for ((_, layer), src) in self.layers.iter_mut().zip(sources) {
            let Some(obs) = src.and_then(|i| observers[i].as_ref()) else {
                continue;
            };
            match layer {
                QuantizedLayer::Conv2d(c) => c.calibrate(obs.as_ref())?,
                QuantizedLayer::Linear(l) => l.calibrate(obs.as_ref())?,
                QuantizedLayer::Float(_) => {}
            }
        }
        Ok(())
    }

    fn input(&self, x: &ArrayRef2<f32>) -> Result<ArrayD<f32>> {
        let mut shape = vec![x.nrows()];
        shape.extend(&self.input_shape);
        Ok(x.as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&shape))
            .map_err(|e| {
                CoreError::invalid(
                    "input",
                    format!(
                        "{e}: rows of {} values expected",
                        self.input_shape.iter().product::<usize>()
                    ),
                )
            })?)
    }

    /// Logits for rows of flattened samples `[batch, input_len]`.
    pub fn predict(&self, x: &ArrayRef2<f32>, par: Par) -> Result<Array2<f32>> {
        let mut h = self.input(x)?;
        for (name, layer) in &self.layers {
            let named = |e: crate::Error| {
                crate::Error::from(CoreError::invalid("layer", format!("`{name}`: {e}")))
            };
            h = match layer {
                QuantizedLayer::Conv2d(c) => {
                    let x4 = h
                        .into_dimensionality::<Ix4>()
                        .map_err(|e| named(CoreError::invalid("input", e.to_string()).into()))?;
                    c.forward(&x4, par).map_err(named)?.into_dyn()
                }
                QuantizedLayer::Linear(l) => {
                    let x2 = h
                        .into_dimensionality::<Ix2>()
                        .map_err(|e| named(CoreError::invalid("input", e.to_string()).into()))?;
                    l.forward(&x2, par).map_err(named)?.into_dyn()
                }
                QuantizedLayer::Float(f) => f.forward(&h).map_err(|e| named(e.into()))?,
            };
        }
        Ok(h.into_dimensionality::<Ix2>()
            .map_err(|e| CoreError::invalid("output", e.to_string()))?)
    }

    /// Builds from named layers for samples of `input_shape` (as [`QuantizedSequential::layers`]
    /// returns them); the layers must chain: an error names the first that does not.
    pub fn from_layers(
        layers: Vec<(String, QuantizedLayer)>,
        input_shape: Vec<usize>,
    ) -> Result<Self> {
        if layers.is_empty() || input_shape.is_empty() {
            return Err(CoreError::Empty {
                what: "quantized network layers",
            }
            .into());
        }
        let mut shape = input_shape.clone();
        for (name, layer) in &layers {
            let named = |e: String| {
                crate::Error::from(CoreError::invalid("layer", format!("`{name}`: {e}")))
            };
            shape = match layer {
                QuantizedLayer::Conv2d(c) => match shape[..] {
                    [ch, h, w] => c
                        .output_shape([ch, h, w])
                        .map_err(|e| named(e.to_string()))?
                        .to_vec(),
                    _ => {
                        return Err(named(format!(
                            "a convolution given samples of shape {shape:?}"
                        )));
                    }
                },
                QuantizedLayer::Linear(l) => {
                    if shape != [l.in_features()] {
                        return Err(named(format!(
                            "takes {} features, given {shape:?}",
                            l.in_features()
                        )));
                    }
                    vec![l.out_features()]
                }
                QuantizedLayer::Float(f) => {
                    f.output_shape(&shape).map_err(|e| named(e.to_string()))?
                }
            };
        }
        if shape.len() != 1 {
            return Err(CoreError::invalid(
                "layers",
                format!("the network ends in shape {shape:?}, not logits"),
            )
            .into());
        }
        Ok(QuantizedSequential {
            layers,
            input_shape,
        })
    }

    /// The layers with their names (fused ReLUs are gone, folded batch norms too).
    pub fn layers(&self) -> &[(String, QuantizedLayer)] {
        &self.layers
    }

    /// Convolutions and linear layers running in integers.
    pub fn integer_layers(&self) -> usize {
        self.layers
            .iter()
            .filter(|(_, l)| !matches!(l, QuantizedLayer::Float(_)))
            .count()
    }

    /// Bytes of weights the kernels read per forward pass (codes and scales).
    pub fn weight_bytes(&self) -> usize {
        self.layers.iter().map(|(_, l)| l.weight_bytes()).sum()
    }
}
