//! Pruning with calibration text: `modelopt prune --criterion wanda|sparsegpt --calibrate
//! MODEL_DIR --text FILE`. Wanda scores `|w| * ||x_j||` with the input norms of every linear
//! layer measured on the text; SparseGPT prunes each linear layer with weight reconstruction,
//! layer after layer (modelopt-calibrate).

use std::collections::BTreeMap;
use std::path::Path;

use modelopt_bert::{SentenceEncoder, SquaredSums};
use modelopt_calibrate::{PrunedTensor, SparseGptPruner, batches};
use modelopt_prune::{Wanda, WandaByName};
use modelopt_quantize::gptq::Sparsity;
use modelopt_tensor_core::Par;
use ndarray::Array1;

use crate::error::{CliResult, failure};
use crate::text::calibration_text;

/// The Wanda criterion of the model in `dir` with the weights of `input`, its linear layers'
/// input norms measured on the first `samples` non-empty lines of `text`.
pub fn criterion(
    dir: &Path,
    text: &Path,
    samples: Option<usize>,
    input: &Path,
) -> CliResult<WandaByName> {
    let enc = SentenceEncoder::with_weights(dir, input).map_err(|e| failure(dir, e.to_string()))?;
    let lines = calibration_text(text, samples)?;
    let mut sums = SquaredSums::default();
    enc.embed_with_hook(&lines, Par::all_cores(), &mut sums)
        .map_err(|e| failure(input, e.to_string()))?;
    let mut by_name = BTreeMap::new();
    for (name, s) in sums.layers() {
        let norms = Array1::from_iter(s.sums.iter().map(|&v| v.sqrt() as f32));
        let w = Wanda::from_norms(norms).map_err(|e| failure(input, format!("`{name}`: {e}")))?;
        by_name.insert(name.clone(), w);
    }
    Ok(WandaByName::new(by_name))
}

/// SparseGPT of every linear layer of the model in `dir` with the weights of `input`,
/// calibrated on the first `samples` non-empty lines of `text`: the pruned weights by name.
pub fn sparsegpt(
    dir: &Path,
    text: &Path,
    samples: Option<usize>,
    input: &Path,
    sparsity: Sparsity,
) -> CliResult<BTreeMap<String, PrunedTensor>> {
    let enc = SentenceEncoder::with_weights(dir, input).map_err(|e| failure(dir, e.to_string()))?;
    let lines = calibration_text(text, samples)?;
    let b = batches(enc.tokenizer(), &lines).map_err(|e| failure(text, e.to_string()))?;
    let mut model = enc.model().clone();
    let pruning = SparseGptPruner::new(sparsity)
        .par(Par::all_cores())
        .prune(&mut model, &b)
        .map_err(|e| failure(input, e.to_string()))?;
    Ok(pruning.tensors)
}
