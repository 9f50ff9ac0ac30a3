//! `modelopt prune --criterion wanda --calibrate MODEL_DIR --text FILE`: Wanda's scores
//! `|w| * ||x_j||` with the input norms of every linear layer measured on text.

use std::collections::BTreeMap;
use std::path::Path;

use modelopt_bert::{SentenceEncoder, SquaredSums};
use modelopt_prune::{Wanda, WandaByName};
use modelopt_tensor_core::Par;
use ndarray::Array1;

use crate::error::{CliResult, failure};

/// The Wanda criterion of the model in `dir` with the weights of `input`, its linear layers'
/// input norms measured on the first `samples` non-empty lines of `text`.
pub fn criterion(
    dir: &Path,
    text: &Path,
    samples: Option<usize>,
    input: &Path,
) -> CliResult<WandaByName> {
    let enc = SentenceEncoder::with_weights(dir, input).map_err(|e| failure(dir, e.to_string()))?;
    let all = std::fs::read_to_string(text)
        .map_err(|e| failure(text, format!("cannot read the calibration text: {e}")))?;
    let lines: Vec<&str> = all
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(samples.unwrap_or(usize::MAX))
        .collect();
    if lines.is_empty() {
        return Err(failure(text, "no calibration text (no non-empty line)"));
    }
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
