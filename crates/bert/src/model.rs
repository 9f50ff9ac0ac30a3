//! The BERT encoder: weights from a checkpoint, forward pass over a packed token batch.

use std::collections::HashMap;
use std::path::Path;

use modelopt_io::Checkpoint;
use modelopt_tensor_core::Par;
use ndarray::{Array1, Array2, ArrayView2, Axis, concatenate, s};

use crate::execution::StoredWeight;
use crate::layers::{LayerNorm, Linear, softmax_rows};

mod stepwise;
use crate::{ActivationHook, BertConfig, BertError, Execution, Result, TokenBatch};

/// One encoder layer. Query, key and value are one fused product (`[3H, H]` weight), their
/// three checkpoint names kept for the hooks.
#[derive(Debug, Clone)]
struct Layer {
    qkv: Linear,
    qkv_names: [String; 3],
    attn_out: Linear,
    attn_out_name: String,
    attn_ln: LayerNorm,
    inter: Linear,
    inter_name: String,
    out: Linear,
    out_name: String,
    out_ln: LayerNorm,
}

/// One of an encoder layer's products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Query, key and value fused.
    Qkv,
    /// The attention output projection.
    AttnOut,
    /// The feed-forward's first layer.
    Inter,
    /// The feed-forward's second layer.
    Out,
}

impl Layer {
    fn linear(&self, part: Part) -> &Linear {
        match part {
            Part::Qkv => &self.qkv,
            Part::AttnOut => &self.attn_out,
            Part::Inter => &self.inter,
            Part::Out => &self.out,
        }
    }

    fn linear_mut(&mut self, part: Part) -> &mut Linear {
        match part {
            Part::Qkv => &mut self.qkv,
            Part::AttnOut => &mut self.attn_out,
            Part::Inter => &mut self.inter,
            Part::Out => &mut self.out,
        }
    }
}

/// A BERT encoder (Hugging Face `BertModel` without the pooler): embeddings (word + position +
/// token type, LayerNorm), `num_hidden_layers` layers of multi-head self-attention and GELU
/// feed-forward with residual LayerNorms.
///
/// Weights come from any [`Checkpoint`] (safetensors or GGUF, plain or quantized) under Hugging
/// Face's names, with or without a `bert.` prefix. Quantized linear weights run in integers
/// where `modelopt-kernels` has a kernel for their stored format, the rest dequantized once at
/// load ([`Execution`] chooses; [`BertModel::linear_kernels`] tells what runs). The forward pass runs on a [`TokenBatch`] (real tokens only), in parallel as
/// [`Par`] allows, with the same results for any thread count.
///
/// ```no_run
/// use modelopt_bert::{BertConfig, BertModel, TokenBatch};
/// use modelopt_tensor_core::Par;
/// let config = BertConfig::from_file("minilm/config.json")?;
/// let model = BertModel::from_file(config, "minilm/model.safetensors")?;
/// let mut batch = TokenBatch::new();
/// batch.push(&[101, 7592, 2088, 102], &[0; 4])?;
/// let embeddings = model.embed(&batch, Par::Seq)?; // [1, 384], unit length
/// # Ok::<(), modelopt_bert::BertError>(())
/// ```
#[derive(Debug, Clone)]
pub struct BertModel {
    config: BertConfig,
    word: Array2<f32>,
    position: Array2<f32>,
    token_type: Array2<f32>,
    emb_ln: LayerNorm,
    layers: Vec<Layer>,
}

/// Reads named tensors of the expected shapes from a checkpoint.
struct Loader<'a> {
    ckpt: &'a Checkpoint,
    shapes: HashMap<String, (Vec<usize>, bool)>,
    prefix: &'static str,
    execution: Execution,
}

impl Loader<'_> {
    fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = self.name(name);
        let err = |problem: String| BertError::Weight {
            path: self.ckpt.path().to_path_buf(),
            tensor: full.clone(),
            problem,
        };
        let (found, is_float) = self
            .shapes
            .get(&full)
            .ok_or_else(|| err("missing from the weights file".into()))?;
        if !is_float {
            return Err(err("not a float or quantized tensor".into()));
        }
        if found.as_slice() != shape {
            return Err(err(format!("shape {found:?}, the config needs {shape:?}")));
        }
        let values = self.ckpt.tensor_f32(&full)?;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(err(format!(
                "non-finite value {} at element {i}",
                values[i]
            )));
        }
        Ok(values)
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Array2<f32>> {
        let v = self.tensor(name, &[rows, cols])?;
        Array2::from_shape_vec((rows, cols), v).map_err(|e| BertError::Input(e.to_string()))
    }

    fn vector(&self, name: &str, len: usize) -> Result<Array1<f32>> {
        Ok(Array1::from(self.tensor(name, &[len])?))
    }

    /// Linear layer `name` with f32 weights only.
    fn linear_f32(&self, name: &str, out: usize, inp: usize) -> Result<Linear> {
        Ok(Linear {
            weight: self.matrix(&format!("{name}.weight"), out, inp)?,
            bias: self.vector(&format!("{name}.bias"), out)?,
            kernel: None,
        })
    }

    /// Linear layer `name`, with its integer kernel as the execution mode asks.
    fn linear(&self, name: &str, out: usize, inp: usize) -> Result<Linear> {
        let mut lin = self.linear_f32(name, out, inp)?;
        let stored = match self.execution {
            Execution::Stored => self.read_stored(name)?,
            _ => None,
        };
        self.attach(&mut lin, stored)?;
        Ok(lin)
    }

    /// The stored form of linear layer `name`'s weight, if a kernel runs it.
    fn read_stored(&self, name: &str) -> Result<Option<StoredWeight>> {
        StoredWeight::read(self.ckpt, &self.name(&format!("{name}.weight")))
    }

    /// Gives `lin` its kernel: the one of `stored`, or for [`Execution::Int8Dynamic`] its f32
    /// weight quantized to int8.
    fn attach(&self, lin: &mut Linear, stored: Option<StoredWeight>) -> Result<()> {
        let stored = match self.execution {
            Execution::Int8Dynamic => lin
                .weight
                .as_slice()
                .map(|w| StoredWeight::int8_per_channel(w, lin.weight.ncols())),
            _ => stored,
        };
        if let Some(w) = stored {
            let bias = lin
                .bias
                .as_slice()
                .ok_or_else(|| BertError::Input("bias not contiguous".into()))?;
            lin.kernel = Some(w.kernel(lin.weight.nrows(), lin.weight.ncols(), bias)?);
        }
        Ok(())
    }

    fn layer_norm(&self, name: &str, width: usize, eps: f32) -> Result<LayerNorm> {
        Ok(LayerNorm {
            gamma: self.vector(&format!("{name}.weight"), width)?,
            beta: self.vector(&format!("{name}.bias"), width)?,
            eps,
        })
    }
}

impl BertModel {
    /// Opens a weights file (safetensors or GGUF) and loads the encoder.
    ///
    /// ```no_run
    /// # use modelopt_bert::{BertConfig, BertModel};
    /// let config = BertConfig::from_file("minilm/config.json")?;
    /// let q8 = BertModel::from_file(config, "minilm-q8_0.gguf")?;
    /// # Ok::<(), modelopt_bert::BertError>(())
    /// ```
    pub fn from_file(config: BertConfig, path: impl AsRef<Path>) -> Result<Self> {
        Self::from_checkpoint(config, &Checkpoint::open(path)?)
    }

    /// [`from_file`](Self::from_file) with the linear layers run as `execution` says.
    ///
    /// ```no_run
    /// # use modelopt_bert::{BertConfig, BertModel, Execution};
    /// let config = BertConfig::from_file("minilm/config.json")?;
    /// let reference = BertModel::from_file_with(config, "minilm-q4_0.gguf", Execution::Float)?;
    /// # Ok::<(), modelopt_bert::BertError>(())
    /// ```
    pub fn from_file_with(
        config: BertConfig,
        path: impl AsRef<Path>,
        execution: Execution,
    ) -> Result<Self> {
        Self::from_checkpoint_with(config, &Checkpoint::open(path)?, execution)
    }

    /// Loads the encoder's tensors from an open checkpoint, checking every shape against the
    /// config. A missing tensor, a wrong shape or a non-finite weight is an error naming the
    /// file and the tensor.
    ///
    /// ```no_run
    /// # use modelopt_bert::{BertConfig, BertModel};
    /// let ckpt = modelopt_io::Checkpoint::open("minilm/model.safetensors")?;
    /// let model = BertModel::from_checkpoint(BertConfig::from_file("minilm/config.json")?, &ckpt)?;
    /// # Ok::<(), modelopt_bert::BertError>(())
    /// ```
    pub fn from_checkpoint(config: BertConfig, ckpt: &Checkpoint) -> Result<Self> {
        Self::from_checkpoint_with(config, ckpt, Execution::default())
    }

    /// [`from_checkpoint`](Self::from_checkpoint) with the linear layers run as `execution`
    /// says.
    ///
    /// ```no_run
    /// # use modelopt_bert::{BertConfig, BertModel, Execution};
    /// let ckpt = modelopt_io::Checkpoint::open("minilm/model.safetensors")?;
    /// let config = BertConfig::from_file("minilm/config.json")?;
    /// let model = BertModel::from_checkpoint_with(config, &ckpt, Execution::Int8Dynamic)?;
    /// # Ok::<(), modelopt_bert::BertError>(())
    /// ```
    pub fn from_checkpoint_with(
        config: BertConfig,
        ckpt: &Checkpoint,
        execution: Execution,
    ) -> Result<Self> {
        let shapes: HashMap<String, (Vec<usize>, bool)> = ckpt
            .tensors()
            .into_iter()
            .map(|t| {
                let float = t.is_float();
                (t.info.name, (t.info.shape, float))
            })
            .collect();
        let word_name = "embeddings.word_embeddings.weight";
        let prefix = if !shapes.contains_key(word_name)
            && shapes.contains_key(&format!("bert.{word_name}"))
        {
            "bert."
        } else {
            ""
        };
        let l = Loader {
            ckpt,
            shapes,
            prefix,
            execution,
        };
        let c = &config;
        let (h, f, eps) = (c.hidden_size, c.intermediate_size, c.layer_norm_eps);
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let (q, k, v) = (
                l.linear_f32(&format!("{p}.attention.self.query"), h, h)?,
                l.linear_f32(&format!("{p}.attention.self.key"), h, h)?,
                l.linear_f32(&format!("{p}.attention.self.value"), h, h)?,
            );
            let cat = |a: [&Array2<f32>; 3]| {
                concatenate(Axis(0), &[a[0].view(), a[1].view(), a[2].view()])
            };
            let mut qkv = Linear {
                weight: cat([&q.weight, &k.weight, &v.weight])
                    .map_err(|e| BertError::Input(e.to_string()))?,
                bias: concatenate(Axis(0), &[q.bias.view(), k.bias.view(), v.bias.view()])
                    .map_err(|e| BertError::Input(e.to_string()))?,
                kernel: None,
            };
            // One integer product for the three when they are stored alike.
            let stacked = match l.execution {
                Execution::Stored => {
                    let read = |part: &str| l.read_stored(&format!("{p}.attention.self.{part}"));
                    StoredWeight::stack([read("query")?, read("key")?, read("value")?])
                }
                _ => None,
            };
            l.attach(&mut qkv, stacked)?;
            let weight_name = |part: &str| l.name(&format!("{p}.{part}.weight"));
            layers.push(Layer {
                qkv,
                qkv_names: [
                    weight_name("attention.self.query"),
                    weight_name("attention.self.key"),
                    weight_name("attention.self.value"),
                ],
                attn_out: l.linear(&format!("{p}.attention.output.dense"), h, h)?,
                attn_out_name: weight_name("attention.output.dense"),
                attn_ln: l.layer_norm(&format!("{p}.attention.output.LayerNorm"), h, eps)?,
                inter: l.linear(&format!("{p}.intermediate.dense"), f, h)?,
                inter_name: weight_name("intermediate.dense"),
                out: l.linear(&format!("{p}.output.dense"), h, f)?,
                out_name: weight_name("output.dense"),
                out_ln: l.layer_norm(&format!("{p}.output.LayerNorm"), h, eps)?,
            });
        }
        Ok(BertModel {
            word: l.matrix(word_name, c.vocab_size, h)?,
            position: l.matrix(
                "embeddings.position_embeddings.weight",
                c.max_position_embeddings,
                h,
            )?,
            token_type: l.matrix(
                "embeddings.token_type_embeddings.weight",
                c.type_vocab_size,
                h,
            )?,
            emb_ln: l.layer_norm("embeddings.LayerNorm", h, eps)?,
            layers,
            config,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// How each linear layer runs, by checkpoint weight name in hook order: `"f32"` or the
    /// integer kernel (`"W8A8 (...)"`, `"Q4_0 x 8-bit activation blocks"`, ...).
    ///
    /// ```no_run
    /// # let model: modelopt_bert::BertModel = todo!();
    /// let integer = model.linear_kernels().iter().filter(|(_, k)| k != "f32").count();
    /// ```
    pub fn linear_kernels(&self) -> Vec<(String, String)> {
        let name = |lin: &Linear| {
            lin.kernel
                .as_ref()
                .map_or_else(|| "f32".to_string(), |k| k.name())
        };
        self.layers
            .iter()
            .flat_map(|l| {
                let qkv = l.qkv_names.iter().map(|n| (n.clone(), name(&l.qkv)));
                qkv.chain([
                    (l.attn_out_name.clone(), name(&l.attn_out)),
                    (l.inter_name.clone(), name(&l.inter)),
                    (l.out_name.clone(), name(&l.out)),
                ])
                .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Checkpoint names of the weights of every linear layer, in the order the hooks see them.
    ///
    /// ```no_run
    /// # let model: modelopt_bert::BertModel = todo!();
    /// assert_eq!(model.linear_names()[0], "encoder.layer.0.attention.self.query.weight");
    /// ```
    pub fn linear_names(&self) -> Vec<&str> {
        self.layers
            .iter()
            .flat_map(|l| {
                l.qkv_names
                    .iter()
                    .chain([&l.attn_out_name, &l.inter_name, &l.out_name])
                    .map(String::as_str)
            })
            .collect()
    }

    /// The last hidden states, one row per token of the batch: `[batch.tokens(), hidden_size]`.
    ///
    /// ```no_run
    /// # let (model, batch): (modelopt_bert::BertModel, modelopt_bert::TokenBatch) = todo!();
    /// let h = model.hidden_states(&batch, modelopt_tensor_core::Par::Seq)?;
    /// let first_sentence = h.slice(ndarray::s![batch.range(0), ..]);
    /// # Ok::<(), modelopt_bert::BertError>(())
    /// ```
    pub fn hidden_states(&self, batch: &TokenBatch, par: Par) -> Result<Array2<f32>> {
        self.run(batch, par, &mut |_: &str, _: ArrayView2<'_, f32>| {})
    }

    /// [`hidden_states`](Self::hidden_states), calling `hook` with the input of every linear
    /// layer (see [`ActivationHook`]).
    ///
    /// ```no_run
    /// # let (model, batch): (modelopt_bert::BertModel, modelopt_bert::TokenBatch) = todo!();
    /// let mut stats = modelopt_bert::SquaredSums::default();
    /// model.hidden_states_with_hook(&batch, modelopt_tensor_core::Par::Seq, &mut stats)?;
    /// # Ok::<(), modelopt_bert::BertError>(())
    /// ```
    pub fn hidden_states_with_hook(
        &self,
        batch: &TokenBatch,
        par: Par,
        hook: &mut dyn ActivationHook,
    ) -> Result<Array2<f32>> {
        self.run(batch, par, hook)
    }

    /// Sentence embeddings as sentence-transformers computes them for all-MiniLM-L6-v2: the
    /// mean of each sentence's token states, L2-normalised. `[batch.len(), hidden_size]`.
    ///
    /// ```no_run
    /// # let (model, batch): (modelopt_bert::BertModel, modelopt_bert::TokenBatch) = todo!();
    /// let e = model.embed(&batch, modelopt_tensor_core::Par::all_cores())?;
    /// # Ok::<(), modelopt_bert::BertError>(())
    /// ```
    pub fn embed(&self, batch: &TokenBatch, par: Par) -> Result<Array2<f32>> {
        Ok(mean_pool_normalize(&self.hidden_states(batch, par)?, batch))
    }

    /// [`embed`](Self::embed) with an [`ActivationHook`].
    ///
    /// ```no_run
    /// # let (model, batch): (modelopt_bert::BertModel, modelopt_bert::TokenBatch) = todo!();
    /// let mut rows = 0;
    /// model.embed_with_hook(&batch, modelopt_tensor_core::Par::Seq, &mut |_: &str, x: ndarray::ArrayView2<f32>| rows += x.nrows())?;
    /// # Ok::<(), modelopt_bert::BertError>(())
    /// ```
    pub fn embed_with_hook(
        &self,
        batch: &TokenBatch,
        par: Par,
        hook: &mut dyn ActivationHook,
    ) -> Result<Array2<f32>> {
        Ok(mean_pool_normalize(&self.run(batch, par, hook)?, batch))
    }

    fn check(&self, batch: &TokenBatch) -> Result<()> {
        let c = &self.config;
        let checks = [
            (&batch.ids, c.vocab_size, "token id", "vocab_size"),
            (
                &batch.type_ids,
                c.type_vocab_size,
                "token type",
                "type_vocab_size",
            ),
            (
                &batch.positions,
                c.max_position_embeddings,
                "position",
                "max_position_embeddings",
            ),
        ];
        for (values, limit, what, key) in checks {
            if let Some(i) = values.iter().position(|&v| v as usize >= limit) {
                let s = batch.starts.partition_point(|&st| st <= i) - 1;
                return Err(BertError::Input(format!(
                    "sentence {s}: {what} {} is not below the model's {key} {limit}",
                    values[i]
                )));
            }
        }
        Ok(())
    }

    fn run(
        &self,
        batch: &TokenBatch,
        par: Par,
        hook: &mut dyn ActivationHook,
    ) -> Result<Array2<f32>> {
        let mut x = self.embeddings_output(batch, par)?;
        for layer in &self.layers {
            x = self.layer(layer, x, batch, par, hook)?;
        }
        Ok(x)
    }

    fn layer(
        &self,
        l: &Layer,
        x: Array2<f32>,
        batch: &TokenBatch,
        par: Par,
        hook: &mut dyn ActivationHook,
    ) -> Result<Array2<f32>> {
        for name in &l.qkv_names {
            hook.linear_input(name, x.view());
        }
        let qkv = l.qkv.forward(x.view(), par, |_, _| {})?;
        let ctx = self.attention(&qkv, batch, par)?;
        hook.linear_input(&l.attn_out_name, ctx.view());
        let a = l.attn_out.forward(ctx.view(), par, |r0, mut tile| {
            let n = tile.nrows();
            tile += &x.slice(s![r0..r0 + n, ..]);
            l.attn_ln.apply(tile);
        })?;
        drop(x);
        hook.linear_input(&l.inter_name, a.view());
        let act = self.config.hidden_act;
        let inter = l.inter.forward(a.view(), par, |_, mut tile| {
            tile.mapv_inplace(|v| act.apply(v))
        })?;
        hook.linear_input(&l.out_name, inter.view());
        l.out.forward(inter.view(), par, |r0, mut tile| {
            let n = tile.nrows();
            tile += &a.slice(s![r0..r0 + n, ..]);
            l.out_ln.apply(tile);
        })
    }

    /// Multi-head self-attention of each sentence over its own tokens (the packed batch has no
    /// padding, so no mask), sentences in parallel.
    fn attention(&self, qkv: &Array2<f32>, batch: &TokenBatch, par: Par) -> Result<Array2<f32>> {
        let (h, heads, d) = (
            self.config.hidden_size,
            self.config.num_attention_heads,
            self.config.head_dim(),
        );
        let scale = 1.0 / (d as f32).sqrt();
        let per_sentence = par.map_range(batch.len(), |s| -> Result<Array2<f32>> {
            let rows = batch.range(s);
            let n = rows.len();
            let part = qkv.slice(s![rows, ..]);
            let mut ctx = Array2::<f32>::zeros((n, h));
            let mut scores = Array2::<f32>::zeros((n, n));
            for head in 0..heads {
                let c = head * d;
                let q = part.slice(s![.., c..c + d]);
                let k = part.slice(s![.., h + c..h + c + d]);
                let v = part.slice(s![.., 2 * h + c..2 * h + c + d]);
                modelopt_nn::matmul(scale, &q, &k.t(), 0.0, &mut scores)?;
                softmax_rows(scores.view_mut());
                modelopt_nn::matmul(1.0, &scores, &v, 0.0, &mut ctx.slice_mut(s![.., c..c + d]))?;
            }
            Ok(ctx)
        });
        let mut out = Array2::<f32>::zeros((batch.tokens(), h));
        for (s, ctx) in per_sentence.into_iter().enumerate() {
            out.slice_mut(s![batch.range(s), ..]).assign(&ctx?);
        }
        Ok(out)
    }
}

/// Mean of each sentence's rows of `hidden`, divided by its L2 norm (norm floored at 1e-12, as
/// `torch.nn.functional.normalize` does).
///
/// ```
/// use modelopt_bert::{TokenBatch, mean_pool_normalize};
/// let mut b = TokenBatch::new();
/// b.push(&[1, 2], &[0, 0])?;
/// let h = ndarray::array![[3.0f32, 0.0], [3.0, 8.0]];
/// assert_eq!(mean_pool_normalize(&h, &b), ndarray::array![[0.6, 0.8]]);
/// # Ok::<(), modelopt_bert::BertError>(())
/// ```
pub fn mean_pool_normalize(hidden: &Array2<f32>, batch: &TokenBatch) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros((batch.len(), hidden.ncols()));
    for (s, mut row) in out.rows_mut().into_iter().enumerate() {
        let part = hidden.slice(s![batch.range(s), ..]);
        let n = part.nrows().max(1) as f32;
        for r in part.rows() {
            row += &r;
        }
        row.mapv_inplace(|v| v / n);
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.mapv_inplace(|v| v / norm);
    }
    out
}
