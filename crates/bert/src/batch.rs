//! A batch of token sequences, packed without padding.

use ndarray::ArrayView2;

use crate::{BertError, Result};

/// Token sequences of several sentences, packed one after another without padding: the rows of
/// every activation are the real tokens only, so no work is spent on padding and attention needs
/// no mask (which is exactly what a padding mask computes). Each token keeps its position id
/// (its index in the sentence, as in a padded batch) and token type.
///
/// ```
/// use modelopt_bert::TokenBatch;
/// let mut b = TokenBatch::new();
/// b.push(&[101, 7592, 102], &[0, 0, 0])?;
/// b.push(&[101, 102], &[0, 0])?;
/// assert_eq!(b.len(), 2);
/// assert_eq!(b.tokens(), 5);
/// assert_eq!(b.range(1), 3..5);
/// # Ok::<(), modelopt_bert::BertError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenBatch {
    pub(crate) ids: Vec<u32>,
    pub(crate) type_ids: Vec<u32>,
    pub(crate) positions: Vec<u32>,
    /// Start of each sentence in the token rows, and the end: `len() + 1` entries.
    pub(crate) starts: Vec<usize>,
}

impl TokenBatch {
    /// An empty batch.
    ///
    /// ```
    /// assert!(modelopt_bert::TokenBatch::new().is_empty());
    /// ```
    pub fn new() -> Self {
        TokenBatch {
            starts: vec![0],
            ..Default::default()
        }
    }

    /// Appends one sentence: token ids and token types of equal length, positions `0..n`.
    /// An empty sentence is an error (a BERT input has at least `[CLS]` and `[SEP]`).
    ///
    /// ```
    /// let mut b = modelopt_bert::TokenBatch::new();
    /// assert!(b.push(&[1, 2], &[0]).is_err());
    /// assert!(b.push(&[], &[]).is_err());
    /// ```
    pub fn push(&mut self, ids: &[u32], type_ids: &[u32]) -> Result<()> {
        if ids.len() != type_ids.len() {
            return Err(BertError::Input(format!(
                "sentence {}: {} token ids but {} token types",
                self.len(),
                ids.len(),
                type_ids.len()
            )));
        }
        if ids.is_empty() {
            return Err(BertError::Input(format!(
                "sentence {} has no tokens",
                self.len()
            )));
        }
        let n = u32::try_from(ids.len())
            .map_err(|_| BertError::Input(format!("sentence {} is too long", self.len())))?;
        self.ids.extend_from_slice(ids);
        self.type_ids.extend_from_slice(type_ids);
        self.positions.extend(0..n);
        self.starts.push(self.ids.len());
        Ok(())
    }

    /// A batch from padded rows as a tokenizer returns them (`ids`, `attention_mask`, optional
    /// `token_type_ids`, all `[sentences, length]`): the tokens whose mask is 1 are kept, each
    /// with its column as position id, as Hugging Face's BERT does (so left padding works too).
    ///
    /// ```
    /// use ndarray::array;
    /// let ids = array![[101i64, 7592, 102], [101, 102, 0]];
    /// let mask = array![[1i64, 1, 1], [1, 1, 0]];
    /// let b = modelopt_bert::TokenBatch::from_padded(ids.view(), mask.view(), None)?;
    /// assert_eq!(b.tokens(), 5);
    /// # Ok::<(), modelopt_bert::BertError>(())
    /// ```
    pub fn from_padded(
        ids: ArrayView2<'_, i64>,
        mask: ArrayView2<'_, i64>,
        type_ids: Option<ArrayView2<'_, i64>>,
    ) -> Result<Self> {
        if mask.dim() != ids.dim() || type_ids.is_some_and(|t| t.dim() != ids.dim()) {
            return Err(BertError::Input(format!(
                "ids {:?}, attention mask {:?} and token types {:?} differ in shape",
                ids.shape(),
                mask.shape(),
                type_ids.map(|t| t.shape().to_vec())
            )));
        }
        let id = |x: i64, what: &str, (r, c): (usize, usize)| {
            u32::try_from(x)
                .map_err(|_| BertError::Input(format!("{what} {x} at [{r}, {c}] is out of range")))
        };
        let mut b = TokenBatch::new();
        for r in 0..ids.nrows() {
            let before = b.ids.len();
            for c in 0..ids.ncols() {
                match mask[[r, c]] {
                    0 => continue,
                    1 => {}
                    m => {
                        return Err(BertError::Input(format!(
                            "attention mask value {m} at [{r}, {c}] (must be 0 or 1)"
                        )));
                    }
                }
                b.ids.push(id(ids[[r, c]], "token id", (r, c))?);
                let t = type_ids.map_or(0, |t| t[[r, c]]);
                b.type_ids.push(id(t, "token type", (r, c))?);
                b.positions.push(id(c as i64, "position", (r, c))?);
            }
            if b.ids.len() == before {
                return Err(BertError::Input(format!("row {r} has no unmasked token")));
            }
            b.starts.push(b.ids.len());
        }
        Ok(b)
    }

    /// Number of sentences.
    pub fn len(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    /// Whether the batch holds no sentence.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of tokens over all sentences (the rows of every activation).
    pub fn tokens(&self) -> usize {
        self.ids.len()
    }

    /// Token rows of sentence `i` (panics if `i >= len()`, like slice indexing).
    pub fn range(&self, i: usize) -> std::ops::Range<usize> {
        self.starts[i]..self.starts[i + 1]
    }

    /// Token ids of all sentences, packed.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}
