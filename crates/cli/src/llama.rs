//! `modelopt quantize MODEL.gguf -o OUT.gguf --type PRESET`: the plan llama-quantize makes
//! (`llama_model_quantize_impl` in llama.cpp `src/llama-quant.cpp`): its tensor order, the type of
//! each tensor (see [`crate::preset`]), and its metadata.

use modelopt_io::{Checkpoint, CheckpointTensor, DType, FileFormat, GgufValue};

use modelopt_quantize::ggml::GgmlType;

use crate::error::{CliError, CliResult, failure};
use crate::glob;
use crate::importance::Importance;
use crate::plan::Action;
use crate::preset::{Model, Options, TensorMeta, llama_order, tensor_types};
use crate::quantize::{QuantizeArgs, TypeArg};

/// What llama mode writes: the tensors in output order, what happens to each, the metadata.
pub struct LlamaPlan {
    /// Input tensors in the output's order.
    pub tensors: Vec<CheckpointTensor>,
    /// One action per tensor.
    pub actions: Vec<Action>,
    /// The output's metadata, in order.
    pub metadata: Vec<(String, GgufValue)>,
    /// The size-budget allocation's summary (`--bpw` / `--size`).
    pub budget: Option<serde_json::Value>,
}

/// Metadata keys llama-quantize drops: the old type description (set again, last) and the split
/// description of sharded inputs (`LLM_KV_SPLIT_*`).
const DROPPED_KEYS: [&str; 5] = [
    "general.quantization_version",
    "general.file_type",
    "split.no",
    "split.count",
    "split.tensors.count",
];

/// The plan for a preset on a GGUF model (one with `general.architecture`) written to GGUF;
/// `None` otherwise (the plain per-tensor plan applies).
pub fn llama_plan(
    args: &QuantizeArgs,
    format: FileFormat,
    input: &Checkpoint,
    imatrix: Option<&Importance>,
) -> CliResult<Option<LlamaPlan>> {
    let (TypeArg::Preset(preset), Checkpoint::Gguf(g), FileFormat::Gguf) = (args.ty, input, format)
    else {
        return Ok(None);
    };
    let bad = |e: String| failure(input.path(), e);
    let Some(model) = Model::from_gguf(g).map_err(bad)? else {
        return Ok(None);
    };
    let all = input.tensors();
    let names: Vec<&str> = all.iter().map(|t| t.info.name.as_str()).collect();
    let tensors: Vec<CheckpointTensor> = llama_order(&names)
        .into_iter()
        .map(|i| all[i].clone())
        .collect();
    let metas: Vec<TensorMeta<'_>> = tensors
        .iter()
        .map(|t| TensorMeta {
            name: &t.info.name,
            shape: &t.info.shape,
            dtype: t.info.dtype,
        })
        .collect();
    let opts = Options {
        pure: args.pure,
        has_imatrix: imatrix.is_some(),
    };
    let types = tensor_types(&model, preset, opts, &metas).map_err(bad)?;
    let base = preset.base();
    let mut actions: Vec<Action> = tensors
        .iter()
        .zip(types)
        .map(|(t, ty)| {
            let dtype = t.info.dtype;
            if let Some(p) = args.keep.iter().find(|p| glob::matches(p, &t.info.name)) {
                return Action::Keep(format!("kept by --keep {p}"));
            }
            let Some(ty) = ty else {
                return Action::Keep("not quantized (llama-quantize's rules)".into());
            };
            if dtype == DType::from_ggml(ty) {
                return Action::Keep(format!("already {}", ty.name()));
            }
            if matches!(dtype, DType::Ggml(_)) && !args.allow_requantize {
                return Action::Keep(format!(
                    "already quantized ({dtype}); --allow-requantize re-quantizes it to {}",
                    ty.name()
                ));
            }
            let note = (Some(ty) != base).then(|| {
                format!(
                    "{} rule: {} -> {}",
                    preset.name(),
                    base.map_or("?", |b| b.name()),
                    ty.name()
                )
            });
            Action::Ggml { ty, note }
        })
        .collect();
    let budget = match (args.bpw, args.size) {
        (None, None) => None,
        (bpw, size) => Some(apply_budget(
            args,
            input,
            &tensors,
            &mut actions,
            imatrix,
            bpw,
            size,
        )?),
    };
    let mut metadata: Vec<(String, GgufValue)> = g
        .metadata()
        .iter()
        .filter(|(k, _)| !DROPPED_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    // gguf_set_val_u32 removes a key and appends it: both land last, in this order.
    metadata.push((
        "general.quantization_version".into(),
        GgufValue::U32(modelopt_io::GGML_QUANTIZATION_VERSION),
    ));
    metadata.push((
        "general.file_type".into(),
        GgufValue::U32(preset.file_type()),
    ));
    if let (Some(imp), Some(path)) = (imatrix, &args.imatrix) {
        metadata.extend(imp.gguf_metadata(path));
    }
    Ok(Some(LlamaPlan {
        tensors,
        actions,
        metadata,
        budget,
    }))
}

/// Replaces the types of the quantized tensors by the size-budget allocation (see
/// [`crate::budget`]); returns its summary, with the preset's own weighted error for comparison
/// when all its types are on the ladder.
fn apply_budget(
    args: &QuantizeArgs,
    input: &Checkpoint,
    tensors: &[CheckpointTensor],
    actions: &mut [Action],
    imatrix: Option<&Importance>,
    bpw: Option<f64>,
    size: Option<u64>,
) -> CliResult<serde_json::Value> {
    let params: usize = tensors
        .iter()
        .map(|t| t.info.elements())
        .sum::<modelopt_io::Result<usize>>()?;
    let budget = match (bpw, size) {
        (Some(b), _) if b.is_finite() && b > 0.0 => (b * params as f64 / 8.0) as usize,
        (Some(b), _) => return Err(CliError::Usage(format!("--bpw {b}: must be positive"))),
        (None, Some(s)) => s as usize,
        (None, None) => return Err(CliError::Usage("no budget".into())),
    };
    let mut fixed = 0usize;
    let mut eligible = Vec::new();
    let mut options = Vec::new();
    let mut preset_err = Some(0.0f64);
    for (i, (t, a)) in tensors.iter().zip(actions.iter()).enumerate() {
        let row = *t.info.shape.last().unwrap_or(&1);
        let planned = match a {
            Action::Ggml { ty, .. } => Some(*ty),
            _ => None,
        };
        let w = match (imatrix, &args.imatrix) {
            (Some(imp), Some(p)) => imp.for_tensor(p, &t.info.name, GgmlType::Q4_K, row)?,
            _ => None,
        };
        let o = match planned {
            Some(_) => crate::budget::measure(input, &t.info.name, row, w)?,
            None => Vec::new(),
        };
        if o.is_empty() {
            fixed += match planned {
                Some(ty) => ty.row_bytes(row).unwrap_or(0) * (t.info.elements()? / row.max(1)),
                None => t.stored_bytes,
            };
            continue;
        }
        preset_err = match (preset_err, o.iter().find(|c| Some(c.0) == planned)) {
            (Some(e), Some(c)) => Some(e + c.2),
            _ => None,
        };
        eligible.push(i);
        options.push(o);
    }
    let pick = budget
        .checked_sub(fixed)
        .and_then(|room| crate::budget::allocate(&options, room));
    let pick = pick.ok_or_else(|| {
        failure(
            input.path(),
            format!(
                "a budget of {budget} bytes cannot hold the tensors even at {} ({} bytes of them are not on the ladder)",
                crate::budget::LADDER[0].name(),
                fixed
            ),
        )
    })?;
    let mut err = 0.0;
    let mut bytes = fixed;
    let mut chosen = serde_json::Map::new();
    for ((&i, o), k) in eligible.iter().zip(&options).zip(pick) {
        let (ty, n, e) = o[k];
        err += e;
        bytes += n;
        chosen.insert(tensors[i].info.name.clone(), ty.name().into());
        actions[i] = Action::Ggml {
            ty,
            note: Some(format!("budget: {} (weighted error {e:.4e})", ty.name())),
        };
    }
    Ok(serde_json::json!({
        "target_bytes": budget,
        "target_bpw": budget as f64 * 8.0 / params as f64,
        "achieved_bpw": bytes as f64 * 8.0 / params as f64,
        "weighted_error": err,
        "preset_weighted_error": preset_err,
        "types": chosen,
    }))
}
