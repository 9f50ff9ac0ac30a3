//! A model folder as a sentence encoder: tokenizer + model + pooling.

use std::path::Path;

use modelopt_tensor_core::Par;
use ndarray::{Array2, ArrayView2, Axis};

use crate::{
    ActivationHook, BertConfig, BertError, BertModel, Execution, Result, SentenceTokenizer,
};

/// Sentences per forward pass in [`SentenceEncoder::embed`]: fixed, so the results do not depend
/// on the thread count or on how many texts one call gets beyond this.
pub const BATCH_SENTENCES: usize = 32;

/// A sentence encoder from a model folder holding `config.json`, `tokenizer.json` and
/// `model.safetensors` (the layout of sentence-transformers' all-MiniLM-L6-v2), or with the
/// weights taken from another file (quantized GGUF or safetensors, pruned).
///
/// ```no_run
/// use modelopt_bert::SentenceEncoder;
/// use modelopt_tensor_core::Par;
/// let enc = SentenceEncoder::from_dir("minilm")?;
/// let e = enc.embed(&["A cat sat on the mat.", "A dog lay on the rug."], Par::Seq)?;
/// let cosine: f32 = e.vectors.row(0).dot(&e.vectors.row(1));
/// let q4 = SentenceEncoder::with_weights("minilm", "minilm-q4_0.gguf")?;
/// # Ok::<(), modelopt_bert::BertError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SentenceEncoder {
    tokenizer: SentenceTokenizer,
    model: BertModel,
}

/// Embeddings of a list of texts.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// One unit-length row per text, `[texts, hidden_size]`.
    pub vectors: Array2<f32>,
    /// Indices of the texts that were longer than the model reads and were truncated.
    pub truncated: Vec<usize>,
    /// Tokens run through the model.
    pub tokens: usize,
}

impl SentenceEncoder {
    /// Loads `dir/config.json`, `dir/tokenizer.json` and `dir/model.safetensors`.
    ///
    /// ```
    /// let err = modelopt_bert::SentenceEncoder::from_dir("/nonexistent").unwrap_err();
    /// assert!(err.to_string().contains("config.json"));
    /// ```
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        Self::with_weights(dir, dir.join("model.safetensors"))
    }

    /// Loads the config and tokenizer of `dir` and the weights of `weights` (safetensors or GGUF,
    /// any type [`modelopt_io::Checkpoint`] reads).
    ///
    /// ```no_run
    /// let enc = modelopt_bert::SentenceEncoder::with_weights("minilm", "minilm-int8.safetensors")?;
    /// # Ok::<(), modelopt_bert::BertError>(())
    /// ```
    pub fn with_weights(dir: impl AsRef<Path>, weights: impl AsRef<Path>) -> Result<Self> {
        Self::with_weights_and(dir, weights, Execution::default())
    }

    /// [`with_weights`](Self::with_weights) with the linear layers run as `execution` says.
    ///
    /// ```no_run
    /// use modelopt_bert::{Execution, SentenceEncoder};
    /// let w8a8 = SentenceEncoder::with_weights_and("minilm", "minilm/model.safetensors", Execution::Int8Dynamic)?;
    /// # Ok::<(), modelopt_bert::BertError>(())
    /// ```
    pub fn with_weights_and(
        dir: impl AsRef<Path>,
        weights: impl AsRef<Path>,
        execution: Execution,
    ) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(BertError::file(
                dir.join("config.json"),
                "the model folder does not exist (it needs config.json, tokenizer.json, model.safetensors)",
            ));
        }
        let config = BertConfig::from_file(dir.join("config.json"))?;
        let tokenizer = SentenceTokenizer::from_file(
            dir.join("tokenizer.json"),
            config.max_position_embeddings,
        )?;
        let model = BertModel::from_file_with(config, weights, execution)?;
        Ok(SentenceEncoder { tokenizer, model })
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &SentenceTokenizer {
        &self.tokenizer
    }

    /// The model.
    pub fn model(&self) -> &BertModel {
        &self.model
    }

    /// Embeds `texts` in batches of [`BATCH_SENTENCES`], each batch's layers in parallel as `par`
    /// allows.
    ///
    /// ```no_run
    /// # let enc: modelopt_bert::SentenceEncoder = todo!();
    /// let e = enc.embed(&["one", "two"], modelopt_tensor_core::Par::Seq)?;
    /// assert_eq!(e.vectors.nrows(), 2);
    /// # Ok::<(), modelopt_bert::BertError>(())
    /// ```
    pub fn embed<S: AsRef<str>>(&self, texts: &[S], par: Par) -> Result<Embeddings> {
        self.embed_with_hook(texts, par, &mut |_: &str, _: ArrayView2<'_, f32>| {})
    }

    /// [`embed`](Self::embed), calling `hook` with the input of every linear layer of every
    /// batch (see [`ActivationHook`]).
    ///
    /// ```no_run
    /// # let enc: modelopt_bert::SentenceEncoder = todo!();
    /// let mut stats = modelopt_bert::SquaredSums::default();
    /// enc.embed_with_hook(&["one", "two"], modelopt_tensor_core::Par::Seq, &mut stats)?;
    /// # Ok::<(), modelopt_bert::BertError>(())
    /// ```
    pub fn embed_with_hook<S: AsRef<str>>(
        &self,
        texts: &[S],
        par: Par,
        hook: &mut dyn ActivationHook,
    ) -> Result<Embeddings> {
        let h = self.model.config().hidden_size;
        let mut vectors = Array2::<f32>::zeros((0, h));
        let (mut truncated, mut tokens) = (Vec::new(), 0);
        for (b, chunk) in texts.chunks(BATCH_SENTENCES).enumerate() {
            let t = self.tokenizer.encode(chunk)?;
            truncated.extend(t.truncated.iter().map(|i| b * BATCH_SENTENCES + i));
            tokens += t.batch.tokens();
            let e = self.model.embed_with_hook(&t.batch, par, hook)?;
            vectors
                .append(Axis(0), e.view())
                .map_err(|e| BertError::Input(e.to_string()))?;
        }
        Ok(Embeddings {
            vectors,
            truncated,
            tokens,
        })
    }
}
