//! `modelopt quantize MODEL.gguf -o OUT.gguf --type PRESET`: the plan llama-quantize makes
//! (`llama_model_quantize_impl` in llama.cpp `src/llama-quant.cpp`): its tensor order, the type of
//! each tensor (see [`crate::preset`]), and its metadata.

use modelopt_io::{Checkpoint, CheckpointTensor, DType, FileFormat, GgufValue};

use crate::error::{CliResult, failure};
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
    let actions = tensors
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
    }))
}
