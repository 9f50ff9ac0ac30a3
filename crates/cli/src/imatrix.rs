//! `modelopt imatrix MODEL_DIR --text FILE -o imatrix.dat`: llama.cpp's importance matrix of a
//! BERT model, from the inputs of its linear layers.

use std::path::PathBuf;
use std::time::Instant;

use modelopt_bert::{SentenceEncoder, SquaredSums};
use modelopt_io::{Imatrix, ImatrixEntry};
use modelopt_tensor_core::Par;
use serde_json::json;

use crate::error::{CliError, CliResult, failure};
use crate::format::json_f64;
use crate::text::{sentences, warn_truncated};

/// Arguments of `modelopt imatrix`.
#[derive(Debug, clap::Args)]
pub struct ImatrixArgs {
    /// Model folder with config.json, tokenizer.json and model.safetensors.
    pub model_dir: PathBuf,
    /// Calibration text, one sentence per line. Default: 780 built-in sentences.
    #[arg(long, value_name = "FILE")]
    pub text: Option<PathBuf>,
    /// Output file (llama.cpp's legacy imatrix.dat layout; written atomically).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Weights to run instead of the folder's model.safetensors.
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Print one JSON document on stdout instead of a summary line.
    #[arg(long)]
    pub json: bool,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// Runs `imatrix`.
pub fn run(args: &ImatrixArgs) -> CliResult<()> {
    crate::quantize::init_threads(args.threads)?;
    let start = Instant::now();
    let text = sentences(args.text.as_deref())?;
    let (texts, name) = (&text.texts, &text.name);
    let weights = args
        .weights
        .clone()
        .unwrap_or_else(|| args.model_dir.join("model.safetensors"));
    let enc = SentenceEncoder::with_weights(&args.model_dir, &weights)
        .map_err(|e| CliError::Failure(e.to_string()))?;
    let mut stats = SquaredSums::default();
    let e = enc
        .embed_with_hook(texts, Par::all_cores(), &mut stats)
        .map_err(|e| CliError::Failure(e.to_string()))?;
    warn_truncated(&text, &e.truncated, enc.tokenizer().max_tokens());
    // llama-imatrix stores, per tensor, the mean square per token times the number of calls
    // (`(sum / count) * ncall`), so that llama-quantize's division by ncall gives the mean.
    let mut entries = Vec::new();
    let mut calls = 0;
    for layer in enc.model().linear_names() {
        let s = &stats.layers()[layer];
        calls = calls.max(s.calls);
        let ncall = i32::try_from(s.calls).map_err(|_| {
            CliError::Failure(format!("{} batches overflow imatrix.dat's int32", s.calls))
        })?;
        let tokens = s.tokens.max(1) as f64;
        let values = s
            .sums
            .iter()
            .map(|&v| (v / tokens * s.calls as f64) as f32)
            .collect();
        entries
            .push(ImatrixEntry::new(layer, ncall, values).map_err(|e| failure(&args.output, e))?);
    }
    let n_entries = entries.len();
    let chunks = i32::try_from(calls).unwrap_or(i32::MAX);
    Imatrix::new(entries)?
        .with_trailer(chunks, name.clone())
        .write(&args.output)?;
    let secs = start.elapsed().as_secs_f64();
    if args.json {
        let doc = json!({
            "output": args.output.display().to_string(),
            "text": name,
            "sentences": texts.len(),
            "tokens": e.tokens,
            "truncated": e.truncated.len(),
            "entries": n_entries,
            "batches": calls,
            "seconds": json_f64(secs),
        });
        println!("{doc:#}");
    } else {
        println!(
            "wrote {}: {n_entries} linear layers, {} sentences ({} tokens) in {calls} batches of {name}, {secs:.2} s",
            args.output.display(),
            texts.len(),
            e.tokens
        );
    }
    Ok(())
}
