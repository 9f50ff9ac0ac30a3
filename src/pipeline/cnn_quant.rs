//! Static quantization of a [`Sequential`] CNN, simulated in f32: weights of every convolution and
//! linear layer quantized per output channel (int8) or in groups along the input (int4), and the
//! input activation of every such layer quantized to int8 with parameters calibrated once on a
//! calibration set by an observer (the second step of the usual post-training recipe: weights, then
//! activations). Fold batch norm first ([`modelopt_nn::fold_batch_norm`]) so the folded weights are
//! what gets quantized.

use modelopt_nn::{Conv2d, Dense, Layer, Sequential};
use modelopt_quantize::observer::Observer;
use modelopt_quantize::{CheckedScheme, QuantParams, QuantScheme};
use ndarray::{Array2, ArrayD, ArrayRef2, Ix2, IxDyn};

use super::WeightFormat;
use crate::Result;

/// A CNN with quantized weights and calibrated int8 input activations for each convolution and
/// linear layer; [`QuantizedCnn::predict`] runs it with both quantizations applied.
///
/// ```
/// use modelopt::nn::{Conv2d, Dense, Init, Layer, Sequential};
/// use modelopt::pipeline::{QuantizedCnn, WeightFormat};
/// use modelopt::quantize::observer::MinMaxObserver;
/// use ndarray::Array2;
/// use rand::SeedableRng;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let net = Sequential::builder(&[1, 6, 6])
///     .push(Layer::Conv2d(Conv2d::<f32>::builder(1, 4, 3).build(&mut rng)?))
///     .push(Layer::Flatten)
///     .push(Layer::Linear(Dense::new(64, 3, Init::HeNormal, &mut rng)?))
///     .build()?;
/// let calibration = Array2::from_shape_fn((8, 36), |(i, j)| ((i * 7 + j) % 11) as f32 / 10.0);
/// let q = QuantizedCnn::calibrate(&net, WeightFormat::Int8PerChannel, &calibration, MinMaxObserver::new)?;
/// let diff = (&q.predict(&calibration)? - &net.predict(&calibration)?).mapv(f32::abs);
/// assert!(diff.iter().all(|&d| d < 0.1));
/// assert!(q.weight_bytes() < 4 * net.parameter_count());
/// # Ok::<(), modelopt::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct QuantizedCnn {
    network: Sequential<f32>,
    inputs: Vec<Option<QuantParams>>,
    activation: CheckedScheme,
    weight_bytes: usize,
}

/// The scheme of the weight of a convolution (viewed as `[out, in * kh * kw]`) or linear layer.
fn weight_scheme(format: WeightFormat, cols: usize) -> Option<Result<CheckedScheme>> {
    format
        .scheme(cols)
        .map(|s| s.check().map_err(crate::Error::from))
}

/// Fake-quantize a weight seen as a matrix `[out, cols]`; returns it and its storage in bytes.
fn quantize_weight(w: &ArrayD<f32>, format: WeightFormat) -> Result<(ArrayD<f32>, usize)> {
    let rows = w.shape()[0];
    let cols = w.len() / rows.max(1);
    let Some(scheme) = weight_scheme(format, cols) else {
        return Ok((w.clone(), 4 * w.len()));
    };
    let scheme = scheme?;
    let m = w
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&[rows, cols]))
        .map_err(|e| modelopt_tensor_core::CoreError::invalid("weight", e.to_string()))?
        .into_dimensionality::<Ix2>()
        .map_err(|e| modelopt_tensor_core::CoreError::invalid("weight", e.to_string()))?;
    let q = scheme.quantize(&m)?;
    let bytes = q.storage_bytes();
    let back = q
        .dequantize()
        .into_shape_with_order(IxDyn(w.shape()))
        .map_err(|e| modelopt_tensor_core::CoreError::invalid("weight", e.to_string()))?;
    Ok((back, bytes))
}

impl QuantizedCnn {
    /// Quantize `network`'s weights in `format` and calibrate the int8 (affine, per tensor, torch's
    /// `quint8` range) input activations of every convolution and linear layer on `calibration`
    /// (rows of flattened samples), one observer per layer made by `observer` (e.g.
    /// `MinMaxObserver::new`, or a histogram observer). Biases stay f32.
    pub fn calibrate<O: Observer>(
        network: &Sequential<f32>,
        format: WeightFormat,
        calibration: &ArrayRef2<f32>,
        mut observer: impl FnMut() -> O,
    ) -> Result<Self> {
        let activation = QuantScheme::torch(false, true).check()?;
        let mut layers = network.named_layers();
        let mut weight_bytes = 0;
        for (_, layer) in layers.iter_mut() {
            match layer {
                Layer::Conv2d(c) => {
                    let (w, bytes) = quantize_weight(&c.weight().clone().into_dyn(), format)?;
                    let w = w.into_dimensionality().map_err(|e| {
                        modelopt_tensor_core::CoreError::invalid("weight", e.to_string())
                    })?;
                    weight_bytes += bytes + 4 * c.bias().map_or(0, |b| b.len());
                    *c = Conv2d::from_parts(w, c.bias().cloned(), *c.window(), c.groups())?;
                }
                Layer::Linear(d) => {
                    let (w, bytes) = quantize_weight(&d.weight().clone().into_dyn(), format)?;
                    let w = w.into_dimensionality().map_err(|e| {
                        modelopt_tensor_core::CoreError::invalid("weight", e.to_string())
                    })?;
                    weight_bytes += bytes + 4 * d.bias().len();
                    *d = Dense::from_parts(w, d.bias().clone())?;
                }
                Layer::BatchNorm2d(b) => weight_bytes += 4 * 4 * b.channels(),
                _ => {}
            }
        }
        let mut net = network.with_layers(layers)?;
        net.set_training(false);
        // Calibration: run the float activations (quantized weights) and observe each input.
        let mut observers: Vec<Option<O>> = net
            .layers()
            .iter()
            .map(|l| matches!(l, Layer::Conv2d(_) | Layer::Linear(_)).then(&mut observer))
            .collect();
        for chunk in calibration.axis_chunks_iter(ndarray::Axis(0), 256) {
            let mut h = chunk.to_owned().into_dyn();
            let mut shape = vec![chunk.nrows()];
            shape.extend(net.input_shape());
            h = h.into_shape_with_order(IxDyn(&shape)).map_err(|e| {
                modelopt_tensor_core::CoreError::invalid("calibration", e.to_string())
            })?;
            for (layer, obs) in net.layers().iter().zip(observers.iter_mut()) {
                if let Some(o) = obs {
                    o.observe(&h)?;
                }
                h = layer.forward(&h)?;
            }
        }
        let inputs = observers
            .iter()
            .map(|o| o.as_ref().map(|o| o.quant_params(&activation)).transpose())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(QuantizedCnn {
            network: net,
            inputs,
            activation,
            weight_bytes,
        })
    }

    /// Logits with quantized weights and int8 input activations of every convolution and linear
    /// layer (values outside the calibrated range saturate).
    pub fn predict(&self, x: &ArrayRef2<f32>) -> Result<Array2<f32>> {
        let mut shape = vec![x.nrows()];
        shape.extend(self.network.input_shape());
        let mut h = x
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&shape))
            .map_err(|e| modelopt_tensor_core::CoreError::invalid("input", e.to_string()))?;
        for (layer, params) in self.network.layers().iter().zip(&self.inputs) {
            if let Some(p) = params {
                h = self.activation.fake_quantize_with(&h, p)?.into_parts().0;
            }
            h = layer.forward(&h)?;
        }
        Ok(h.into_dimensionality::<Ix2>()
            .map_err(|e| modelopt_tensor_core::CoreError::invalid("output", e.to_string()))?)
    }

    /// The network with its weights on the quantization grid (float activations).
    pub fn network(&self) -> &Sequential<f32> {
        &self.network
    }

    /// Bytes to store the weights (codes and scales), biases and batch-norm tensors (f32).
    pub fn weight_bytes(&self) -> usize {
        self.weight_bytes
    }
}
