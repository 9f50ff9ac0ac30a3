//! `modelopt prune IN -o OUT --amount A ...`: pruned weights written as zeros in the same shapes
//! and dtypes, or (`--shrink SPEC`) coupled channels removed for smaller tensors.
//!
//! Local scope reads one tensor at a time; global scope holds the f32 values of the pruned
//! tensors (their scores) until the one selection over all of them is done; `--shrink` holds one
//! coupling group at a time. The algorithms are the prune crate's; this module decodes, plans,
//! writes and reports.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use clap::ValueEnum;
use modelopt_calibrate::PrunedTensor;
use modelopt_io::{
    Checkpoint, DType, SafetensorsFile, SafetensorsWriter, TensorInfo, decode_f32, encode_f32,
    same_file,
};
use modelopt_prune::shrink::{CouplingSpec, Shrinker};
use modelopt_prune::{
    Amount, HalfFormat, L1Magnitude, Mask, Norm, PruneError, Pruner, Scope, Structure, WandaByName,
    criterion_by_name, prune_magnitude_in_place, prune_magnitude_in_place_half,
    select_channel_bytes, zero_pruned_bytes,
};
use modelopt_quantize::gptq::Sparsity;
use modelopt_tensor_core::Par;
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};
use rayon::prelude::*;
use serde_json::json;

use crate::error::{CliError, CliResult, failure};
use crate::format::{bytes, json_f64, print_table};
use crate::glob;
use crate::quantize::{init_threads, progress_bar};

/// The criteria of `--criterion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CriterionArg {
    /// |w| (torch's l1_unstructured / ln_structured).
    L1,
    /// w^2.
    L2,
    /// Seeded random scores (`--seed`), reproducible; each tensor draws its own.
    Random,
    /// Wanda: |w| times the L2 norm of the weight's input feature over calibration text
    /// (needs --calibrate and --text; prunes the linear layers whose inputs were seen).
    Wanda,
    /// SparseGPT: prunes each linear layer and updates its kept weights to make up for the
    /// pruned ones on the calibration inputs, layer after layer (needs --calibrate and --text;
    /// unstructured with a fractional --amount, or N:M).
    #[value(name = "sparsegpt")]
    SparseGpt,
}

/// The scopes of `--scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// Each tensor pruned by the amount on its own.
    Tensor,
    /// All pruned tensors' weights ranked together (unstructured only, as torch's
    /// global_unstructured).
    Global,
}

const AFTER_HELP: &str = "\
Units and amounts:
  --amount with a decimal point (0.5, 1.0, .3) is a fraction of the units still unpruned
  (round half to even, as torch); without one (1000) it is a count. Exact zeros already in the
  input count as pruned, so pruning a pruned file again takes the amount of what remains, as
  torch's PruningContainer does. N:M fixes the sparsity at (M-N)/M: --amount is not needed.
  A unit is a weight (unstructured, global), a slice along AXIS ranked by the --norm of its
  scores (channels[:AXIS], default axis 0 = output channels), or a group of M consecutive
  weights along axis 1 of which N are kept (N:M).

Which tensors: F32, F16 and BF16 tensors with at least 2 dimensions, minus --keep matches
(`*` any run of characters, `?` one). Others, and tensors the structure does not fit (N:M
needs axis 1 a multiple of M), are copied unchanged; the report says why. Pruned weights are
written as zeros, same shapes, same dtype; every other byte is copied.

--shrink SPEC removes channels physically (coupled structured pruning) and writes smaller
tensors; --amount is then the fraction (or count) of each group's channels to remove, ranked
by the --norm of the --criterion scores of all the group's members together; tensors outside
the groups are copied unchanged. A group lists NAME:AXIS members whose AXIS indexes the same
channels, separated by commas; groups are separated by `;`. In a name, `*` stands for one
dot-free part (e.g. a layer number) and is matched consistently across the group: each match
of the first member makes one group, with the same part put into the other members. A group
never loses all its channels; --multiple-of M keeps channel counts a multiple of M.
  MiniLM / BERT feed-forward, every layer:
    --shrink 'encoder.layer.*.intermediate.dense.weight:0, encoder.layer.*.intermediate.dense.bias:0, encoder.layer.*.output.dense.weight:1'
  Two-layer MLP:   --shrink 'fc1.weight:0, fc1.bias:0, fc2.weight:1'

Exit status: 0 on success, 2 on a usage error (bad amount, a count above the number of units,
options that do not go together), 1 on any other failure (one line naming the file).";

/// Arguments of `modelopt prune`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct PruneArgs {
    /// Input checkpoint (safetensors).
    pub input: PathBuf,
    /// Output safetensors file (written to a temporary file beside it, renamed when complete).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// How much to prune: a fraction of the remaining units with a decimal point (0.5), a count
    /// without one (1000). Not needed for N:M.
    #[arg(long, value_name = "A", allow_hyphen_values = true)]
    pub amount: Option<String>,
    /// How weights are scored (low scores are pruned first).
    #[arg(long, value_enum, default_value_t = CriterionArg::L1)]
    pub criterion: CriterionArg,
    /// Seed of `--criterion random`. Each tensor's scores use a seed derived from N and the
    /// tensor's name (FNV-1a 64, stable across platforms and versions), so tensors of the same
    /// shape get different masks and the same N gives the same output; likewise with --scope
    /// global and --shrink.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub seed: u64,
    /// The unit pruned: unstructured, channels[:AXIS] (default axis 0), N:M (e.g. 2:4), or
    /// block:RxC (2-D tensors).
    #[arg(long, default_value = "unstructured", value_name = "S")]
    pub structure: String,
    /// Norm of a channel's scores (channels, --shrink): 1, 2 or inf.
    #[arg(long, default_value = "2", value_name = "N")]
    pub norm: String,
    /// Rank each tensor alone, or all pruned tensors together (unstructured only).
    #[arg(long, value_enum, default_value_t = ScopeArg::Tensor)]
    pub scope: ScopeArg,
    /// Leave tensors whose name matches this pattern (`*`, `?`) unpruned; repeatable.
    #[arg(long = "keep", value_name = "GLOB")]
    pub keep: Vec<String>,
    /// Remove coupled channels physically and write smaller tensors (see below for SPEC).
    #[arg(long, value_name = "SPEC", conflicts_with_all = ["structure", "scope", "keep"])]
    pub shrink: Option<String>,
    /// With --shrink, keep each group's channel count a multiple of M (rounded up).
    #[arg(long, value_name = "M", requires = "shrink")]
    pub multiple_of: Option<usize>,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Print the report as one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// With --criterion wanda or sparsegpt: the model folder (config.json, tokenizer.json) of
    /// the input, a BERT encoder such as all-MiniLM-L6-v2.
    #[arg(long, value_name = "MODEL_DIR", requires = "text")]
    pub calibrate: Option<PathBuf>,
    /// With --criterion wanda or sparsegpt: calibration text, one sentence per line.
    #[arg(long, value_name = "FILE", requires = "calibrate")]
    pub text: Option<PathBuf>,
    /// Use the first N lines of --text (default: all).
    #[arg(long, value_name = "N")]
    pub samples: Option<usize>,
}

impl CriterionArg {
    fn name(self) -> &'static str {
        match self {
            CriterionArg::L1 => "l1",
            CriterionArg::L2 => "l2",
            CriterionArg::Random => "random",
            CriterionArg::Wanda => "wanda",
            CriterionArg::SparseGpt => "sparsegpt",
        }
    }
}

/// A usage error (exit 2) for a prune error that the arguments caused (an amount above the
/// units available), a failure naming the file otherwise.
fn prune_error(path: &Path, e: PruneError) -> CliError {
    let mut inner = &e;
    while let PruneError::InTensor { source, .. } = inner {
        inner = source;
    }
    let msg = format!("{}: {e}", path.display());
    match inner {
        PruneError::AmountTooLarge { .. } => CliError::Usage(msg),
        _ => CliError::Failure(msg),
    }
}

/// One line of the report.
struct Row {
    name: String,
    dtype: String,
    shape_before: Vec<usize>,
    shape_after: Vec<usize>,
    parameters_before: u64,
    parameters_after: u64,
    bytes_before: u64,
    bytes_after: u64,
    /// Zeros before and after (pruned tensors only).
    zeros: Option<(u64, u64)>,
    note: String,
}

/// What happens to one stored tensor.
#[derive(Debug, Clone, PartialEq)]
enum Plan {
    Prune,
    Copy(String),
}

/// Runs `prune`.
pub fn run(args: &PruneArgs) -> CliResult<()> {
    let usage = |m: String| CliError::Usage(m);
    let structure: Structure = args
        .structure
        .parse()
        .map_err(|e: PruneError| usage(format!("--structure: {e}")))?;
    let norm: Norm = args
        .norm
        .parse()
        .map_err(|e: PruneError| usage(format!("--norm: {e}")))?;
    let structure = structure.with_norm(norm);
    let amount = match (&args.amount, structure) {
        (Some(a), _) => a
            .parse::<Amount>()
            .map_err(|e| usage(format!("--amount: {e}")))?,
        (None, Structure::NM { .. }) => Amount::Fraction(0.0), // unused
        (None, _) => return Err(usage("--amount is required (e.g. --amount 0.5)".into())),
    };
    if args.scope == ScopeArg::Global && structure != Structure::Unstructured {
        return Err(usage(
            "--scope global ranks single weights: it needs --structure unstructured (as torch's global_unstructured)".into(),
        ));
    }
    if args.multiple_of == Some(0) {
        return Err(usage("--multiple-of must be at least 1".into()));
    }
    let spec = match &args.shrink {
        Some(s) => Some(
            s.parse::<CouplingSpec>()
                .map_err(|e| usage(format!("--shrink: {e}")))?,
        ),
        None => None,
    };
    if same_file(&args.input, &args.output) {
        return Err(usage(format!(
            "{}: refusing to write the output over the input",
            args.output.display()
        )));
    }
    init_threads(args.threads)?;
    let start = Instant::now();
    let ckpt = Checkpoint::open(&args.input)?;
    let (file, quantized) = match &ckpt {
        Checkpoint::Safetensors(f, layouts) => {
            let mut q: HashSet<String> = HashSet::new();
            for (name, l) in layouts {
                q.insert(name.clone());
                for (suffix, _, _) in l.companions() {
                    q.insert(format!("{name}{suffix}"));
                }
            }
            (f, q)
        }
        _ => {
            return Err(failure(
                &args.input,
                "prune reads safetensors files; this is GGUF",
            ));
        }
    };
    let calibrated = matches!(
        args.criterion,
        CriterionArg::Wanda | CriterionArg::SparseGpt
    );
    let (Some(dir), Some(text)) = (&args.calibrate, &args.text) else {
        if calibrated {
            return Err(usage(format!(
                "--criterion {} needs --calibrate MODEL_DIR --text FILE",
                args.criterion.name()
            )));
        }
        return prune_file(
            args, file, &quantized, spec, amount, structure, norm, None, start,
        );
    };
    if !calibrated {
        return Err(usage(
            "--calibrate works with --criterion wanda or sparsegpt".into(),
        ));
    }
    if spec.is_some() {
        return Err(usage(format!(
            "--criterion {} does not work with --shrink",
            args.criterion.name()
        )));
    }
    let by_calibration = if args.criterion == CriterionArg::Wanda {
        Calibrated::Wanda(crate::wanda::criterion(
            dir,
            text,
            args.samples,
            &args.input,
        )?)
    } else {
        let sparsity = match (structure, amount) {
            (Structure::Unstructured, Amount::Fraction(p)) if args.scope == ScopeArg::Tensor => {
                Sparsity::Unstructured(p)
            }
            // modelopt's N:M keeps N of every M; SparseGPT's counts the pruned ones.
            (Structure::NM { n, m }, _) if n < m => Sparsity::NM { n: m - n, m },
            _ => {
                return Err(usage(
                    "--criterion sparsegpt prunes per tensor, unstructured with a fractional --amount (0.5) or N:M (--structure 2:4)".into(),
                ));
            }
        };
        Calibrated::SparseGpt(crate::wanda::sparsegpt(
            dir,
            text,
            args.samples,
            &args.input,
            sparsity,
        )?)
    };
    prune_file(
        args,
        file,
        &quantized,
        None,
        amount,
        structure,
        norm,
        Some(&by_calibration),
        start,
    )
}

/// What calibration gave the pruning.
enum Calibrated {
    /// Wanda's criterion per linear weight.
    Wanda(WandaByName),
    /// SparseGPT's pruned weights by name.
    SparseGpt(BTreeMap<String, PrunedTensor>),
}

impl Calibrated {
    fn contains(&self, name: &str) -> bool {
        match self {
            Calibrated::Wanda(w) => w.contains(name),
            Calibrated::SparseGpt(t) => t.contains_key(name),
        }
    }
}

/// Prunes `file` (after the options were checked) and reports.
#[allow(clippy::too_many_arguments)]
fn prune_file(
    args: &PruneArgs,
    file: &SafetensorsFile,
    quantized: &HashSet<String>,
    spec: Option<CouplingSpec>,
    amount: Amount,
    structure: Structure,
    norm: Norm,
    calibrated: Option<&Calibrated>,
    start: Instant,
) -> CliResult<()> {
    let usage = |m: String| CliError::Usage(m);
    let criterion = || criterion_by_name(args.criterion.name(), args.seed);
    let rows = match spec {
        Some(spec) => {
            let mut shrinker = Shrinker::new(amount)
                .norm(norm)
                .criterion(criterion().map_err(|e| prune_error(&args.input, e))?);
            if let Some(m) = args.multiple_of {
                shrinker = shrinker
                    .multiple_of(m)
                    .map_err(|e| usage(format!("--multiple-of: {e}")))?;
            }
            let (rows, groups) = shrink(args, file, quantized, &spec, &shrinker)?;
            report_shrink(args, &rows, &groups, start.elapsed().as_secs_f64());
            return Ok(());
        }
        None => {
            let pruner = match calibrated {
                Some(Calibrated::Wanda(w)) => Pruner::boxed(Box::new(w.clone())),
                // Unused: the weights come pruned.
                Some(Calibrated::SparseGpt(_)) => Pruner::boxed(Box::new(L1Magnitude)),
                None => Pruner::boxed(criterion().map_err(|e| prune_error(&args.input, e))?),
            }
            .amount(amount)
            .structure(structure);
            let plans: Vec<Plan> = file
                .tensors()
                .iter()
                .map(|t| match calibrated {
                    Some(c) if !c.contains(&t.name) => {
                        Plan::Copy("no calibration inputs (not a linear layer's weight)".into())
                    }
                    _ => plan(t, quantized, structure, &args.keep),
                })
                .collect();
            check_count(args, file.tensors(), &plans, amount, structure)?;
            // L1/L2 magnitude, unstructured, per tensor: pruned in the read buffer, no mask.
            let reconstructed = match calibrated {
                Some(Calibrated::SparseGpt(t)) => Some(t),
                _ => None,
            };
            let in_place = (matches!(args.criterion, CriterionArg::L1 | CriterionArg::L2)
                && structure == Structure::Unstructured
                && args.scope == ScopeArg::Tensor
                && cfg!(target_endian = "little"))
            .then_some(amount);
            mask_and_write(args, file, &plans, &pruner, in_place, reconstructed)?
        }
    };
    report(args, &rows, structure, start.elapsed().as_secs_f64());
    Ok(())
}

/// Decides whether stored tensor `t` is pruned.
fn plan(t: &TensorInfo, quantized: &HashSet<String>, st: Structure, keep: &[String]) -> Plan {
    if let Some(p) = keep.iter().find(|p| glob::matches(p, &t.name)) {
        return Plan::Copy(format!("kept by --keep {p}"));
    }
    if quantized.contains(&t.name) {
        return Plan::Copy("part of a quantized tensor".into());
    }
    if !matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Plan::Copy(format!("{} is not pruned (F32, F16, BF16 are)", t.dtype));
    }
    let s = &t.shape;
    if s.len() < 2 {
        return Plan::Copy(format!("{}-D tensor", s.len()));
    }
    if s.contains(&0) {
        return Plan::Copy("empty tensor".into());
    }
    match st {
        Structure::Channels { axis, .. } if axis >= s.len() => {
            Plan::Copy(format!("no axis {axis} in a {}-D tensor", s.len()))
        }
        Structure::NM { m, .. } if !s[1].is_multiple_of(m) => Plan::Copy(format!(
            "axis 1 has length {}, not a multiple of {m} (N:M)",
            s[1]
        )),
        Structure::Block { rows, cols }
            if s.len() != 2 || !s[0].is_multiple_of(rows) || !s[1].is_multiple_of(cols) =>
        {
            Plan::Copy(format!("{s:?} is not tiled by {rows}x{cols} blocks"))
        }
        _ => Plan::Prune,
    }
}

/// Units a tensor of `shape` has under `st`.
fn units(shape: &[usize], st: Structure) -> usize {
    let n: usize = shape.iter().product();
    match st {
        Structure::Channels { axis, .. } => shape.get(axis).copied().unwrap_or(0),
        Structure::Block { rows, cols } => n / (rows * cols).max(1),
        _ => n,
    }
}

/// A count above the units of a tensor (or of all, for global scope) is a usage error, found
/// before anything is read.
fn check_count(
    args: &PruneArgs,
    tensors: &[TensorInfo],
    plans: &[Plan],
    amount: Amount,
    st: Structure,
) -> CliResult<()> {
    let Amount::Count(c) = amount else {
        return Ok(());
    };
    if matches!(st, Structure::NM { .. }) {
        return Ok(());
    }
    let pruned = tensors
        .iter()
        .zip(plans)
        .filter(|(_, p)| **p == Plan::Prune);
    let over = |have: usize, what: String| {
        CliError::Usage(format!(
            "{}: --amount {c} exceeds the {have} units of {what}",
            args.input.display()
        ))
    };
    if args.scope == ScopeArg::Global {
        let total: usize = pruned.map(|(t, _)| units(&t.shape, st)).sum();
        if c > total {
            return Err(over(total, "all pruned tensors together".into()));
        }
        return Ok(());
    }
    for (t, _) in pruned {
        let u = units(&t.shape, st);
        if c > u {
            return Err(over(u, format!("tensor `{}`", t.name)));
        }
    }
    Ok(())
}

/// Elements per parallel work item.
const CHUNK: usize = 1 << 16;

/// The stored values of a plain float tensor as f32, decoded in parallel into `out` (a buffer
/// reused from tensor to tensor).
fn decode_into(path: &Path, t: &TensorInfo, raw: &[u8], out: &mut Vec<f32>) -> CliResult<()> {
    let eb = t.dtype.element_bytes().unwrap_or(4);
    out.clear();
    out.resize(raw.len() / eb, 0.0);
    out.par_chunks_mut(CHUNK)
        .zip(raw.par_chunks(CHUNK * eb))
        .try_for_each(|(o, b)| decode_f32(t.dtype, b, o))
        .map_err(|e| failure(path, format!("tensor `{}`: {e}", t.name)))
}

/// The stored values of a plain float tensor as f32, decoded in parallel.
fn decode(path: &Path, t: &TensorInfo, raw: &[u8]) -> CliResult<Vec<f32>> {
    let mut out = Vec::new();
    decode_into(path, t, raw, &mut out)?;
    Ok(out)
}

fn count_zeros(x: &[f32]) -> u64 {
    x.par_chunks(CHUNK)
        .map(|c| c.iter().map(|&v| u64::from(v == 0.0)).sum::<u64>())
        .sum()
}

fn view<'a>(path: &Path, t: &TensorInfo, x: &'a [f32]) -> CliResult<ArrayViewD<'a, f32>> {
    ArrayViewD::from_shape(IxDyn(&t.shape), x)
        .map_err(|e| failure(path, format!("tensor `{}`: {e}", t.name)))
}

/// Masking mode: every planned tensor pruned (locally, one at a time, or globally), written in
/// the input's order with its zeros.
/// A tensor's output bytes on their way to the writer thread, in the type they were pruned in.
enum Buf {
    Bytes(Vec<u8>),
    F32(Vec<f32>),
    Half(Vec<u16>),
}

impl Buf {
    fn bytes(&self) -> &[u8] {
        match self {
            Buf::Bytes(b) => b,
            Buf::F32(v) => bytemuck::cast_slice(v),
            Buf::Half(v) => bytemuck::cast_slice(v),
        }
    }
}

/// Reads plain float tensor `t` into a reused buffer of its element type (pread, in parallel)
/// and prunes it there by magnitude: `(buffer, zeros before, zeros after)`.
fn prune_read_in_place(
    file: &SafetensorsFile,
    t: &TensorInfo,
    amount: Amount,
    spare: Option<Buf>,
) -> CliResult<(Buf, u64, u64)> {
    let path = file.path();
    let n = t.elements()?;
    let par = Par::all_cores();
    let err = |e: PruneError| {
        prune_error(
            path,
            PruneError::InTensor {
                name: t.name.clone(),
                source: Box::new(e),
            },
        )
    };
    let (buf, r) = match t.dtype {
        DType::F32 => {
            let mut v = match spare {
                Some(Buf::F32(v)) => v,
                _ => Vec::new(),
            };
            v.resize(n, 0.0);
            file.read_tensor_into(&t.name, bytemuck::cast_slice_mut(&mut v), par)?;
            let r = prune_magnitude_in_place(&mut v, amount, par).map_err(err)?;
            (Buf::F32(v), r)
        }
        DType::F16 | DType::BF16 => {
            let mut v = match spare {
                Some(Buf::Half(v)) => v,
                _ => Vec::new(),
            };
            v.resize(n, 0);
            file.read_tensor_into(&t.name, bytemuck::cast_slice_mut(&mut v), par)?;
            let format = if t.dtype == DType::F16 {
                HalfFormat::F16
            } else {
                HalfFormat::BF16
            };
            let r = prune_magnitude_in_place_half(&mut v, format, amount, par).map_err(err)?;
            (Buf::Half(v), r)
        }
        other => {
            return Err(failure(
                path,
                format!("tensor `{}`: {other} is not pruned", t.name),
            ));
        }
    };
    Ok((buf, r.zeros_before as u64, r.zeros_after as u64))
}

fn mask_and_write(
    args: &PruneArgs,
    file: &SafetensorsFile,
    plans: &[Plan],
    pruner: &Pruner,
    in_place: Option<Amount>,
    reconstructed: Option<&BTreeMap<String, PrunedTensor>>,
) -> CliResult<Vec<Row>> {
    let path = &args.input;
    let tensors = file.tensors();
    let meta = file.metadata().clone();
    let mut sink = SafetensorsWriter::create(&args.output, tensors.to_vec(), meta)?;
    let total: u64 = tensors.iter().map(|t| t.bytes().unwrap_or(0) as u64).sum();
    let bar = progress_bar(total, args.json);
    // Global scope: one selection over all pruned tensors' values, held in memory.
    let mut global: HashMap<String, Mask> = HashMap::new();
    let mut zeros_before: HashMap<String, u64> = HashMap::new();
    if args.scope == ScopeArg::Global {
        let mut values = Vec::new();
        for (t, _) in tensors
            .iter()
            .zip(plans)
            .filter(|(_, p)| **p == Plan::Prune)
        {
            bar.set_message(format!("reading {}", t.name));
            let x = decode(path, t, file.tensor_bytes(&t.name)?)?;
            zeros_before.insert(t.name.clone(), count_zeros(&x));
            file.release(&t.name)?;
            values.push((t, x));
        }
        let named = values
            .iter()
            .map(|(t, x)| Ok((t.name.as_str(), view(path, t, x)?)))
            .collect::<CliResult<Vec<_>>>()?;
        bar.set_message("ranking all weights");
        let masks = pruner
            .prune_named(&named, Scope::Global, true)
            .map_err(|e| prune_error(path, e))?;
        drop(named);
        drop(values);
        global = masks.into_iter().collect();
    }
    let mut rows = Vec::with_capacity(tensors.len());
    let bar = &bar;
    std::thread::scope(|s| -> CliResult<()> {
        // A writer thread writes tensor i while tensor i + 1 is pruned. Output buffers go to it
        // and come back for reuse (fresh pages cost more than the pruning), at most two in use.
        let (to_writer, jobs) = mpsc::sync_channel::<(usize, Option<Buf>)>(0);
        let (give_back, spare) = mpsc::channel::<Buf>();
        let writer = s.spawn(move || -> CliResult<()> {
            let mut written = 0;
            for (i, buf) in jobs {
                let t = &tensors[i];
                match buf {
                    Some(b) => {
                        // Positioned writes of a few MiB from several threads: the copy into
                        // the page cache is most of a pruned tensor's time.
                        const PIECE: usize = 4 << 20;
                        let bytes = b.bytes();
                        let out = sink.begin_tensor(&t.name, bytes.len())?;
                        bytes
                            .par_chunks(PIECE)
                            .enumerate()
                            .try_for_each(|(i, piece)| out.write_at(i * PIECE, piece))?;
                        out.finish()?;
                        let _ = give_back.send(b); // ok: the producer may be done
                    }
                    None => {
                        sink.write_tensor(&t.name, file.tensor_bytes(&t.name)?)?;
                        file.release(&t.name)?;
                    }
                }
                bar.inc(t.bytes().unwrap_or(0) as u64);
                written += 1;
            }
            // Only a complete file is moved into place; otherwise the temporary is removed.
            if written == tensors.len() {
                sink.finish()?;
            }
            Ok(())
        });
        let mut x = Vec::new();
        let produced = (|| -> CliResult<()> {
            for (i, (t, plan)) in tensors.iter().zip(plans).enumerate() {
                bar.set_message(t.name.clone());
                let raw = file.tensor_bytes(&t.name)?;
                let n = t.elements()? as u64;
                let mut row = Row {
                    name: t.name.clone(),
                    dtype: t.dtype.name().to_string(),
                    shape_before: t.shape.clone(),
                    shape_after: t.shape.clone(),
                    parameters_before: n,
                    parameters_after: n,
                    bytes_before: raw.len() as u64,
                    bytes_after: raw.len() as u64,
                    zeros: None,
                    note: String::new(),
                };
                let job = match plan {
                    Plan::Copy(why) => {
                        row.note = format!("copied: {why}");
                        None
                    }
                    Plan::Prune if reconstructed.is_some_and(|r| r.contains_key(&t.name)) => {
                        let p = &reconstructed.expect("checked")[&t.name]; // ok: guard
                        decode_into(path, t, raw, &mut x)?;
                        let before = count_zeros(&x);
                        let values = p.weights.as_slice().ok_or_else(|| {
                            failure(path, format!("tensor `{}`: weights not contiguous", t.name))
                        })?;
                        if values.len() != x.len() {
                            return Err(failure(
                                path,
                                format!(
                                    "tensor `{}`: SparseGPT gave {} values for {}",
                                    t.name,
                                    values.len(),
                                    x.len()
                                ),
                            ));
                        }
                        let out = encode_f32(t.dtype, values)
                            .map_err(|e| failure(path, format!("tensor `{}`: {e}", t.name)))?;
                        file.release(&t.name)?;
                        row.zeros = Some((before, count_zeros(values)));
                        row.note = format!(
                            "SparseGPT (dampening {}, {} dead columns)",
                            p.report.damp, p.report.dead_columns
                        );
                        Some(Buf::Bytes(out))
                    }
                    Plan::Prune if in_place.is_some() && !global.contains_key(&t.name) => {
                        let amount = in_place.unwrap_or(Amount::Fraction(0.0)); // ok: is_some
                        let (buf, before, after) =
                            prune_read_in_place(file, t, amount, spare.try_recv().ok())?;
                        row.zeros = Some((before, after));
                        Some(buf)
                    }
                    Plan::Prune => {
                        let (mask, before) = match global.remove(&t.name) {
                            Some(m) => (m, zeros_before.get(&t.name).copied().unwrap_or(0)),
                            None => {
                                decode_into(path, t, raw, &mut x)?;
                                let before = count_zeros(&x);
                                let m = pruner
                                    .prune_named(
                                        &[(t.name.as_str(), view(path, t, &x)?)],
                                        Scope::Local,
                                        true,
                                    )
                                    .map_err(|e| prune_error(path, e))?
                                    .pop()
                                    .map(|(_, m)| m)
                                    .ok_or_else(|| {
                                        failure(path, format!("tensor `{}`: no mask", t.name))
                                    })?;
                                (m, before)
                            }
                        };
                        let eb = t.dtype.element_bytes().unwrap_or(4);
                        let mut out = match spare.try_recv() {
                            Ok(Buf::Bytes(b)) => b,
                            _ => Vec::new(),
                        };
                        let keep = mask.keep();
                        let keep = keep.as_slice_memory_order().map_or_else(
                            || keep.iter().copied().collect::<Vec<bool>>().into(),
                            std::borrow::Cow::Borrowed,
                        );
                        zero_pruned_bytes(raw, eb, &keep, &mut out, Par::all_cores())
                            .map_err(|e| prune_error(path, e))?;
                        file.release(&t.name)?; // the input pages are no longer needed
                        row.zeros = Some((before, mask.num_pruned() as u64));
                        Some(Buf::Bytes(out))
                    }
                };
                rows.push(row);
                if to_writer.send((i, job)).is_err() {
                    break; // the writer stopped on an error, reported below
                }
            }
            Ok(())
        })();
        drop(to_writer);
        let written = writer
            .join()
            .map_err(|_| failure(&args.output, "the writer thread panicked"))?;
        produced?;
        written
    })?;
    bar.finish_and_clear();
    Ok(rows)
}

/// One coupling group in the report.
struct GroupRow {
    members: Vec<(String, usize)>,
    channels_before: usize,
    channels_after: usize,
}

/// `--shrink`: per group (one at a time), the channels to keep; then every tensor written with
/// its selections applied to the stored bytes (dtype unchanged).
fn shrink(
    args: &PruneArgs,
    file: &SafetensorsFile,
    quantized: &HashSet<String>,
    spec: &CouplingSpec,
    shrinker: &Shrinker,
) -> CliResult<(Vec<Row>, Vec<GroupRow>)> {
    let path = &args.input;
    let tensors = file.tensors();
    let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
    let spec = spec
        .resolve(&names)
        .map_err(|e| failure(path, format!("--shrink: {e}")))?;
    let info: HashMap<&str, &TensorInfo> = tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    // Per tensor, the (axis, kept indices) selections in group order.
    let mut selections: HashMap<String, Vec<(usize, Vec<usize>)>> = HashMap::new();
    let mut shapes: HashMap<String, Vec<usize>> = HashMap::new();
    let mut groups = Vec::new();
    for group in spec.groups() {
        let mut map: BTreeMap<String, ArrayD<f32>> = BTreeMap::new();
        for (name, axis) in group {
            let t = info[name.as_str()]; // ok: resolve checked every name
            if quantized.contains(name) || !matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16)
            {
                return Err(failure(
                    path,
                    format!(
                        "--shrink: tensor `{name}` is {}, not F32, F16 or BF16",
                        t.dtype
                    ),
                ));
            }
            let shape = shapes.get(name).unwrap_or(&t.shape);
            if *axis >= shape.len() {
                return Err(failure(
                    path,
                    format!("--shrink: tensor `{name}` {shape:?} has no axis {axis}"),
                ));
            }
            let x = decode(path, t, file.tensor_bytes(name)?)?;
            file.release(name)?;
            let mut a = ArrayD::from_shape_vec(IxDyn(&t.shape), x)
                .map_err(|e| failure(path, format!("tensor `{name}`: {e}")))?;
            for (ax, kept) in selections.get(name).into_iter().flatten() {
                a = a.select(Axis(*ax), kept);
            }
            map.insert(name.clone(), a);
        }
        let (kept, before) = shrinker
            .channels_to_keep(&map, group)
            .map_err(|e| prune_error(path, e))?;
        drop(map);
        for (name, axis) in group {
            let s = shapes
                .entry(name.clone())
                .or_insert_with(|| info[name.as_str()].shape.clone());
            s[*axis] = kept.len();
            selections
                .entry(name.clone())
                .or_default()
                .push((*axis, kept.clone()));
        }
        groups.push(GroupRow {
            members: group.clone(),
            channels_before: before,
            channels_after: kept.len(),
        });
    }
    let out_infos: Vec<TensorInfo> = tensors
        .iter()
        .map(|t| {
            let shape = shapes
                .get(&t.name)
                .cloned()
                .unwrap_or_else(|| t.shape.clone());
            TensorInfo::new(t.name.clone(), t.dtype, shape)
        })
        .collect();
    let mut sink =
        SafetensorsWriter::create(&args.output, out_infos.clone(), file.metadata().clone())?;
    let mut rows = Vec::with_capacity(tensors.len());
    for (t, o) in tensors.iter().zip(&out_infos) {
        let raw = file.tensor_bytes(&t.name)?;
        let (bytes_after, note) = match selections.get(&t.name) {
            Some(sel) => {
                let eb = t.dtype.element_bytes().unwrap_or(4);
                let mut shape = t.shape.clone();
                let mut cur = std::borrow::Cow::Borrowed(raw);
                for (axis, kept) in sel {
                    cur = select_channel_bytes(&cur, &shape, *axis, kept, eb)
                        .map_err(|e| prune_error(path, e))?
                        .into();
                    shape[*axis] = kept.len();
                }
                sink.write_tensor(&t.name, &cur)?;
                (cur.len(), String::new())
            }
            None => {
                sink.write_tensor(&t.name, raw)?;
                (raw.len(), "copied: in no group".to_string())
            }
        };
        file.release(&t.name)?;
        rows.push(Row {
            name: t.name.clone(),
            dtype: t.dtype.name().to_string(),
            shape_before: t.shape.clone(),
            shape_after: o.shape.clone(),
            parameters_before: t.elements()? as u64,
            parameters_after: o.elements()? as u64,
            bytes_before: raw.len() as u64,
            bytes_after: bytes_after as u64,
            zeros: None,
            note,
        });
    }
    sink.finish()?;
    Ok((rows, groups))
}

fn pct(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        100.0 * num as f64 / den as f64
    }
}

fn structure_name(s: Structure) -> String {
    match s {
        Structure::Unstructured => "unstructured".into(),
        Structure::Channels { axis, .. } => format!("channels:{axis}"),
        Structure::NM { n, m } => format!("{n}:{m}"),
        Structure::Block { rows, cols } => format!("block:{rows}x{cols}"),
        other => format!("{other:?}"),
    }
}

fn report(args: &PruneArgs, rows: &[Row], st: Structure, seconds: f64) {
    let params: u64 = rows.iter().map(|r| r.parameters_before).sum();
    let pruned_rows: Vec<&Row> = rows.iter().filter(|r| r.zeros.is_some()).collect();
    let pruned_params: u64 = pruned_rows.iter().map(|r| r.parameters_before).sum();
    let zeros_before: u64 = pruned_rows
        .iter()
        .filter_map(|r| r.zeros)
        .map(|z| z.0)
        .sum();
    let zeros_after: u64 = pruned_rows
        .iter()
        .filter_map(|r| r.zeros)
        .map(|z| z.1)
        .sum();
    let bytes_in: u64 = rows.iter().map(|r| r.bytes_before).sum();
    let gbps = if seconds > 0.0 {
        bytes_in as f64 / seconds / 1e9
    } else {
        0.0
    };
    if args.json {
        let tensors: Vec<_> = rows
            .iter()
            .map(|r| {
                let (zb, za) = r.zeros.unwrap_or((0, 0));
                json!({"name": r.name, "dtype": r.dtype, "shape": r.shape_before,
                       "parameters": r.parameters_before, "pruned": r.zeros.is_some(),
                       "zeros_before": zb, "zeros_after": za,
                       "sparsity_before": json_f64(pct(zb, r.parameters_before) / 100.0),
                       "sparsity_after": json_f64(pct(za, r.parameters_before) / 100.0),
                       "bytes": r.bytes_before, "note": r.note})
            })
            .collect();
        let doc = json!({
            "input": args.input.display().to_string(), "output": args.output.display().to_string(),
            "criterion": args.criterion.name(), "structure": structure_name(st),
            "scope": if args.scope == ScopeArg::Global { "global" } else { "tensor" },
            "amount": args.amount,
            "tensors": tensors,
            "totals": {"tensors": rows.len(), "pruned_tensors": pruned_rows.len(),
                       "parameters": params, "pruned_parameters": pruned_params,
                       "zeros_before": zeros_before, "zeros_after": zeros_after,
                       "sparsity_of_pruned_tensors": json_f64(pct(zeros_after, pruned_params) / 100.0),
                       "sparsity_of_all": json_f64(pct(zeros_after, params) / 100.0),
                       "bytes": bytes_in, "seconds": json_f64(seconds), "gb_per_s": json_f64(gbps)},
        });
        println!("{doc}");
        return;
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let sp = r.zeros.map_or("-".into(), |(b, a)| {
                format!(
                    "{:.2}% -> {:.2}%",
                    pct(b, r.parameters_before),
                    pct(a, r.parameters_before)
                )
            });
            vec![
                r.name.clone(),
                r.dtype.clone(),
                format!("{:?}", r.shape_before),
                r.parameters_before.to_string(),
                sp,
                r.note.clone(),
            ]
        })
        .collect();
    print_table(
        &["name", "dtype", "shape", "parameters", "sparsity", "note"],
        &table,
    );
    println!(
        "total: {} tensors ({} pruned, {} parameters), sparsity {:.2}% -> {:.2}% of pruned tensors, {:.2}% of all {} parameters; {} in {seconds:.2} s, {gbps:.2} GB/s -> {}",
        rows.len(),
        pruned_rows.len(),
        pruned_params,
        pct(zeros_before, pruned_params),
        pct(zeros_after, pruned_params),
        pct(zeros_after, params),
        params,
        bytes(bytes_in),
        args.output.display()
    );
}

fn report_shrink(args: &PruneArgs, rows: &[Row], groups: &[GroupRow], seconds: f64) {
    let pb: u64 = rows.iter().map(|r| r.parameters_before).sum();
    let pa: u64 = rows.iter().map(|r| r.parameters_after).sum();
    let bb: u64 = rows.iter().map(|r| r.bytes_before).sum();
    let ba: u64 = rows.iter().map(|r| r.bytes_after).sum();
    if args.json {
        let tensors: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({"name": r.name, "dtype": r.dtype, "shape_before": r.shape_before,
                       "shape_after": r.shape_after, "parameters_before": r.parameters_before,
                       "parameters_after": r.parameters_after, "bytes_before": r.bytes_before,
                       "bytes_after": r.bytes_after, "note": r.note})
            })
            .collect();
        let groups: Vec<_> = groups
            .iter()
            .map(|g| {
                let m: Vec<String> = g.members.iter().map(|(n, a)| format!("{n}:{a}")).collect();
                json!({"members": m, "channels_before": g.channels_before,
                       "channels_after": g.channels_after})
            })
            .collect();
        let doc = json!({
            "input": args.input.display().to_string(), "output": args.output.display().to_string(),
            "criterion": args.criterion.name(), "shrink": args.shrink, "amount": args.amount,
            "multiple_of": args.multiple_of,
            "groups": groups, "tensors": tensors,
            "totals": {"tensors": rows.len(), "groups": groups.len(),
                       "parameters_before": pb, "parameters_after": pa,
                       "bytes_before": bb, "bytes_after": ba, "seconds": json_f64(seconds)},
        });
        println!("{doc}");
        return;
    }
    let gt: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let m: Vec<String> = g.members.iter().map(|(n, a)| format!("{n}:{a}")).collect();
            vec![
                m.join(", "),
                format!("{} -> {}", g.channels_before, g.channels_after),
            ]
        })
        .collect();
    print_table(&["group", "channels"], &gt);
    println!();
    let table: Vec<Vec<String>> = rows
        .iter()
        .filter(|r| r.shape_before != r.shape_after || r.note.is_empty())
        .map(|r| {
            vec![
                r.name.clone(),
                r.dtype.clone(),
                format!("{:?} -> {:?}", r.shape_before, r.shape_after),
                format!("{} -> {}", r.parameters_before, r.parameters_after),
                format!("{} -> {}", bytes(r.bytes_before), bytes(r.bytes_after)),
            ]
        })
        .collect();
    print_table(&["name", "dtype", "shape", "parameters", "bytes"], &table);
    println!(
        "total: {} tensors ({} shrunk in {} groups, the rest copied), {pb} -> {pa} parameters, {} -> {} in {seconds:.2} s -> {}",
        rows.len(),
        table.len(),
        groups.len(),
        bytes(bb),
        bytes(ba),
        args.output.display()
    );
}
