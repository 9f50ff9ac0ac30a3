//! The `modelopt` command: inspect, quantize, prune and compare model files (safetensors, GGUF).
//!
//! - `modelopt inspect FILE`: every tensor and the totals.
//! - `modelopt quantize IN -o OUT --type TYPE`: GGML block types, int8, int4.
//! - `modelopt prune IN -o OUT --amount A`: pruned weights written as zeros (unstructured,
//!   channels, N:M; per tensor or global), or `--shrink SPEC` for smaller tensors.
//! - `modelopt compare A B`: per-tensor error metrics.
//! - `modelopt eval MODEL_DIR --weights FILE`: sentence-embedding fidelity of compressed weights.
//! - `modelopt imatrix MODEL_DIR -o imatrix.dat`: llama.cpp importance matrix from activations.
//!
//! Exit status: 0 on success, 2 on a usage error, 1 on any other failure (one line on stderr
//! naming the file and the problem).

mod budget;
mod calibrate;
mod compare;
mod error;
mod eval;
mod format;
mod glob;
mod imatrix;
mod importance;
mod inspect;
mod llama;
mod nonlinear;
mod plan;
mod preset;
mod prune;
mod quantize;
mod rows;
mod text;
mod wanda;

use clap::{Parser, Subcommand};

use error::CliError;

/// Quantize, prune and inspect neural-network checkpoints (safetensors, GGUF).
#[derive(Debug, Parser)]
#[command(
    name = "modelopt",
    version,
    about = "Quantize, prune, inspect and compare neural-network checkpoints (safetensors, GGUF)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List every tensor (name, dtype, shape, parameters, bytes) and the totals.
    Inspect(inspect::InspectArgs),
    /// Quantize a checkpoint into GGUF or safetensors.
    Quantize(quantize::QuantizeArgs),
    /// Prune a safetensors checkpoint: zeros in the same shapes, or --shrink to smaller tensors.
    Prune(prune::PruneArgs),
    /// Per-tensor error metrics between two checkpoints.
    Compare(compare::CompareArgs),
    /// Embeddings of a BERT model folder vs the same with other weights: cosine, neighbours, bits/weight.
    Eval(eval::EvalArgs),
    /// llama.cpp importance matrix (imatrix.dat) of a BERT model folder over a text.
    Imatrix(imatrix::ImatrixArgs),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // clap exits 2 on usage errors and 0 for --help / --version.
        Err(e) => e.exit(),
    };
    let result = match &cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Prune(a) => prune::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Imatrix(a) => imatrix::run(a),
    };
    if let Err(e) = result {
        let kind = match e {
            CliError::Usage(_) => "usage error",
            CliError::Failure(_) => "error",
        };
        eprintln!("modelopt: {kind}: {}", e.to_string().replace('\n', " "));
        std::process::exit(e.exit_code());
    }
}
