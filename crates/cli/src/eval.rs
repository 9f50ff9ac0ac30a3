//! `modelopt eval MODEL_DIR [--weights FILE] [--text FILE] [--exec stored|float|int8] [--json]`:
//! what a compressed checkpoint costs, measured on sentence embeddings, run the way a user of the
//! file runs it (quantized linear layers in integers where a kernel exists).

use std::path::PathBuf;
use std::time::Instant;

use modelopt_bert::{Execution, SentenceEncoder};
use modelopt_io::Checkpoint;
use modelopt_tensor_core::Par;
use ndarray::{Array2, ArrayView2};
use serde_json::json;

use crate::error::{CliError, CliResult};
use crate::format::{bytes, json_f64, print_table};
use crate::text::{sentences, warn_truncated};

/// Arguments of `modelopt eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Model folder with config.json, tokenizer.json and model.safetensors (the f32 reference).
    pub model_dir: PathBuf,
    /// Weights to evaluate (GGUF or safetensors; quantized or pruned). Default: the folder's own.
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Text file, one sentence per line. Default: 780 built-in sentences (Python's documentation).
    #[arg(long, value_name = "FILE")]
    pub text: Option<PathBuf>,
    /// How the evaluated weights' linear layers run: `stored` (quantized weights in integers
    /// where a kernel exists for their format: Q8_0/Q4_0/Q4_K/IQ4_NL blocks, int8, int4; the
    /// rest dequantized), `float` (everything dequantized to f32), `int8` (every linear weight
    /// quantized to int8 at load, activations per token).
    #[arg(long, value_name = "MODE", default_value = "stored", value_parser = parse_exec)]
    pub exec: Execution,
    /// Print one JSON document on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

fn parse_exec(s: &str) -> Result<Execution, String> {
    Execution::parse(s).map_err(|e| e.to_string())
}

fn bert_err(e: modelopt_bert::BertError) -> CliError {
    CliError::Failure(e.to_string())
}

/// Index of each row's nearest other row by cosine (rows have unit length).
fn nearest(e: &Array2<f32>) -> CliResult<Vec<Option<usize>>> {
    let n = e.nrows();
    let mut sim = Array2::<f32>::zeros((n, n));
    modelopt_nn::matmul(1.0, e, &e.t(), 0.0, &mut sim)
        .map_err(|err| CliError::Failure(err.to_string()))?;
    Ok(sim
        .rows()
        .into_iter()
        .enumerate()
        .map(|(i, row)| {
            row.iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(j, _)| j)
        })
        .collect())
}

fn cosines(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Vec<f64> {
    a.rows()
        .into_iter()
        .zip(b.rows())
        .map(|(x, y)| {
            let dot: f64 = x
                .iter()
                .zip(y)
                .map(|(p, q)| f64::from(*p) * f64::from(*q))
                .sum();
            let nx: f64 = x.iter().map(|p| f64::from(*p).powi(2)).sum::<f64>().sqrt();
            let ny: f64 = y.iter().map(|p| f64::from(*p).powi(2)).sum::<f64>().sqrt();
            dot / (nx * ny).max(f64::MIN_POSITIVE)
        })
        .collect()
}

/// Runs `eval`.
pub fn run(args: &EvalArgs) -> CliResult<()> {
    crate::quantize::init_threads(args.threads)?;
    let par = Par::all_cores();
    let text = sentences(args.text.as_deref())?;
    let (texts, name) = (&text.texts, &text.name);
    let start = Instant::now();
    let reference = SentenceEncoder::from_dir(&args.model_dir).map_err(bert_err)?;
    let t_ref = Instant::now();
    let base = reference.embed(texts, par).map_err(bert_err)?;
    let ref_secs = t_ref.elapsed().as_secs_f64();
    warn_truncated(&text, &base.truncated, reference.tokenizer().max_tokens());
    let weights = args
        .weights
        .clone()
        .unwrap_or_else(|| args.model_dir.join("model.safetensors"));
    let t_load = Instant::now();
    let candidate = SentenceEncoder::with_weights_and(&args.model_dir, &weights, args.exec)
        .map_err(bert_err)?;
    let kernels = candidate.model().linear_kernels();
    let integer = kernels.iter().filter(|(_, k)| k != "f32").count();
    let mut kinds: Vec<&str> = kernels.iter().map(|(_, k)| k.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let execution = format!(
        "{integer} of {} linear layers in integers ({})",
        kernels.len(),
        kinds.join("; ")
    );
    let load_secs = t_load.elapsed().as_secs_f64();
    let t_run = Instant::now();
    let got = candidate.embed(texts, par).map_err(bert_err)?;
    let run_secs = t_run.elapsed().as_secs_f64();
    let total_secs = start.elapsed().as_secs_f64();

    let ckpt = Checkpoint::open(&weights)?;
    let params: usize = ckpt
        .tensors()
        .iter()
        .filter(|t| t.is_float())
        .filter_map(|t| t.info.elements().ok())
        .sum();
    let file_bytes = std::fs::metadata(&weights)
        .map_err(|e| crate::error::failure(&weights, e))?
        .len();
    let bpw = file_bytes as f64 * 8.0 / params.max(1) as f64;
    let cos = cosines(base.vectors.view(), got.vectors.view());
    let mean = cos.iter().sum::<f64>() / cos.len() as f64;
    let (worst, min) = cos
        .iter()
        .copied()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 1.0));
    let (nn_a, nn_b) = (nearest(&base.vectors)?, nearest(&got.vectors)?);
    let nn_same = if texts.len() < 2 {
        None
    } else {
        Some(nn_a.iter().zip(&nn_b).filter(|(a, b)| a == b).count() as f64 / texts.len() as f64)
    };
    let per_sec = texts.len() as f64 / run_secs.max(1e-9);
    if args.json {
        let doc = json!({
            "model_dir": args.model_dir.display().to_string(),
            "weights": weights.display().to_string(),
            "format": ckpt.format().name(),
            "text": name,
            "sentences": texts.len(),
            "tokens": got.tokens,
            "truncated": base.truncated.len(),
            "file_bytes": file_bytes,
            "parameters": params,
            "bits_per_weight": json_f64(bpw),
            "mean_cosine": json_f64(mean),
            "min_cosine": json_f64(min),
            "min_cosine_line": text.lines[worst],
            "nearest_neighbour_unchanged": nn_same.map_or(serde_json::Value::Null, json_f64),
            "seconds": {
                "f32": json_f64(ref_secs),
                "load_weights": json_f64(load_secs),
                "weights": json_f64(run_secs),
                "total": json_f64(total_secs),
            },
            "sentences_per_second": json_f64(per_sec),
            "execution": execution,
            "integer_layers": integer,
            "linear_layers": kernels.len(),
            "threads": par.degree(),
        });
        println!("{doc:#}");
    } else {
        let rows = vec![
            vec![
                "weights".into(),
                format!("{} ({})", weights.display(), ckpt.format().name()),
            ],
            vec![
                "text".into(),
                format!("{name}: {} sentences, {} tokens", texts.len(), got.tokens),
            ],
            vec![
                "file".into(),
                format!(
                    "{} for {params} weights: {bpw:.2} bits/weight",
                    bytes(file_bytes)
                ),
            ],
            vec!["execution".into(), execution],
            vec!["mean cosine to f32".into(), format!("{mean:.6}")],
            vec![
                "min cosine to f32".into(),
                format!("{min:.6} (line {})", text.lines[worst]),
            ],
            vec![
                "nearest neighbour unchanged".into(),
                nn_same.map_or("- (one sentence)".into(), |f| format!("{:.2}%", f * 100.0)),
            ],
            vec![
                "time".into(),
                format!(
                    "{total_secs:.2} s (f32 {ref_secs:.2} s, load {load_secs:.2} s, weights {run_secs:.2} s: {per_sec:.0} sentences/s on {} threads)",
                    par.degree()
                ),
            ],
        ];
        print_table(&["eval", "value"], &rows);
    }
    Ok(())
}
