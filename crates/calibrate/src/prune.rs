//! SparseGPT over a BERT encoder: every linear layer pruned with weight reconstruction on its
//! calibration inputs, layer after layer (each on the inputs the already-pruned layers
//! produce), as the reference prunes OPT and LLaMA.

use std::collections::BTreeMap;

use modelopt_bert::{BertModel, TokenBatch};
use modelopt_quantize::gptq::{Gptq, GptqReport, Sparsity};
use modelopt_tensor_core::Par;
use ndarray::Array2;

use crate::sequential::layer_by_layer;
use crate::{CalibrateError, Result};

/// One pruned weight.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PrunedTensor {
    /// The pruned and reconstructed weight `[out, in]`.
    pub weights: Array2<f32>,
    /// Weights set to zero.
    pub pruned: usize,
    /// Dampening, dead columns, loss.
    pub report: GptqReport,
}

/// The result of [`SparseGptPruner::prune`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Pruning {
    /// The pruned weights by checkpoint name.
    pub tensors: BTreeMap<String, PrunedTensor>,
    /// Calibration tokens per layer input.
    pub tokens: usize,
}

/// SparseGPT settings for a whole model (a builder). The GPTQ settings give the dampening and
/// block size; activation order is not used.
///
/// ```no_run
/// use modelopt_bert::SentenceEncoder;
/// use modelopt_calibrate::{SparseGptPruner, batches};
/// use modelopt_quantize::gptq::Sparsity;
///
/// let enc = SentenceEncoder::from_dir("minilm")?;
/// let b = batches(enc.tokenizer(), &["A sentence.", "Another one."])?;
/// let mut model = enc.model().clone();
/// let pruned = SparseGptPruner::new(Sparsity::NM { n: 2, m: 4 }).prune(&mut model, &b)?;
/// println!("{} layers pruned", pruned.tensors.len());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SparseGptPruner {
    sparsity: Sparsity,
    gptq: Gptq,
    par: Par,
}

impl SparseGptPruner {
    /// Prunes to `sparsity` with GPTQ's default dampening and block size, sequentially.
    pub fn new(sparsity: Sparsity) -> Self {
        SparseGptPruner {
            sparsity,
            gptq: Gptq::new(),
            par: Par::Seq,
        }
    }

    /// Dampening and block size.
    pub fn gptq(mut self, gptq: Gptq) -> Self {
        self.gptq = gptq;
        self
    }

    /// Threads for the forward passes and the per-layer pruning.
    pub fn par(mut self, par: Par) -> Self {
        self.par = par;
        self
    }

    /// Prunes every linear layer of `model` on `batches`, layer after layer; `model`'s linear
    /// weights are replaced by the pruned ones on the way. Errors on no batch, non-finite
    /// activations, a bad sparsity for a layer's width, or a Hessian that stays indefinite
    /// (each naming the layer).
    pub fn prune(&self, model: &mut BertModel, batches: &[TokenBatch]) -> Result<Pruning> {
        let settings = |source| CalibrateError::Quant {
            layer: "settings".into(),
            source,
        };
        let gptq = self.gptq.check().map_err(settings)?;
        let mut tensors = BTreeMap::new();
        let tokens = layer_by_layer(model, batches, self.par, |model, inputs| {
            let names = inputs.order();
            let weights: Vec<Array2<f32>> = names
                .iter()
                .map(|n| model.linear_weight(n).map(|w| w.to_owned()))
                .collect::<std::result::Result<_, _>>()?;
            let results = self.par.map_range(names.len(), |k| {
                let quant = |source| CalibrateError::Quant {
                    layer: names[k].clone(),
                    source,
                };
                let h = inputs.stats(&names[k]).finish().map_err(quant)?;
                gptq.prune(&weights[k], &h, self.sparsity).map_err(quant)
            });
            for (name, r) in names.iter().zip(results) {
                let out = r?;
                model.set_linear_weight(name, out.weights.view())?;
                tensors.insert(
                    name.clone(),
                    PrunedTensor {
                        weights: out.weights,
                        pruned: out.pruned,
                        report: out.report,
                    },
                );
            }
            Ok(())
        })?;
        Ok(Pruning { tensors, tokens })
    }
}
