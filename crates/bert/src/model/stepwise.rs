//! Running the encoder one stage at a time and replacing linear weights: what sequential
//! calibration (GPTQ layer after layer on the already-quantized model's inputs) needs.

use modelopt_tensor_core::Par;
use ndarray::{Array2, ArrayView1, ArrayView2, Axis, s};

use std::ops::Range;

use super::{BertModel, Part};
use crate::{ActivationHook, BertError, Result, TokenBatch};

impl BertModel {
    /// Number of encoder layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// The embeddings' output, i.e. the first encoder layer's input: `[batch.tokens(), hidden]`.
    /// `hidden_states` is this followed by [`layer_output`](Self::layer_output) for every layer.
    pub fn embeddings_output(&self, batch: &TokenBatch, par: Par) -> Result<Array2<f32>> {
        self.check(batch)?;
        let h = self.config.hidden_size;
        let mut x = Array2::<f32>::zeros((batch.tokens(), h));
        if let Some(data) = x.as_slice_mut() {
            par.for_each_chunk_mut(data, h * 256, |i, chunk| {
                for (r, row) in chunk.chunks_mut(h).enumerate() {
                    let t = i * 256 + r;
                    let (w, p, ty) = (
                        self.word.row(batch.ids[t] as usize),
                        self.position.row(batch.positions[t] as usize),
                        self.token_type.row(batch.type_ids[t] as usize),
                    );
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = (w[j] + ty[j]) + p[j]; // Hugging Face's order of the sums
                    }
                    self.emb_ln.apply_row(ndarray::ArrayViewMut1::from(row));
                }
            });
        }
        Ok(x)
    }

    /// Runs encoder layer `i` on its input `x` (`[batch.tokens(), hidden]`, the previous stage's
    /// output), calling `hook` with the inputs of its linear layers.
    pub fn layer_output(
        &self,
        i: usize,
        x: Array2<f32>,
        batch: &TokenBatch,
        par: Par,
        hook: &mut dyn ActivationHook,
    ) -> Result<Array2<f32>> {
        let layer = self.layers.get(i).ok_or_else(|| {
            BertError::Input(format!("layer {i} of a {}-layer model", self.layers.len()))
        })?;
        if x.dim() != (batch.tokens(), self.config.hidden_size) {
            return Err(BertError::Input(format!(
                "layer {i} input of shape {:?}, expected [{}, {}]",
                x.shape(),
                batch.tokens(),
                self.config.hidden_size
            )));
        }
        self.layer(layer, x, batch, par, hook)
    }

    /// Where linear layer `name` lives: its encoder layer, which of its products, and the rows
    /// of that product's weight (query, key and value share one fused `[3H, H]` product).
    fn locate(&self, name: &str) -> Result<(usize, Part, Range<usize>)> {
        let h = self.config.hidden_size;
        for (i, l) in self.layers.iter().enumerate() {
            if let Some(k) = l.qkv_names.iter().position(|n| n == name) {
                return Ok((i, Part::Qkv, k * h..(k + 1) * h));
            }
            for (n, part) in [
                (&l.attn_out_name, Part::AttnOut),
                (&l.inter_name, Part::Inter),
                (&l.out_name, Part::Out),
            ] {
                if n == name {
                    let rows = l.linear(part).weight.nrows();
                    return Ok((i, part, 0..rows));
                }
            }
        }
        Err(BertError::Input(format!("no linear layer named `{name}`")))
    }

    /// The weight `[out, in]` of the linear layer with checkpoint name `name` (one of
    /// [`linear_names`](Self::linear_names)).
    pub fn linear_weight(&self, name: &str) -> Result<ArrayView2<'_, f32>> {
        let (l, part, rows) = self.locate(name)?;
        Ok(self.layers[l].linear(part).weight.slice(s![rows, ..]))
    }

    /// The bias of the linear layer whose weight is `name` (one of
    /// [`linear_names`](Self::linear_names)).
    pub fn linear_bias(&self, name: &str) -> Result<ArrayView1<'_, f32>> {
        let (l, part, rows) = self.locate(name)?;
        Ok(self.layers[l].linear(part).bias.slice(s![rows]))
    }

    /// Replaces the weight of linear layer `name` (e.g. by its quantized-dequantized values);
    /// the layer then runs in f32 (an integer kernel it had is dropped). Errors on an unknown
    /// name, a shape other than the current weight's, or a non-finite value.
    pub fn set_linear_weight(&mut self, name: &str, w: ArrayView2<'_, f32>) -> Result<()> {
        let current = self.linear_weight(name)?.dim();
        if w.dim() != current {
            return Err(BertError::Input(format!(
                "`{name}`: new weight of shape {:?}, expected {current:?}",
                w.shape()
            )));
        }
        if let Some(i) = w.iter().position(|v| !v.is_finite()) {
            return Err(BertError::Input(format!(
                "`{name}`: non-finite value at element {i}"
            )));
        }
        let (l, part, rows) = self.locate(name)?;
        let lin = self.layers[l].linear_mut(part);
        lin.weight.slice_mut(s![rows, ..]).assign(&w);
        lin.kernel = None;
        Ok(())
    }

    /// The linear layer whose output channels are, scaled per channel, the input channels of
    /// linear layer `name` and feed nothing else, if there is one: the value projection for an
    /// attention output projection (the attention context is, per head, a weighted sum of the
    /// value rows). A post-LayerNorm BERT has no such producer for query/key/value (their
    /// LayerNorm's output is also the residual) nor for the FFN layers (GELU between them is
    /// not homogeneous). This is where AWQ's input scales can be folded exactly.
    pub fn input_producer(&self, name: &str) -> Option<&str> {
        self.layers
            .iter()
            .find(|l| l.attn_out_name == name)
            .map(|l| l.qkv_names[2].as_str())
    }

    /// Rescales the input channels of linear layer `name` without changing what the model
    /// computes (up to rounding): its weight's column `j` is multiplied by `s[j]` and the
    /// producer's ([`input_producer`](Self::input_producer)) weight row `j` and bias `j` are
    /// divided by it. Returns the producer's name. Errors on a layer without a producer, a
    /// length other than the layer's input width, or a scale that is not finite and positive.
    pub fn scale_linear_input(
        &mut self,
        name: &str,
        scales: ArrayView1<'_, f32>,
    ) -> Result<String> {
        let producer = self
            .input_producer(name)
            .ok_or_else(|| {
                BertError::Input(format!(
                    "`{name}`: its input comes from no linear layer alone, so it cannot be rescaled"
                ))
            })?
            .to_string();
        let cols = self.linear_weight(name)?.ncols();
        if scales.len() != cols {
            return Err(BertError::Input(format!(
                "`{name}`: {} input scales for {cols} input channels",
                scales.len()
            )));
        }
        if let Some(j) = scales.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(BertError::Input(format!(
                "`{name}`: input scale {j} is {}, not finite and positive",
                scales[j]
            )));
        }
        let h = self.config.hidden_size;
        let l = self
            .layers
            .iter_mut()
            .find(|l| l.attn_out_name == name)
            .ok_or_else(|| BertError::Input(format!("no linear layer named `{name}`")))?;
        l.attn_out.weight *= &scales.insert_axis(Axis(0));
        l.attn_out.kernel = None;
        let mut rows = l.qkv.weight.slice_mut(s![2 * h..3 * h, ..]);
        rows /= &scales.insert_axis(Axis(1));
        let mut bias = l.qkv.bias.slice_mut(s![2 * h..3 * h]);
        bias /= &scales;
        l.qkv.kernel = None;
        Ok(producer)
    }
}
