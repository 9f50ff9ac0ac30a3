//! `quantize --imatrix FILE`: llama.cpp's legacy `imatrix.dat` matched to the checkpoint's
//! tensors as `llama-quantize` does.
//!
//! An entry applies to the tensor of exactly its name (`blk.0.attn_q.weight`); its per-call
//! means (sums over `ncall`) are the importance of the tensor's columns, so its value count must
//! be the tensor's row length. Tensors without an entry, and types whose quantizer ignores
//! importance (Q8_0), are quantized unweighted, as `llama-quantize` does; the report says which.

use std::collections::HashMap;
use std::path::Path;

use modelopt_io::Imatrix;
use modelopt_quantize::ggml::GgmlType;

use crate::error::{CliResult, failure};

/// The importance weights of a checkpoint's tensors, by tensor name.
pub struct Importance {
    /// Per-call means of every entry, by name.
    means: HashMap<String, Vec<f32>>,
    /// The trailer: number of chunks (`last call`) and data set name, if the file has them.
    last_chunk: i32,
    dataset: String,
}

impl Importance {
    /// Reads and validates `path` (hostile or corrupt files are errors naming the entry).
    pub fn read(path: &Path) -> CliResult<Self> {
        let m = Imatrix::read(path)?;
        let means = m
            .entries()
            .iter()
            .map(|e| (e.name().to_string(), e.means()))
            .collect();
        Ok(Importance {
            means,
            last_chunk: m.last_chunk(),
            dataset: m.dataset().to_string(),
        })
    }

    /// The metadata llama-quantize adds for an imatrix (`tools/quantize/quantize.cpp`, as
    /// key/value overrides appended in this order): the file as named on the command line and
    /// the data set (both cut to 127 bytes), the entry count, and the chunk count when positive.
    pub fn gguf_metadata(&self, path: &Path) -> Vec<(String, modelopt_io::GgufValue)> {
        use modelopt_io::GgufValue;
        let cut = |s: &str| {
            let mut end = s.len().min(127);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            GgufValue::from(&s[..end])
        };
        let mut m = vec![(
            "quantize.imatrix.file".to_string(),
            cut(&path.to_string_lossy()),
        )];
        if !self.dataset.is_empty() {
            m.push(("quantize.imatrix.dataset".into(), cut(&self.dataset)));
        }
        m.push((
            "quantize.imatrix.entries_count".into(),
            GgufValue::U32(self.means.len() as u32),
        ));
        if self.last_chunk > 0 {
            m.push((
                "quantize.imatrix.chunks_count".into(),
                GgufValue::U32(self.last_chunk as u32),
            ));
        }
        m
    }

    /// The weights for tensor `name` quantized to `ty` in rows of `row_len`: `None` when the
    /// file has no entry for it or `ty` ignores importance; an error when the entry's value
    /// count is not the row length.
    pub fn for_tensor(
        &self,
        path: &Path,
        name: &str,
        ty: GgmlType,
        row_len: usize,
    ) -> CliResult<Option<&[f32]>> {
        let Some(v) = self.means.get(name) else {
            return Ok(None);
        };
        if !ty.uses_importance() {
            return Ok(None);
        }
        if v.len() != row_len {
            // llama-quantize (`llama_model_quantize_impl`) lets the token embeddings through
            // unweighted: old imatrix files always mismatch them.
            if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
                return Ok(None);
            }
            return Err(failure(
                path,
                format!(
                    "imatrix entry `{name}` has {} values, but tensor `{name}` has rows of {row_len}",
                    v.len()
                ),
            ));
        }
        Ok(Some(v))
    }

    /// The report's note for a tensor quantized to `ty` with (`Some`) or without importance.
    pub fn note(ty: GgmlType, used: bool) -> &'static str {
        match (used, ty.uses_importance()) {
            (true, _) => "imatrix",
            (false, true) => "no imatrix entry: unweighted",
            (false, false) => "imatrix not used by this type",
        }
    }
}
