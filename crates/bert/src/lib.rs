//! # modelopt-bert
//!
//! BERT-family sentence encoders in Rust, to measure what compression costs and to collect the
//! activations calibration needs. Runs all-MiniLM-L6-v2 (sentence-transformers) from its folder
//! (`config.json`, `tokenizer.json`, `model.safetensors`) or with weights from any file
//! [`modelopt_io::Checkpoint`] reads: GGUF of any GGML block type, int8/int4 safetensors as
//! `modelopt quantize` writes them, pruned checkpoints. Quantized linear weights run in integers
//! as they are stored ([`Execution::Stored`], the default: GGML Q8_0 / Q4_0 / Q4_K / IQ4_NL
//! blocks and int4 times 8-bit activation blocks, int8 as W8A8 with per-token activations, all
//! through `modelopt-kernels`); other formats are dequantized once at load.
//!
//! - [`SentenceEncoder`]: tokenizer + model + mean pooling + L2 normalisation;
//! - [`BertModel`]: embeddings, multi-head self-attention, exact-GELU feed-forward, LayerNorm,
//!   over a packed [`TokenBatch`] (real tokens only), parallel over [`Par`](modelopt_tensor_core::Par) with the same results
//!   for any thread count;
//! - [`ActivationHook`]: the input of every linear layer, named by its weight's checkpoint name,
//!   batch by batch, to any accumulator ([`SquaredSums`] for importance matrices, or a closure);
//! - [`SentenceTokenizer`]: Hugging Face's `tokenizers` from `tokenizer.json`, with truncation.
//!
//! f32 matrix products go through [`modelopt_nn::matmul`] (faer's `gemm-f32` kernels);
//! [`Execution::Int8Dynamic`] runs any f32 checkpoint as W8A8 (torch's `quantize_dynamic`).
//!
//! ```no_run
//! use modelopt_bert::{SentenceEncoder, SquaredSums};
//! use modelopt_tensor_core::Par;
//! let f32_model = SentenceEncoder::from_dir("minilm")?;
//! let q4 = SentenceEncoder::with_weights("minilm", "minilm-q4_0.gguf")?;
//! let texts = ["The cat sat on the mat.", "Stocks fell sharply on Monday."];
//! let (a, b) = (f32_model.embed(&texts, Par::Seq)?, q4.embed(&texts, Par::Seq)?);
//! let cosine = a.vectors.row(0).dot(&b.vectors.row(0)); // both rows have unit length
//! // Calibration statistics: sums of squared inputs of every linear layer.
//! let mut stats = SquaredSums::default();
//! f32_model.embed_with_hook(&texts, Par::Seq, &mut stats)?;
//! let query = &stats.layers()["encoder.layer.0.attention.self.query.weight"];
//! assert_eq!(query.sums.len(), 384);
//! # Ok::<(), modelopt_bert::BertError>(())
//! ```

mod batch;
mod config;
mod encoder;
mod error;
mod execution;
mod hook;
mod layers;
mod model;
mod tokenize;

pub use batch::TokenBatch;
pub use config::{BertConfig, HiddenAct};
pub use encoder::{BATCH_SENTENCES, Embeddings, SentenceEncoder};
pub use error::{BertError, Result};
pub use execution::Execution;
pub use hook::{ActivationHook, ColumnSums, SquaredSums};
pub use model::{BertModel, mean_pool_normalize};
pub use tokenize::{SentenceTokenizer, Tokenized};
