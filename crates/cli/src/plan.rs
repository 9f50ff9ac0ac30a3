//! What `modelopt quantize` does with each tensor: quantize it (to which type) or copy it.

use modelopt_io::{DType, TensorInfo};
use modelopt_quantize::ggml::GgmlType;

use crate::glob;

/// The decision for one tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Quantize to this GGML type; `note` says when it is a fallback.
    Ggml {
        /// The block type used.
        ty: GgmlType,
        /// Why it differs from the requested type, if it does.
        note: Option<String>,
    },
    /// Signed 8-bit symmetric, one scale per index of axis 0.
    Int8,
    /// Signed 4-bit symmetric, one scale per `group_size` elements of a row.
    Int4 {
        /// Elements per scale.
        group_size: usize,
    },
    /// Copy (as F32 into GGUF, as stored into safetensors), and why.
    Copy(String),
    /// Copy the stored bytes unchanged, type and all (GGUF into GGUF under a preset), and why.
    Keep(String),
}

/// What `--type` asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// A GGML block type.
    Ggml(GgmlType),
    /// int8 per channel.
    Int8,
    /// int4 per group.
    Int4 {
        /// Elements per scale.
        group_size: usize,
    },
}

/// The 32-block type used when a row is not a multiple of 256, from llama.cpp's
/// `llama_tensor_get_type` (`llama-quant.cpp`, `convert_incompatible_tensor`): q2_K, q3_K and
/// iq4_xs -> iq4_nl, q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0.
pub fn k_fallback(ty: GgmlType) -> Option<GgmlType> {
    match ty {
        GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::IQ4_XS => Some(GgmlType::IQ4_NL),
        GgmlType::Q4_K => Some(GgmlType::Q5_0),
        GgmlType::Q5_K => Some(GgmlType::Q5_1),
        GgmlType::Q6_K => Some(GgmlType::Q8_0),
        _ => None,
    }
}

/// Decides what happens to tensor `t` (readable as f32 when `is_float`) when quantizing to
/// `target` with the `keep` patterns.
pub fn plan(t: &TensorInfo, is_float: bool, target: Target, keep: &[String]) -> Action {
    if let Some(p) = keep.iter().find(|p| glob::matches(p, &t.name)) {
        return Action::Copy(format!("kept by --keep {p}"));
    }
    if !is_float {
        return Action::Copy(format!("{} is not a float type", t.dtype));
    }
    if t.shape.len() < 2 {
        return Action::Copy(format!("{}-D tensor", t.shape.len()));
    }
    let row = t.shape.last().copied().unwrap_or(0); // ok: len >= 2
    if row == 0 || t.shape.contains(&0) {
        return Action::Copy("empty tensor".into());
    }
    let target = match target {
        Target::Int8 => return Action::Int8,
        Target::Int4 { group_size } => {
            return if row.is_multiple_of(group_size) && row.is_multiple_of(2) {
                Action::Int4 { group_size }
            } else {
                Action::Copy(format!(
                    "row {row} is not a multiple of the group size {group_size} (and even)"
                ))
            };
        }
        Target::Ggml(ty) => ty,
    };
    if row.is_multiple_of(target.block_size()) {
        return Action::Ggml {
            ty: target,
            note: None,
        };
    }
    if let Some(fb) = k_fallback(target)
        && row.is_multiple_of(fb.block_size())
    {
        return Action::Ggml {
            ty: fb,
            note: Some(format!(
                "{} -> {}: row {row} is not a multiple of {}",
                target.name(),
                fb.name(),
                target.block_size()
            )),
        };
    }
    Action::Copy(format!(
        "row {row} is not a multiple of {}",
        target.block_size()
    ))
}

/// True when GGUF can store `d` unchanged in a copied tensor (its own integer types).
pub fn gguf_keeps_integer(d: DType) -> bool {
    matches!(d, DType::I8 | DType::I16 | DType::I32 | DType::I64)
}

#[cfg(test)]
mod tests {
    use super::*;

    use Target::Ggml as G;

    fn plan_f(t: &TensorInfo, target: Target, keep: &[String]) -> Action {
        plan(t, t.dtype.is_float(), target, keep)
    }

    fn t(shape: &[usize], dtype: DType) -> TensorInfo {
        TensorInfo::new("blk.0.w", dtype, shape.to_vec())
    }

    #[test]
    fn decisions() {
        let q = |a: Action| matches!(a, Action::Ggml { note: None, .. });
        assert!(q(plan_f(&t(&[4, 64], DType::F32), G(GgmlType::Q4_0), &[])));
        assert!(q(plan_f(
            &t(&[2, 4, 32], DType::BF16),
            G(GgmlType::Q8_0),
            &[]
        )));
        assert!(matches!(
            plan_f(&t(&[64], DType::F32), G(GgmlType::Q4_0), &[]),
            Action::Copy(_)
        ));
        assert!(matches!(
            plan_f(&t(&[4, 48], DType::F32), G(GgmlType::Q4_0), &[]),
            Action::Copy(_)
        ));
        assert!(matches!(
            plan_f(&t(&[4, 64], DType::I64), G(GgmlType::Q4_0), &[]),
            Action::Copy(_)
        ));
        assert!(matches!(
            plan_f(&t(&[4, 64], DType::F32), G(GgmlType::Q4_0), &["blk.*".into()]),
            Action::Copy(r) if r.contains("--keep")
        ));
        assert!(matches!(
            plan_f(&t(&[4, 384], DType::F16), G(GgmlType::Q4_K), &[]),
            Action::Ggml {
                ty: GgmlType::Q5_0,
                note: Some(_)
            }
        ));
        assert!(matches!(
            plan_f(&t(&[4, 384], DType::F16), G(GgmlType::Q6_K), &[]),
            Action::Ggml {
                ty: GgmlType::Q8_0,
                note: Some(_)
            }
        ));
        assert!(matches!(
            plan_f(&t(&[4, 512], DType::F16), G(GgmlType::Q6_K), &[]),
            Action::Ggml {
                ty: GgmlType::Q6_K,
                note: None
            }
        ));
        assert!(matches!(
            plan_f(&t(&[4, 100], DType::F32), G(GgmlType::Q4_K), &[]),
            Action::Copy(_)
        ));
        for (k, simple) in [
            (GgmlType::Q2_K, GgmlType::IQ4_NL),
            (GgmlType::Q3_K, GgmlType::IQ4_NL),
            (GgmlType::IQ4_XS, GgmlType::IQ4_NL),
            (GgmlType::Q5_K, GgmlType::Q5_1),
        ] {
            assert!(matches!(
                plan_f(&t(&[2, 96], DType::F32), G(k), &[]),
                Action::Ggml { ty, note: Some(_) } if ty == simple
            ));
            assert!(matches!(
                plan_f(&t(&[2, 768], DType::F32), G(k), &[]),
                Action::Ggml { ty, note: None } if ty == k
            ));
        }
    }
}
