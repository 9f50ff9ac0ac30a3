//! `QuantizedMlp`: a trained [`Mlp`] converted in one call, calibrated, run in integers.

use modelopt_kernels::Par;
use modelopt_nn::{Activation, Mlp};
use modelopt_quantize::observer::{HistogramObserver, MinMaxObserver, Observer};
use modelopt_tensor_core::CoreError;
use ndarray::{Array2, ArrayRef2, Axis};

use super::{LinearScheme, QuantizedLinear};
use crate::Result;

/// Which observer calibrates the static activation scales (the observers of
/// `modelopt_quantize::observer`).
///
/// ```
/// use modelopt::quantized::Calibration;
/// assert_eq!(Calibration::Percentile(99.99).name(), "percentile-99.99");
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Calibration {
    /// Running min and max.
    MinMax,
    /// Histogram, clip at this percentile of `|x|`.
    Percentile(f64),
    /// Histogram, clip where the quantization MSE is least.
    Mse,
    /// Histogram, clip where the KL divergence is least (TensorRT's entropy calibration).
    Entropy,
}

impl Calibration {
    /// A short name.
    pub fn name(&self) -> String {
        match self {
            Calibration::MinMax => "min-max".into(),
            Calibration::Percentile(p) => format!("percentile-{p}"),
            Calibration::Mse => "mse".into(),
            Calibration::Entropy => "entropy".into(),
        }
    }

    pub(crate) fn observer(&self) -> Result<Box<dyn Observer>> {
        Ok(match *self {
            Calibration::MinMax => Box::new(MinMaxObserver::new()),
            Calibration::Percentile(p) => Box::new(HistogramObserver::percentile(p)?),
            Calibration::Mse => Box::new(HistogramObserver::mse()),
            Calibration::Entropy => Box::new(HistogramObserver::entropy()),
        })
    }
}

/// An [`Mlp`] whose dense layers run in integers ([`QuantizedLinear`]); ReLU is fused into the
/// hidden layers' epilogue, other activations run in f32 between layers.
///
/// ```
/// use modelopt::nn::Mlp;
/// use modelopt::quantized::{Calibration, LinearScheme, QuantizedMlp};
/// use modelopt::kernels::Par;
/// use ndarray::Array2;
/// let mlp = Mlp::<f32>::builder(&[64, 32, 10]).seed(1).build()?;
/// let x = Array2::from_shape_fn((8, 64), |(i, j)| ((i * 7 + j) % 13) as f32 / 13.0);
/// let mut q = QuantizedMlp::from_mlp(&mlp, LinearScheme::W8A8Static)?;
/// q.calibrate(&mlp, &x, 4, Calibration::MinMax)?;
/// let (y, want) = (q.predict(&x, Par::Seq)?, mlp.predict(&x)?);
/// assert!(y.iter().zip(&want).all(|(a, b)| (a - b).abs() < 0.1));
/// # Ok::<(), modelopt::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedMlp {
    pub(crate) layers: Vec<QuantizedLinear>,
    pub(crate) activation: Activation,
}

impl QuantizedMlp {
    /// Converts every dense layer of `mlp` with `scheme` (static W8A8 needs
    /// [`QuantizedMlp::calibrate`] before it runs).
    pub fn from_mlp(mlp: &Mlp<f32>, scheme: LinearScheme) -> Result<Self> {
        let activation = mlp.activation();
        let last = mlp.layers().len() - 1;
        let layers = mlp
            .layers()
            .iter()
            .enumerate()
            .map(|(l, d)| {
                let mut q = QuantizedLinear::from_dense(d, scheme)?;
                q.set_relu(l < last && activation == Activation::Relu);
                Ok(q)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(QuantizedMlp { layers, activation })
    }

    /// Builds from layers (consecutive sizes must chain); ReLU is fused into all but the last
    /// layer when `activation` is ReLU.
    pub fn from_layers(mut layers: Vec<QuantizedLinear>, activation: Activation) -> Result<Self> {
        if layers.is_empty() {
            return Err(CoreError::Empty {
                what: "quantized MLP layers",
            }
            .into());
        }
        for (i, pair) in layers.windows(2).enumerate() {
            if pair[0].out_features() != pair[1].in_features() {
                return Err(CoreError::invalid(
                    "layers",
                    format!(
                        "layer {} takes {} inputs but layer {i} outputs {}",
                        i + 1,
                        pair[1].in_features(),
                        pair[0].out_features()
                    ),
                )
                .into());
            }
        }
        let last = layers.len() - 1;
        for (l, q) in layers.iter_mut().enumerate() {
            q.set_relu(l < last && activation == Activation::Relu);
        }
        Ok(QuantizedMlp { layers, activation })
    }

    /// Feeds `data` (`[samples, in]`, in batches of `batch`) through the float network `float`
    /// (the one this was converted from), observing each layer's input with a fresh observer of
    /// kind `calibration`, and sets every W8A8-static layer's activation scale and zero point.
    /// Layers of other schemes are left as they are.
    pub fn calibrate(
        &mut self,
        float: &Mlp<f32>,
        data: &ArrayRef2<f32>,
        batch: usize,
        calibration: Calibration,
    ) -> Result<()> {
        if float.sizes() != self.sizes() {
            return Err(CoreError::ShapeMismatch {
                expected: self.sizes(),
                found: float.sizes(),
            }
            .into());
        }
        if batch == 0 || data.nrows() == 0 {
            return Err(CoreError::invalid(
                "calibration",
                "need at least one sample and a batch size >= 1",
            )
            .into());
        }
        let mut observers = self
            .layers
            .iter()
            .map(|_| calibration.observer())
            .collect::<Result<Vec<_>>>()?;
        let last = self.layers.len() - 1;
        for chunk in data.axis_chunks_iter(Axis(0), batch) {
            let mut h = chunk.to_owned();
            for (l, layer) in float.layers().iter().enumerate() {
                observers[l].observe_dyn(h.view().into_dyn())?;
                h = layer.forward(&h)?;
                if l < last {
                    float.activation().forward_inplace(&mut h);
                }
            }
        }
        for (layer, obs) in self.layers.iter_mut().zip(&observers) {
            if layer.scheme() == LinearScheme::W8A8Static {
                layer.calibrate(obs.as_ref())?;
            }
        }
        Ok(())
    }

    /// Logits for a batch `[batch, in]`.
    pub fn predict(&self, x: &ArrayRef2<f32>, par: Par) -> Result<Array2<f32>> {
        let last = self.layers.len() - 1;
        let mut h = self.layers[0].forward(x, par)?;
        for (l, layer) in self.layers.iter().enumerate().skip(1) {
            if self.activation != Activation::Relu && l <= last {
                self.activation.forward_inplace(&mut h);
            }
            h = layer.forward(&h, par)?;
        }
        Ok(h)
    }

    /// The layers, first to last.
    pub fn layers(&self) -> &[QuantizedLinear] {
        &self.layers
    }

    /// The hidden activation.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// The layer sizes, input first.
    pub fn sizes(&self) -> Vec<usize> {
        let mut s = vec![self.layers[0].in_features()];
        s.extend(self.layers.iter().map(QuantizedLinear::out_features));
        s
    }

    /// Bytes of weights the kernels read per forward pass (codes and scales).
    pub fn weight_bytes(&self) -> usize {
        self.layers.iter().map(QuantizedLinear::weight_bytes).sum()
    }
}
