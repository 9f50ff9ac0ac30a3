//! Quantization-aware fine-tuning with a straight-through estimator (STE).

use modelopt_distill::{MlpStudent, Student};
use modelopt_nn::Optimizer;
use modelopt_prune::Mask;
use ndarray::{Array2, ArrayRef2};

use super::WeightFormat;
use crate::Result;

/// A student trained through fake quantization: the forward pass sees quantized weights, the
/// gradient flows to float master weights as if quantization were the identity (the STE of
/// Bengio et al. 2013, as in torch's `FakeQuantize` for weights, whose symmetric abs-max range
/// never clips), and pruning masks are re-applied after every update.
///
/// ```
/// use modelopt::distill::{MlpStudent, Student};
/// use modelopt::nn::{Mlp, Sgd};
/// use modelopt::pipeline::{QatStudent, WeightFormat};
/// use modelopt::ndarray::Array2;
/// let inner = MlpStudent::new(Mlp::<f32>::builder(&[4, 3]).seed(0).build()?, Sgd::builder(0.1).build()?);
/// let mut s = QatStudent::new(inner, WeightFormat::Int4Grouped { group_size: 4 }, vec![None])?;
/// let x = Array2::ones((2, 4));
/// let out = s.forward(&x)?;
/// s.backward(&Array2::ones(out.raw_dim()))?;
/// s.step(0.1)?;
/// // the network holds weights on the int4 grid: at most 15 distinct values per row
/// assert!(s.predict(&x)?.iter().all(|v| v.is_finite()));
/// # Ok::<(), modelopt::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct QatStudent<O> {
    inner: MlpStudent<f32, O>,
    format: WeightFormat,
    masks: Vec<Option<Mask>>,
    master: Vec<Array2<f32>>,
}

impl<O: Optimizer<f32>> QatStudent<O> {
    /// Wraps `inner`; `masks[i]` (if any) is the pruning mask of layer `i`'s weight.
    pub fn new(
        inner: MlpStudent<f32, O>,
        format: WeightFormat,
        masks: Vec<Option<Mask>>,
    ) -> Result<Self> {
        let layers = inner.network.layers().len();
        if masks.len() != layers {
            return Err(modelopt_tensor_core::CoreError::invalid(
                "masks",
                format!("need one entry per layer ({layers}), got {}", masks.len()),
            )
            .into());
        }
        let master = inner
            .network
            .layers()
            .iter()
            .map(|l| l.weight().clone())
            .collect();
        let mut s = QatStudent {
            inner,
            format,
            masks,
            master,
        };
        s.project()?;
        Ok(s)
    }

    /// The network with float master weights (what training improves).
    pub fn into_float(mut self) -> MlpStudent<f32, O> {
        for (layer, w) in self.inner.network.layers_mut().iter_mut().zip(self.master) {
            *layer.weight_mut() = w;
        }
        self.inner
    }

    /// Writes the fake-quantized master weights into the network.
    fn project(&mut self) -> Result<()> {
        for (layer, w) in self.inner.network.layers_mut().iter_mut().zip(&self.master) {
            if let Some(scheme) = self.format.scheme(w.ncols()) {
                *layer.weight_mut() = scheme.quantize(w)?.dequantize();
            }
        }
        Ok(())
    }
}

impl<O: Optimizer<f32>> Student<f32> for QatStudent<O> {
    fn forward(&mut self, x: &ArrayRef2<f32>) -> modelopt_distill::Result<Array2<f32>> {
        self.inner.forward(x)
    }

    fn backward(&mut self, d_outputs: &ArrayRef2<f32>) -> modelopt_distill::Result<()> {
        self.inner.backward(d_outputs)
    }

    fn step(&mut self, learning_rate: f64) -> modelopt_distill::Result<()> {
        // STE: the gradient computed at the quantized weights updates the float master weights.
        for (layer, w) in self.inner.network.layers_mut().iter_mut().zip(&self.master) {
            layer.weight_mut().assign(w);
        }
        self.inner.step(learning_rate)?;
        for ((layer, w), mask) in self
            .inner
            .network
            .layers_mut()
            .iter_mut()
            .zip(&mut self.master)
            .zip(&self.masks)
        {
            if let Some(mask) = mask {
                mask.apply_inplace(&mut layer.weight_mut().view_mut().into_dyn())
                    .map_err(to_distill)?;
            }
            w.assign(layer.weight());
        }
        self.project().map_err(to_distill_any)
    }

    fn predict(&self, x: &ArrayRef2<f32>) -> modelopt_distill::Result<Array2<f32>> {
        self.inner.predict(x)
    }
}

fn to_distill(e: modelopt_prune::PruneError) -> modelopt_distill::DistillError {
    to_distill_any(e.into())
}

/// Carries a facade error through the distill trainer's error type, keeping its message.
fn to_distill_any(e: crate::Error) -> modelopt_distill::DistillError {
    match e {
        crate::Error::Distill(d) => d,
        crate::Error::Core(c) => c.into(),
        other => {
            modelopt_tensor_core::CoreError::invalid("fine-tuning hook", other.to_string()).into()
        }
    }
}
