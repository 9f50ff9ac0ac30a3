//! The `modelopt` command: inspect, quantize and compare model files (safetensors, GGUF).
//!
//! Exit status: 0 on success, 2 on a usage error, 1 on any other failure (one line on stderr
//! naming the file and the problem).

mod compare;
mod error;
mod format;
mod glob;
mod inspect;
mod plan;
mod quantize;
mod rows;

use clap::{Parser, Subcommand};

use error::CliError;

/// Quantize and inspect neural-network checkpoints (safetensors, GGUF).
#[derive(Debug, Parser)]
#[command(
    name = "modelopt",
    version,
    about = "Quantize, inspect and compare neural-network checkpoints (safetensors, GGUF)"
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
    /// Per-tensor error metrics between two checkpoints.
    Compare(compare::CompareArgs),
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
        Command::Compare(a) => compare::run(a),
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
