//! `modelopt quantize IN -o OUT --type TYPE ...`: one tensor at a time, rows in parallel.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use modelopt_io::{
    Checkpoint, CheckpointTensor, DType, FORMAT_KEY, FORMAT_VERSION, FileFormat, GgufValue,
    GgufWriter, QUANT_KEY_PREFIX, QuantLayout, SCALE_SUFFIX, SafetensorsWriter, TensorInfo,
    TensorOut, f32_to_bytes, same_file,
};
use modelopt_quantize::QuantScheme;
use modelopt_quantize::codebook::Bnb4Kind;
use modelopt_quantize::ggml::GgmlType;
use serde_json::json;

use crate::calibrate::{self, CalibArgs};
use crate::error::{CliError, CliResult, failure};
use crate::format::{bytes, db, json_f64, print_table};
use crate::importance::Importance;
use crate::llama::llama_plan;
use crate::nonlinear::Nonlinear;
use crate::plan::{Action, Target, gguf_keeps_integer, plan};
use crate::preset::Preset;
use crate::rows::{Source, ggml_bytes, quantize_ggml_weighted, quantize_uniform, sqnr_db};
use modelopt_calibrate::{CalibratedTensor, Format, Method};

/// The quantization types of `--type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QuantType {
    /// GGML Q8_0: 32 weights, f16 scale + 8-bit codes (8.5 bits/weight).
    #[value(name = "q8_0")]
    Q8_0,
    /// GGML Q4_0 (4.5 bits/weight).
    #[value(name = "q4_0")]
    Q4_0,
    /// GGML Q4_1 (5 bits/weight).
    #[value(name = "q4_1")]
    Q4_1,
    /// GGML Q5_0 (5.5 bits/weight).
    #[value(name = "q5_0")]
    Q5_0,
    /// GGML Q5_1 (6 bits/weight).
    #[value(name = "q5_1")]
    Q5_1,
    /// GGML Q2_K (2.625 bits/weight; rows not a multiple of 256 fall back to iq4_nl).
    #[value(name = "q2_k")]
    Q2K,
    /// GGML Q3_K (3.4375 bits/weight; rows not a multiple of 256 fall back to iq4_nl).
    #[value(name = "q3_k")]
    Q3K,
    /// GGML Q4_K (4.5 bits/weight; rows not a multiple of 256 fall back to q5_0).
    #[value(name = "q4_k")]
    Q4K,
    /// GGML Q5_K (5.5 bits/weight; rows not a multiple of 256 fall back to q5_1).
    #[value(name = "q5_k")]
    Q5K,
    /// GGML Q6_K (6.5625 bits/weight; rows not a multiple of 256 fall back to q8_0).
    #[value(name = "q6_k")]
    Q6K,
    /// GGML IQ4_NL: 32 weights, f16 scale + 4-bit indices into a non-uniform 16-level table
    /// (4.5 bits/weight).
    #[value(name = "iq4_nl")]
    Iq4Nl,
    /// GGML IQ4_XS: 256 weights, f16 scale, 6-bit scales per 32, 4-bit non-uniform indices
    /// (4.25 bits/weight; rows not a multiple of 256 fall back to iq4_nl).
    #[value(name = "iq4_xs")]
    Iq4Xs,
    /// Signed 8-bit symmetric, one f32 scale per output channel (axis 0); safetensors only.
    #[value(name = "int8")]
    Int8,
    /// Signed 4-bit symmetric in [-7, 7], one f32 scale per --group-size elements of a row,
    /// two codes per byte; safetensors only.
    #[value(name = "int4")]
    Int4,
    /// bitsandbytes NF4 (4.5 bits/weight at block 64; --block-size, --double-quant);
    /// safetensors only, bytes identical to bitsandbytes.
    #[value(name = "nf4")]
    Nf4,
    /// bitsandbytes FP4 (as nf4).
    #[value(name = "fp4")]
    Fp4,
    /// Learned 2-bit codebook per tensor over absmax blocks of --block-size (k-means).
    #[value(name = "kmeans2")]
    Kmeans2,
    /// Learned 3-bit codebook (3.5 bits/weight at block 64).
    #[value(name = "kmeans3")]
    Kmeans3,
    /// Learned 4-bit codebook (4.5 bits/weight at block 64): a learned NF4.
    #[value(name = "kmeans4")]
    Kmeans4,
    /// Learned 5-bit codebook.
    #[value(name = "kmeans5")]
    Kmeans5,
    /// Learned 6-bit codebook.
    #[value(name = "kmeans6")]
    Kmeans6,
    /// Learned 8-bit codebook.
    #[value(name = "kmeans8")]
    Kmeans8,
}

impl QuantType {
    /// The nonlinear target of this type, if it is one.
    fn nonlinear(self, block: usize, double: bool) -> Option<Nonlinear> {
        let codebook = |bits| Some(Nonlinear::Codebook { bits, block });
        let bnb = |kind| {
            Some(Nonlinear::Bnb4 {
                kind,
                block,
                double,
            })
        };
        match self {
            QuantType::Nf4 => bnb(Bnb4Kind::Nf4),
            QuantType::Fp4 => bnb(Bnb4Kind::Fp4),
            QuantType::Kmeans2 => codebook(2),
            QuantType::Kmeans3 => codebook(3),
            QuantType::Kmeans4 => codebook(4),
            QuantType::Kmeans5 => codebook(5),
            QuantType::Kmeans6 => codebook(6),
            QuantType::Kmeans8 => codebook(8),
            _ => None,
        }
    }

    fn target(self, group_size: usize, block: usize, double: bool) -> Target {
        if let Some(n) = self.nonlinear(block, double) {
            return Target::Nonlinear(n);
        }
        Target::Ggml(match self {
            QuantType::Q8_0 => GgmlType::Q8_0,
            QuantType::Q4_0 => GgmlType::Q4_0,
            QuantType::Q4_1 => GgmlType::Q4_1,
            QuantType::Q5_0 => GgmlType::Q5_0,
            QuantType::Q5_1 => GgmlType::Q5_1,
            QuantType::Q2K => GgmlType::Q2_K,
            QuantType::Q3K => GgmlType::Q3_K,
            QuantType::Q4K => GgmlType::Q4_K,
            QuantType::Q5K => GgmlType::Q5_K,
            QuantType::Q6K => GgmlType::Q6_K,
            QuantType::Iq4Nl => GgmlType::IQ4_NL,
            QuantType::Iq4Xs => GgmlType::IQ4_XS,
            QuantType::Int8 => return Target::Int8,
            QuantType::Int4 => return Target::Int4 { group_size },
            // ok: the nonlinear types returned above.
            _ => return Target::Int8,
        })
    }
}

/// What `--type` names: a simple type or a llama-quantize preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeArg {
    /// One type for every quantized tensor.
    Simple(QuantType),
    /// A llama-quantize preset (a mixture on GGUF models).
    Preset(Preset),
}

impl TypeArg {
    fn name(self) -> String {
        match self {
            TypeArg::Simple(t) => t
                .to_possible_value()
                .map_or_else(String::new, |v| v.get_name().to_string()),
            TypeArg::Preset(p) => p.name().to_string(),
        }
    }

    fn target(self, group_size: usize, block: usize, double: bool) -> CliResult<Target> {
        match self {
            TypeArg::Simple(t) => Ok(t.target(group_size, block, double)),
            TypeArg::Preset(p) => p.base().map(Target::Ggml).ok_or_else(|| {
                CliError::Usage(format!(
                    "--type {}: not available yet in this build",
                    p.name()
                ))
            }),
        }
    }
}

/// `--type`: a preset name in any case, else a simple type.
fn parse_type(s: &str) -> Result<TypeArg, String> {
    if let Some(p) = Preset::parse(s) {
        return Ok(TypeArg::Preset(p));
    }
    QuantType::from_str(s, false)
        .map(TypeArg::Simple)
        .map_err(|_| {
            let simple: Vec<String> = QuantType::value_variants()
                .iter()
                .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
                .collect();
            let presets: Vec<&str> = Preset::ALL.iter().map(|(_, n)| *n).collect();
            format!(
                "unknown type `{s}` (simple types: {}; presets: {})",
                simple.join(", "),
                presets.join(", ")
            )
        })
}

/// Output formats of `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutFormat {
    /// GGUF v3 (llama.cpp).
    Gguf,
    /// safetensors with the modelopt quantized convention (docs/formats.md).
    Safetensors,
}

/// Arguments of `modelopt quantize`.
#[derive(Debug, clap::Args)]
pub struct QuantizeArgs {
    /// Input checkpoint (safetensors or GGUF).
    pub input: PathBuf,
    /// Output file (written to a temporary file beside it, renamed when complete).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Quantization type: a simple type (q8_0, q4_k, int8, ...) or one of llama-quantize's presets
    /// (Q4_K_M, Q4_K_S, Q5_K_M, Q5_K_S, Q3_K_S, Q3_K_M, Q3_K_L, Q2_K, Q6_K, Q8_0, Q4_0, Q4_1, Q5_0,
    /// Q5_1, IQ4_NL, IQ4_XS; any case). On a GGUF model (general.architecture) a preset gives each
    /// tensor the type llama-quantize gives it; elsewhere it is its base type.
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_type)]
    pub ty: TypeArg,
    /// The type of the token (word) embeddings (`token_embd.weight`, `*word_embeddings.weight`,
    /// `*embed_tokens.weight`) instead of --type, as llama-quantize's option of the same name;
    /// with the simple types. E.g. `--type q4_0 --token-embedding-type kmeans3 --block-size 128`:
    /// BERT's word embeddings are half its weights.
    #[arg(long, value_name = "TYPE", value_enum)]
    pub token_embedding_type: Option<QuantType>,
    /// With a preset on a GGUF model: every quantized tensor gets the preset's base type
    /// (llama-quantize --pure).
    #[arg(long)]
    pub pure: bool,
    /// With a preset on a GGUF model: re-quantize tensors that are already quantized (they are
    /// copied otherwise; llama-quantize --allow-requantize).
    #[arg(long)]
    pub allow_requantize: bool,
    /// Output format (default: from OUT's extension).
    #[arg(long, value_enum)]
    pub format: Option<OutFormat>,
    /// Keep tensors whose name matches this pattern (`*`, `?`) unquantized; repeatable.
    #[arg(long = "keep", value_name = "GLOB")]
    pub keep: Vec<String>,
    /// Group size of grouped schemes (int4).
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub group_size: usize,
    /// Elements per absmax block of nf4, fp4 and kmeansN (a power of two >= 32 for nf4/fp4).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub block_size: usize,
    /// nf4/fp4: quantize the absmax values again (8-bit, blocks of 256), as bitsandbytes'
    /// compress_statistics.
    #[arg(long)]
    pub double_quant: bool,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Print the report as one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// Importance matrix (llama.cpp's legacy imatrix.dat): each entry weights the columns of the
    /// tensor of the same name, as llama-quantize --imatrix; tensors without one are quantized
    /// unweighted.
    #[arg(long, value_name = "FILE")]
    pub imatrix: Option<PathBuf>,
    /// Calibration with data (GPTQ, imatrix).
    #[command(flatten)]
    pub calib: CalibArgs,
    /// With a preset on a GGUF model: choose each quantized tensor's type from Q2_K..Q6_K, Q8_0
    /// to minimise the importance-weighted squared error at this many bits per weight (all
    /// parameters counted, as the report's bits/weight).
    #[arg(long, value_name = "BITS", conflicts_with = "size")]
    pub bpw: Option<f64>,
    /// As --bpw, for a total tensor-data size (3.2GiB, 800MB, bytes).
    #[arg(long, value_name = "SIZE", value_parser = crate::budget::parse_size)]
    pub size: Option<u64>,
}

/// Errors if `t` (given as `option`) cannot be written to `format` or its nonlinear settings
/// are invalid.
fn check_type_for(
    t: QuantType,
    option: &str,
    args: &QuantizeArgs,
    format: FileFormat,
) -> CliResult<()> {
    if format == FileFormat::Gguf && matches!(t, QuantType::Int8 | QuantType::Int4) {
        return Err(CliError::Usage(format!(
            "{}: {option} int8/int4 are written to safetensors only (GGUF has no such tensor type)",
            args.output.display()
        )));
    }
    if let Some(n) = t.nonlinear(args.block_size, args.double_quant) {
        n.check()?;
        if format == FileFormat::Gguf {
            return Err(CliError::Usage(format!(
                "{}: {option} {} is written to safetensors only (GGUF has no such tensor type)",
                args.output.display(),
                n.name()
            )));
        }
    }
    Ok(())
}

/// True for the token (word) embedding matrix under the names llama.cpp, Hugging Face BERT
/// and LLaMA checkpoints give it.
fn is_token_embedding(name: &str) -> bool {
    name == "token_embd.weight"
        || name.ends_with("word_embeddings.weight")
        || name.ends_with("embed_tokens.weight")
}

/// One line of the report.
struct Row {
    name: String,
    out_type: String,
    sqnr_db: Option<f64>,
    bytes_in: u64,
    bytes_out: u64,
    parameters: u64,
    note: String,
}

/// Where the output goes.
enum Sink {
    Gguf(GgufWriter),
    Safetensors(SafetensorsWriter),
}

impl Sink {
    fn write(&mut self, name: &str, bytes: &[u8]) -> modelopt_io::Result<()> {
        match self {
            Sink::Gguf(w) => w.write_tensor(name, bytes),
            Sink::Safetensors(w) => w.write_tensor(name, bytes),
        }
    }

    fn begin_tensor(&mut self, name: &str, len: usize) -> modelopt_io::Result<TensorOut<'_>> {
        match self {
            Sink::Gguf(w) => w.begin_tensor(name, len),
            Sink::Safetensors(w) => w.begin_tensor(name, len),
        }
    }

    fn finish(self) -> modelopt_io::Result<()> {
        match self {
            Sink::Gguf(w) => w.finish(),
            Sink::Safetensors(w) => w.finish(),
        }
    }
}

/// Sets up the global rayon pool (`--threads`, default all cores).
pub fn init_threads(threads: Option<usize>) -> CliResult<()> {
    if let Some(n) = threads {
        if n == 0 {
            return Err(CliError::Usage("--threads must be at least 1".into()));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| CliError::Failure(format!("cannot start {n} threads: {e}")))?;
    }
    Ok(())
}

/// Runs `quantize`.
pub fn run(args: &QuantizeArgs) -> CliResult<()> {
    let format = match args.format {
        Some(OutFormat::Gguf) => FileFormat::Gguf,
        Some(OutFormat::Safetensors) => FileFormat::Safetensors,
        None => FileFormat::from_extension(&args.output).ok_or_else(|| {
            CliError::Usage(format!(
                "{}: cannot tell the output format from the extension; use --format gguf|safetensors",
                args.output.display()
            ))
        })?,
    };
    if args.group_size == 0 {
        return Err(CliError::Usage("--group-size must be at least 1".into()));
    }
    if let TypeArg::Simple(t) = args.ty {
        check_type_for(t, "--type", args, format)?;
    }
    if let Some(t) = args.token_embedding_type {
        check_type_for(t, "--token-embedding-type", args, format)?;
    }
    if same_file(&args.input, &args.output) {
        return Err(CliError::Usage(format!(
            "{}: refusing to write the output over the input",
            args.output.display()
        )));
    }
    init_threads(args.threads)?;
    let start = Instant::now();
    let input = Checkpoint::open(&args.input)?;
    let target = args
        .ty
        .target(args.group_size, args.block_size, args.double_quant)?;
    let imatrix = args.imatrix.as_deref().map(Importance::read).transpose()?;
    let mut budget = None;
    let (tensors, actions, meta) = match llama_plan(args, format, &input, imatrix.as_ref())? {
        Some(_) if args.token_embedding_type.is_some() => {
            return Err(CliError::Usage(
                "--token-embedding-type is not supported with a preset on a GGUF model (its per-tensor rules choose the embeddings' type)".into(),
            ));
        }
        Some(p) => {
            budget = p.budget;
            (p.tensors, p.actions, Some(p.metadata))
        }
        None if args.bpw.is_some() || args.size.is_some() => {
            return Err(CliError::Usage(
                "--bpw / --size need a GGUF model input, GGUF output and a preset --type".into(),
            ));
        }
        None => {
            let tensors = input.tensors();
            let embedding_target = args
                .token_embedding_type
                .map(|t| t.target(args.group_size, args.block_size, args.double_quant));
            let actions = tensors
                .iter()
                .map(|t| {
                    let target = match embedding_target {
                        Some(e) if is_token_embedding(&t.info.name) => e,
                        _ => target,
                    };
                    plan(&t.info, t.is_float(), target, &args.keep)
                })
                .collect();
            (tensors, actions, None)
        }
    };

    // The imatrix is read and matched before the output is opened: a bad one leaves no file.
    let importance = match (&args.imatrix, imatrix) {
        (Some(p), Some(imp)) => {
            for (t, a) in tensors.iter().zip(&actions) {
                if let Action::Ggml { ty, .. } = a {
                    imp.for_tensor(p, &t.info.name, *ty, *t.info.shape.last().unwrap_or(&1))?;
                }
            }
            Some((p.as_path(), imp))
        }
        _ => None,
    };
    let calibrated = calibrate::run(&args.calib, &args.input, target)?;
    if let Some((cal, secs)) = &calibrated
        && !args.json
    {
        eprintln!(
            "calibrated {} linear layers on {} tokens per layer input in {secs:.1} s",
            cal.tensors.len(),
            cal.tokens
        );
    }
    let cal = calibrated.as_ref().map(|c| &c.0);

    let mut sink = open_sink(args, format, &input, &tensors, &actions, meta)?;
    let total_in: u64 = tensors.iter().map(|t| t.stored_bytes as u64).sum();
    let bar = progress_bar(total_in, args.json);
    let mut rows = Vec::with_capacity(tensors.len());
    for (t, action) in tensors.iter().zip(&actions) {
        bar.set_message(t.info.name.clone());
        let name = &t.info.name;
        rows.push(match cal {
            Some(c) if c.tensors.contains_key(name) => {
                // AWQ changed this weight's columns or, for its producer, rows: comparing the
                // stored values with the input's would measure the rescaling, not the error.
                let bias = name.strip_suffix(".weight").map(|n| format!("{n}.bias"));
                let rescaled = c.tensors[name].awq.is_some()
                    || bias.is_some_and(|b| c.biases.contains_key(&b));
                write_calibrated(&input, t, action, &c.tensors[name], rescaled, &mut sink)?
            }
            Some(c) if c.biases.contains_key(name) => {
                write_changed_bias(&input, t, action, format, &c.biases[name], &mut sink)?
            }
            _ => process(&input, t, action, format, &mut sink, importance.as_ref())?,
        });
        input.release(&t.info.name)?;
        bar.inc(t.stored_bytes as u64);
    }
    // An early return above drops the sink unfinished, which removes its temporary file.
    sink.finish()?;
    bar.finish_and_clear();
    report(args, format, &rows, start.elapsed().as_secs_f64(), budget);
    Ok(())
}

/// The byte-progress bar on stderr, hidden with `--json` or when stderr is not a terminal.
pub(crate) fn progress_bar(total: u64, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::default_bar()
        .template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()).with_style(style)
}

/// The output tensors (codes first, then companions) and quantization metadata for an input
/// tensor under its action.
type Declared = (Vec<TensorInfo>, Option<(String, String)>);

fn out_info(t: &CheckpointTensor, action: &Action, format: FileFormat) -> CliResult<Declared> {
    let info = &t.info;
    let shape = info.shape.clone();
    let layout = match (action, format) {
        (Action::Ggml { ty, .. }, FileFormat::Gguf) => {
            return Ok((
                vec![TensorInfo::new(info.name.clone(), DType::Ggml(*ty), shape)],
                None,
            ));
        }
        (Action::Keep(_), _) => {
            let shape = if shape.is_empty() { vec![1] } else { shape };
            return Ok((
                vec![TensorInfo::new(info.name.clone(), info.dtype, shape)],
                None,
            ));
        }
        (Action::Copy(_), FileFormat::Gguf) => {
            let shape = if shape.is_empty() { vec![1] } else { shape };
            let stays = t.layout.is_none() && gguf_keeps_integer(info.dtype);
            let dtype = if stays { info.dtype } else { DType::F32 };
            return Ok((vec![TensorInfo::new(info.name.clone(), dtype, shape)], None));
        }
        (Action::Ggml { ty, .. }, _) => QuantLayout::Ggml {
            ggml_type: *ty,
            shape,
        },
        (Action::Int8, _) => QuantLayout::Int8PerChannel { shape },
        (Action::Int4 { group_size }, _) => QuantLayout::Int4Grouped {
            shape,
            group_size: *group_size,
        },
        (Action::Nonlinear(n), _) => n.layout(shape),
        (Action::Copy(_), _) => match (&t.layout, info.dtype) {
            (Some(q), _) => q.clone(),
            (None, DType::Ggml(ty)) => QuantLayout::Ggml {
                ggml_type: ty,
                shape,
            },
            (None, _) => return Ok((vec![info.clone()], None)),
        },
    };
    let (infos, meta) = layout.safetensors_entries(&info.name)?;
    Ok((infos, Some(meta)))
}

fn open_sink(
    args: &QuantizeArgs,
    format: FileFormat,
    input: &Checkpoint,
    tensors: &[CheckpointTensor],
    actions: &[Action],
    gguf_meta: Option<Vec<(String, GgufValue)>>,
) -> CliResult<Sink> {
    let mut infos = Vec::with_capacity(tensors.len());
    let mut quant_meta = Vec::new();
    for (t, a) in tensors.iter().zip(actions) {
        let (declared, meta) = out_info(t, a, format)?;
        infos.extend(declared);
        quant_meta.extend(meta);
    }
    Ok(match format {
        FileFormat::Gguf if gguf_meta.is_some() => Sink::Gguf(GgufWriter::create(
            &args.output,
            gguf_meta.unwrap_or_default(),
            infos,
        )?),
        FileFormat::Gguf => {
            let mut meta: Vec<(String, GgufValue)> = match input {
                Checkpoint::Gguf(g) => g
                    .metadata()
                    .iter()
                    // Both describe the old tensor types; the writer sets the quantization version.
                    .filter(|(k, _)| {
                        k != "general.quantization_version" && k != "general.file_type"
                    })
                    .cloned()
                    .collect(),
                _ => Vec::new(),
            };
            if !meta.iter().any(|(k, _)| k == "general.name")
                && let Some(stem) = args.input.file_stem().and_then(|s| s.to_str())
            {
                meta.push(("general.name".into(), GgufValue::from(stem)));
            }
            Sink::Gguf(GgufWriter::create(&args.output, meta, infos)?)
        }
        _ => {
            let mut meta: BTreeMap<String, String> = match input {
                Checkpoint::Safetensors(f, _) => f
                    .metadata()
                    .iter()
                    .filter(|(k, _)| !k.starts_with(QUANT_KEY_PREFIX))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                _ => BTreeMap::new(),
            };
            meta.insert(FORMAT_KEY.into(), FORMAT_VERSION.into());
            meta.extend(quant_meta);
            Sink::Safetensors(SafetensorsWriter::create(&args.output, infos, meta)?)
        }
    })
}

fn process(
    input: &Checkpoint,
    t: &CheckpointTensor,
    action: &Action,
    format: FileFormat,
    sink: &mut Sink,
    importance: Option<&(&std::path::Path, Importance)>,
) -> CliResult<Row> {
    let name = &t.info.name;
    let at = |p: String| failure(input.path(), format!("tensor `{name}`: {p}"));
    let parameters = t.info.elements()? as u64;
    let shape = &t.info.shape;
    let (out_type, sqnr_db, bytes_out, note) = match action {
        Action::Ggml { ty, note } => {
            let row = *shape.last().unwrap_or(&1);
            let n = ggml_bytes(*ty, parameters as usize, row).map_err(at)?;
            // The rows are quantized in parallel and each group of them written straight to its
            // place in the output: no tensor-sized buffer, and the copy into the page cache is
            // shared by the threads.
            let weights = match importance {
                Some((p, imp)) => imp.for_tensor(p, name, *ty, row)?,
                None => None,
            };
            let part = sink.begin_tensor(name, n)?;
            let sums = with_source(input, t, |src| {
                quantize_ggml_weighted(*ty, src, row, weights, |offset, bytes| {
                    part.write_at(offset, bytes).map_err(|e| e.to_string())
                })
                .map_err(at)
            })?;
            part.finish()?;
            let mut note = note.clone().unwrap_or_default();
            if importance.is_some() {
                let imatrix = Importance::note(*ty, weights.is_some());
                note = if note.is_empty() {
                    imatrix.to_string()
                } else {
                    format!("{note}; {imatrix}")
                };
            }
            (ty.name().to_string(), Some(sqnr_db(sums)), n, note)
        }
        Action::Int8 | Action::Int4 { .. } => {
            let n = parameters as usize;
            let (scheme, row_len, kind) = match action {
                Action::Int4 { group_size } => (
                    QuantScheme::int4().per_group(1, *group_size),
                    *shape.last().unwrap_or(&1),
                    "int4",
                ),
                _ => (
                    QuantScheme::int8().per_channel(0),
                    n / shape.first().copied().unwrap_or(1).max(1),
                    "int8",
                ),
            };
            let q = with_source(input, t, |src| {
                quantize_uniform(&scheme, src, row_len).map_err(at)
            })?;
            let scales = f32_to_bytes(&q.scales);
            let n = q.codes.len() + scales.len();
            sink.write(name, &q.codes)?;
            sink.write(&format!("{name}{SCALE_SUFFIX}"), &scales)?;
            (kind.to_string(), Some(sqnr_db(q.sums)), n, String::new())
        }
        Action::Keep(why) => {
            let b = input.tensor_bytes(name)?;
            sink.write(name, b)?;
            (t.info.dtype.name().to_string(), None, b.len(), why.clone())
        }
        Action::Nonlinear(target) => {
            let e = crate::nonlinear::encode(input, t, *target)?;
            let mut n = 0;
            for (part, bytes) in &e.parts {
                n += bytes.len();
                sink.write(part, bytes)?;
            }
            (target.name(), Some(e.sqnr_db), n, String::new())
        }
        Action::Copy(why) => {
            let (declared, _) = out_info(t, action, format)?;
            let mut n = 0;
            if format == FileFormat::Gguf && declared[0].dtype != t.info.dtype {
                let b = f32_to_bytes(&to_f32_any(input, t)?);
                n += b.len();
                sink.write(name, &b)?;
            } else {
                let b = input.tensor_bytes(name)?;
                n += b.len();
                sink.write(name, b)?;
                for (d, c) in declared[1..].iter().zip(input.companion_bytes(name)?) {
                    n += c.len();
                    sink.write(&d.name, c)?;
                }
            }
            let ty = declared[0].dtype.name();
            let ty = t
                .layout
                .as_ref()
                .filter(|_| format != FileFormat::Gguf)
                .map_or(ty, |q| q.name());
            (ty.to_string(), None, n, format!("copied: {why}"))
        }
    };
    Ok(Row {
        name: name.clone(),
        out_type,
        sqnr_db,
        bytes_in: t.stored_bytes as u64,
        bytes_out: bytes_out as u64,
        parameters,
        note,
    })
}

/// Writes a bias that the calibration changed (AWQ folded its input scales into the layer),
/// stored as the input stores it: f32 values only (the copy of a plain f32 tensor).
fn write_changed_bias(
    input: &Checkpoint,
    t: &CheckpointTensor,
    action: &Action,
    format: FileFormat,
    values: &ndarray::Array1<f32>,
    sink: &mut Sink,
) -> CliResult<Row> {
    let name = &t.info.name;
    let (declared, _) = out_info(t, action, format)?;
    if !matches!(action, Action::Copy(_)) || declared.len() != 1 || declared[0].dtype != DType::F32
    {
        return Err(failure(
            input.path(),
            format!(
                "tensor `{name}`: the calibration changed it (AWQ scales folded into its layer) but it is written as {:?}, not copied as F32; quantize a checkpoint with F32 biases",
                declared[0].dtype
            ),
        ));
    }
    if values.len() as u64 != t.info.elements()? as u64 {
        return Err(failure(
            input.path(),
            format!(
                "tensor `{name}`: the calibration changed it to {} values",
                values.len()
            ),
        ));
    }
    let b = f32_to_bytes(values.as_slice().unwrap_or(&values.to_vec()));
    sink.write(name, &b)?;
    Ok(Row {
        name: name.clone(),
        out_type: DType::F32.name().to_string(),
        sqnr_db: None,
        bytes_in: t.stored_bytes as u64,
        bytes_out: b.len() as u64,
        parameters: t.info.elements()? as u64,
        note: "AWQ input scales folded in".to_string(),
    })
}

/// Writes a tensor calibrated by `--calibrate` (its stored form was computed already).
fn write_calibrated(
    input: &Checkpoint,
    t: &CheckpointTensor,
    action: &Action,
    c: &CalibratedTensor,
    rescaled: bool,
    sink: &mut Sink,
) -> CliResult<Row> {
    let name = &t.info.name;
    let mismatch = || {
        failure(
            input.path(),
            format!(
                "tensor `{name}`: calibrated as {:?}, planned as {action:?}",
                c.format
            ),
        )
    };
    let x = input.tensor_f32(name)?;
    let (sx, se) = x
        .iter()
        .zip(&c.dequantized)
        .fold((0f64, 0f64), |(a, b), (&v, &q)| {
            let d = f64::from(v) - f64::from(q);
            (a + f64::from(v) * f64::from(v), b + d * d)
        });
    let (out_type, n) = match (action, c.format) {
        (Action::Ggml { ty, .. }, Format::Ggml(cty)) if *ty == cty => {
            sink.write(name, &c.data)?;
            (ty.name().to_string(), c.data.len())
        }
        (Action::Int4 { group_size }, Format::Int4 { group_size: g }) if *group_size == g => {
            let scales = f32_to_bytes(&c.scales);
            sink.write(name, &c.data)?;
            sink.write(&format!("{name}{SCALE_SUFFIX}"), &scales)?;
            ("int4".to_string(), c.data.len() + scales.len())
        }
        _ => return Err(mismatch()),
    };
    let note = match &c.gptq {
        Some(r) if r.damp_raises > 0 || r.dead_columns > 0 => format!(
            "calibrated (GPTQ; dampening raised {} times to {}, {} dead columns)",
            r.damp_raises, r.damp, r.dead_columns
        ),
        Some(_) => "calibrated (GPTQ)".to_string(),
        None => match (&c.awq, rescaled) {
            (Some(a), _) => format!(
                "calibrated (AWQ alpha {:.2}: calibration error {:.3}x round-to-nearest's)",
                a.alpha,
                a.error / a.error_unscaled.max(f64::MIN_POSITIVE)
            ),
            (None, true) => "round-to-nearest; rows rescaled by AWQ for the next layer".to_string(),
            (None, false) if c.method == Method::Awq => {
                "round-to-nearest (AWQ: its input scales fold into no layer)".to_string()
            }
            (None, false) => "calibrated (imatrix)".to_string(),
        },
    };
    Ok(Row {
        name: name.clone(),
        out_type,
        sqnr_db: (!rescaled).then(|| sqnr_db((sx, se))),
        bytes_in: t.stored_bytes as u64,
        bytes_out: n as u64,
        parameters: t.info.elements()? as u64,
        note,
    })
}

/// Runs `f` on the tensor's values: plain floats read from the file piece by piece inside the
/// parallel loop (`pread` into per-thread buffers: on the 537 MB bench file, faulting the mapped
/// pages in and releasing them again cost a third of the command's CPU time), quantized inputs
/// dequantized first.
fn with_source<T>(
    input: &Checkpoint,
    t: &CheckpointTensor,
    f: impl FnOnce(Source<'_>) -> CliResult<T>,
) -> CliResult<T> {
    if t.layout.is_none() && t.info.dtype.element_bytes().is_some() {
        f(Source::File {
            input,
            name: &t.info.name,
            len: t.info.elements()?,
        })
    } else {
        let x = input.tensor_f32(&t.info.name)?;
        f(Source::F32(&x))
    }
}

/// Any tensor as f32: floats (and quantized) through the reader, integers converted.
fn to_f32_any(input: &Checkpoint, t: &CheckpointTensor) -> CliResult<Vec<f32>> {
    if t.is_float() {
        return Ok(input.tensor_f32(&t.info.name)?);
    }
    let t = &t.info;
    let b = input.tensor_bytes(&t.name)?;
    let eb = t.dtype.element_bytes().unwrap_or(1);
    Ok(b.chunks_exact(eb)
        .map(|c| {
            let mut a = [0u8; 8];
            a[..eb].copy_from_slice(c);
            let u = u64::from_le_bytes(a);
            match t.dtype {
                DType::I8 => c[0] as i8 as f32,
                DType::I16 => i16::from_le_bytes([c[0], c[1]]) as f32,
                DType::I32 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32,
                DType::I64 => u as i64 as f32,
                _ => u as f32, // unsigned and bool
            }
        })
        .collect())
}

fn report(
    args: &QuantizeArgs,
    format: FileFormat,
    rows: &[Row],
    seconds: f64,
    budget: Option<serde_json::Value>,
) {
    let bytes_in: u64 = rows.iter().map(|r| r.bytes_in).sum();
    let bytes_out: u64 = rows.iter().map(|r| r.bytes_out).sum();
    let params: u64 = rows.iter().map(|r| r.parameters).sum();
    let ratio = if bytes_out == 0 {
        0.0
    } else {
        bytes_in as f64 / bytes_out as f64
    };
    let bpw = if params == 0 {
        0.0
    } else {
        bytes_out as f64 * 8.0 / params as f64
    };
    let gbps = if seconds > 0.0 {
        bytes_in as f64 / seconds / 1e9
    } else {
        0.0
    };
    let quantized = rows.iter().filter(|r| r.sqnr_db.is_some()).count();
    if args.json {
        let tensors: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({"name": r.name, "type": r.out_type, "sqnr_db": r.sqnr_db.map(json_f64),
                       "bytes_before": r.bytes_in, "bytes_after": r.bytes_out,
                       "parameters": r.parameters, "note": r.note})
            })
            .collect();
        let doc = json!({
            "input": args.input.display().to_string(), "output": args.output.display().to_string(),
            "format": format.name(), "type": args.ty.name(),
            "tensors": tensors,
            "totals": {"tensors": rows.len(), "quantized": quantized, "parameters": params,
                       "bytes_before": bytes_in, "bytes_after": bytes_out,
                       "compression_ratio": json_f64(ratio), "bits_per_weight": json_f64(bpw),
                       "seconds": json_f64(seconds), "gb_per_s": json_f64(gbps)},
            "budget": budget,
        });
        println!("{doc}");
        return;
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.out_type.clone(),
                r.sqnr_db.map_or("-".into(), db),
                format!("{} -> {}", bytes(r.bytes_in), bytes(r.bytes_out)),
                r.note.clone(),
            ]
        })
        .collect();
    print_table(&["name", "type", "SQNR dB", "bytes", "note"], &table);
    println!(
        "total: {} tensors ({quantized} quantized), {} -> {} (ratio {ratio:.2}x, {bpw:.2} bits/weight), {seconds:.2} s, {gbps:.2} GB/s -> {} ({})",
        rows.len(),
        bytes(bytes_in),
        bytes(bytes_out),
        args.output.display(),
        format.name()
    );
    if let Some(b) = budget {
        println!("budget: {b}");
    }
}
