//! The sequential driver of calibration: the token states of all calibration batches are kept
//! between layers; each encoder layer runs once with a hook collecting the input statistics of
//! its linear layers, a step changes the layer (quantizes or prunes its weights), and the
//! changed layer runs again to give the next layer its inputs.

use std::collections::BTreeMap;

use modelopt_bert::{ActivationHook, BertModel, TokenBatch};
use modelopt_quantize::QuantError;
use modelopt_quantize::gptq::HessianAccumulator;
use modelopt_tensor_core::Par;
use ndarray::ArrayView2;

use crate::{CalibrateError, Result};

/// The inputs of one encoder layer's linear layers over all calibration batches: one
/// [`HessianAccumulator`] per distinct input (query, key and value share theirs).
#[derive(Debug, Default)]
pub struct LayerInputs {
    stats: Vec<HessianAccumulator>,
    /// Weight name -> index into `stats`.
    input_of: BTreeMap<String, usize>,
    /// Weight names in the order first seen.
    order: Vec<String>,
    /// (pointer, rows, cols, stats index) of the previous call's input in this batch.
    last: Option<(usize, usize, usize, usize)>,
    error: Option<(String, QuantError)>,
}

impl LayerInputs {
    /// The layer's linear weights in the order the forward pass reads them.
    pub fn order(&self) -> &[String] {
        &self.order
    }

    /// The input statistics of linear layer `name` (one of [`order`](Self::order)).
    ///
    /// # Panics
    /// On a name not in [`order`](Self::order) (a bug of the caller, not an input error).
    pub fn stats(&self, name: &str) -> &HessianAccumulator {
        &self.stats[self.input_of[name]]
    }

    /// The names of the layers that read the same input as `name` (itself included), in order.
    pub fn sharing(&self, name: &str) -> Vec<&str> {
        let i = self.input_of.get(name);
        self.order
            .iter()
            .filter(|n| self.input_of.get(n.as_str()) == i)
            .map(String::as_str)
            .collect()
    }
}

/// Runs `step` on every encoder layer of `model` in order, each time with the statistics of
/// the layer's linear inputs as the model so far (already changed by the earlier steps)
/// produces them over `batches`; returns the calibration tokens per layer input. Errors on no
/// batch, non-finite activations (a diverging model, named by layer), or an error of `step`.
pub fn layer_by_layer<F>(
    model: &mut BertModel,
    batches: &[TokenBatch],
    par: Par,
    mut step: F,
) -> Result<usize>
where
    F: FnMut(&mut BertModel, &LayerInputs) -> Result<()>,
{
    if batches.iter().all(|b| b.is_empty()) {
        return Err(CalibrateError::Input("no calibration text".into()));
    }
    let mut xs = batches
        .iter()
        .map(|b| model.embeddings_output(b, par))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    for l in 0..model.num_layers() {
        let mut hook = LayerInputs::default();
        for (b, x) in batches.iter().zip(&xs) {
            hook.last = None;
            model.layer_output(l, x.clone(), b, par, &mut hook)?;
        }
        if let Some((layer, source)) = hook.error.take() {
            return Err(CalibrateError::Quant { layer, source });
        }
        step(model, &hook)?;
        let mut none = |_: &str, _: ArrayView2<'_, f32>| {};
        xs = batches
            .iter()
            .zip(xs)
            .map(|(b, x)| model.layer_output(l, x, b, par, &mut none))
            .collect::<std::result::Result<Vec<_>, _>>()?;
    }
    Ok(batches.iter().map(TokenBatch::tokens).sum())
}

impl ActivationHook for LayerInputs {
    fn linear_input(&mut self, name: &str, x: ArrayView2<'_, f32>) {
        if self.error.is_some() {
            return;
        }
        let key = (x.as_ptr() as usize, x.nrows(), x.ncols());
        let idx = match (self.input_of.get(name), self.last) {
            (Some(&i), _) => i,
            (None, Some((p, r, c, i))) if (p, r, c) == key => i,
            (None, _) => {
                self.stats.push(HessianAccumulator::new(x.ncols()));
                self.stats.len() - 1
            }
        };
        if !self.input_of.contains_key(name) {
            self.input_of.insert(name.to_string(), idx);
            self.order.push(name.to_string());
        }
        // Same rows as the previous call of this batch (a shared input): already added.
        let shared = matches!(self.last, Some((p, r, c, i)) if (p, r, c) == key && i == idx);
        self.last = Some((key.0, key.1, key.2, idx));
        if shared {
            return;
        }
        if let Err(e) = self.stats[idx].add_batch(&x) {
            self.error = Some((name.to_string(), e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn hook_shares_one_accumulator_between_layers_reading_the_same_rows() {
        let mut hook = LayerInputs::default();
        for _batch in 0..2 {
            let x = array![[1.0f32, 2.0], [3.0, -1.0]];
            let y = array![[0.5f32, 0.5, 1.0]];
            for n in ["q", "k", "v"] {
                hook.linear_input(n, x.view());
            }
            hook.linear_input("o", y.view());
        }
        assert_eq!(hook.order, ["q", "k", "v", "o"]);
        assert_eq!(hook.stats.len(), 2);
        assert_eq!(hook.input_of["k"], hook.input_of["q"]);
        // Each batch counted once for the shared input: 2 batches x 2 tokens.
        assert_eq!(hook.stats[hook.input_of["v"]].samples(), 4);
        assert_eq!(hook.stats[hook.input_of["o"]].samples(), 2);
        assert!(hook.error.is_none());
    }

    #[test]
    fn hook_reports_non_finite_activations_by_layer() {
        let mut hook = LayerInputs::default();
        hook.linear_input("a", array![[1.0f32, f32::NAN]].view());
        let (layer, e) = hook.error.expect("an error");
        assert_eq!(layer, "a");
        assert!(e.to_string().contains("non-finite"), "{e}");
    }
}
