//! Tokenisation with Hugging Face's `tokenizers` from `tokenizer.json`.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use tokenizers::{Tokenizer, TruncationParams};

use crate::{BertError, Result, TokenBatch};

/// The tokenizer of a model folder (`tokenizer.json`), truncating each text to the model's
/// positions (or the shorter limit `tokenizer.json` sets, 128 for all-MiniLM-L6-v2) and not
/// padding: the model reads packed batches.
///
/// ```no_run
/// let tok = modelopt_bert::SentenceTokenizer::from_file("minilm/tokenizer.json", 512)?;
/// let t = tok.encode(&["Hello world."])?;
/// assert_eq!(t.batch.ids(), &[101, 7592, 2088, 1012, 102]);
/// assert!(t.truncated.is_empty());
/// # Ok::<(), modelopt_bert::BertError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SentenceTokenizer {
    inner: Tokenizer,
    max_tokens: usize,
    path: PathBuf,
}

/// Token batch of some texts, and which of them were cut to the maximum length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    /// The tokens, packed.
    pub batch: TokenBatch,
    /// Indices of the texts that were longer than the maximum and were truncated.
    pub truncated: Vec<usize>,
}

impl SentenceTokenizer {
    /// Reads `tokenizer.json`; `max_positions` is the model's `max_position_embeddings`.
    ///
    /// ```
    /// let err = modelopt_bert::SentenceTokenizer::from_file("/nonexistent/tokenizer.json", 512).unwrap_err();
    /// assert!(err.to_string().contains("/nonexistent/tokenizer.json"));
    /// ```
    pub fn from_file(path: impl AsRef<Path>, max_positions: usize) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| BertError::file(path, format!("cannot read the tokenizer: {e}")))?;
        let mut inner = Tokenizer::from_str(&text)
            .map_err(|e| BertError::file(path, format!("not a valid tokenizer.json: {e}")))?;
        let max_tokens = inner
            .get_truncation()
            .map_or(max_positions, |t| t.max_length.min(max_positions));
        if max_tokens < 2 {
            return Err(BertError::file(
                path,
                format!("truncation length {max_tokens} leaves no room for a sentence"),
            ));
        }
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| BertError::file(path, format!("cannot set truncation: {e}")))?;
        inner.with_padding(None);
        Ok(SentenceTokenizer {
            inner,
            max_tokens,
            path: path.to_path_buf(),
        })
    }

    /// The longest token sequence (special tokens included) a text is cut to.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Tokenises `texts` (with `[CLS]` and `[SEP]`), truncating long ones.
    ///
    /// ```no_run
    /// # let tok: modelopt_bert::SentenceTokenizer = todo!();
    /// let t = tok.encode(&["a", "b c"])?;
    /// assert_eq!(t.batch.len(), 2);
    /// # Ok::<(), modelopt_bert::BertError>(())
    /// ```
    pub fn encode<S: AsRef<str>>(&self, texts: &[S]) -> Result<Tokenized> {
        let mut batch = TokenBatch::new();
        let mut truncated = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let e = self.inner.encode(text.as_ref(), true).map_err(|e| {
                BertError::file(&self.path, format!("cannot tokenise text {i}: {e}"))
            })?;
            if !e.get_overflowing().is_empty() {
                truncated.push(i);
            }
            batch.push(e.get_ids(), e.get_type_ids())?;
        }
        Ok(Tokenized { batch, truncated })
    }
}
