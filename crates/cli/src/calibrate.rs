//! `modelopt quantize --calibrate MODEL_DIR --text FILE --method gptq|imatrix|awq`: the linear
//! layers of a BERT checkpoint calibrated on text (modelopt-calibrate), layer after layer.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::ValueEnum;
use modelopt_bert::SentenceEncoder;
use modelopt_calibrate::{Calibration, Calibrator, Format, Method, batches};
use modelopt_quantize::gptq::Gptq;
use modelopt_tensor_core::Par;

use crate::error::{CliError, CliResult, failure};
use crate::plan::{Target, k_fallback};

/// Calibration methods of `--method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CalibMethod {
    /// GPTQ (q4_0, q8_0, int4).
    Gptq,
    /// Importance-weighted GGML quantizers with the mean x² of each input column.
    Imatrix,
    /// AWQ's activation-aware input scales where they fold exactly (on BERT: the attention
    /// output projections, into the value projections), then round-to-nearest.
    Awq,
}

/// The calibration options of `modelopt quantize`.
#[derive(Debug, Clone, clap::Args)]
pub struct CalibArgs {
    /// Calibrate the linear layers with data: the model folder (config.json, tokenizer.json) of
    /// the input checkpoint, a BERT encoder such as all-MiniLM-L6-v2.
    #[arg(long, value_name = "MODEL_DIR", requires = "text")]
    pub calibrate: Option<PathBuf>,
    /// Calibration text, one sentence per line (with --calibrate).
    #[arg(long, value_name = "FILE", requires = "calibrate")]
    pub text: Option<PathBuf>,
    /// Calibration method (with --calibrate).
    #[arg(long, value_enum, default_value = "gptq")]
    pub method: CalibMethod,
    /// Use the first N lines of --text (default: all).
    #[arg(long, value_name = "N")]
    pub samples: Option<usize>,
    /// GPTQ: quantize columns in order of decreasing activation energy.
    #[arg(long)]
    pub act_order: bool,
}

/// Runs the calibration if `--calibrate` was given: the calibrated linear weights by name, and
/// the seconds it took.
pub fn run(
    args: &CalibArgs,
    input: &Path,
    target: Target,
) -> CliResult<Option<(Calibration, f64)>> {
    let (Some(dir), Some(text)) = (&args.calibrate, &args.text) else {
        return Ok(None);
    };
    let mut fallback = None;
    let format = match target {
        Target::Ggml(ty) => {
            fallback = k_fallback(ty).map(Format::Ggml);
            Format::Ggml(ty)
        }
        Target::Int4 { group_size } => Format::Int4 { group_size },
        Target::Int8 | Target::Nonlinear(_) => {
            return Err(CliError::Usage(
                "--calibrate supports GGML types and int4, not int8 or the codebook types".into(),
            ));
        }
    };
    let method = match args.method {
        CalibMethod::Gptq => Method::Gptq,
        CalibMethod::Imatrix => Method::Imatrix,
        CalibMethod::Awq => Method::Awq,
    };
    let start = Instant::now();
    let enc = SentenceEncoder::with_weights(dir, input).map_err(|e| failure(dir, e.to_string()))?;
    let lines = crate::text::calibration_text(text, args.samples)?;
    let b = batches(enc.tokenizer(), &lines).map_err(|e| failure(text, e.to_string()))?;
    let mut model = enc.model().clone();
    // The pool set up by --threads (all cores by default).
    let par = Par::all_cores();
    let mut calibrator = Calibrator::new(method, format);
    if let Some(f) = fallback {
        calibrator = calibrator.fallback(f);
    }
    let cal = calibrator
        .gptq(Gptq::new().act_order(args.act_order))
        .par(par)
        .calibrate(&mut model, &b)
        .map_err(|e| failure(input, e.to_string()))?;
    Ok(Some((cal, start.elapsed().as_secs_f64())))
}
