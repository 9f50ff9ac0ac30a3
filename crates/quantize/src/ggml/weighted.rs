//! Quantization with importance weights (llama.cpp's `quant_weights`, one per column: what
//! `llama-quantize --imatrix` passes for a tensor), for the types whose quantizer uses them.

use std::sync::Mutex;

use modelopt_tensor_core::{CoreError, Par};

use super::rows::{
    check_rows, check_supported, encode_iq4, length_error, non_finite, rows_per_task,
};
use super::{GgmlType, iq4, quantize_row};
use crate::Result;

/// Whether `ty` uses importance weights (see [`quantize_row_imatrix`]).
///
/// ```
/// use modelopt_quantize::ggml::{GgmlType, uses_importance};
/// assert!(uses_importance(GgmlType::IQ4_XS));
/// assert!(!uses_importance(GgmlType::Q8_0)); // llama.cpp ignores them for q8_0
/// ```
pub fn uses_importance(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::IQ4_NL | GgmlType::IQ4_XS)
}

/// Checks that `ty` can be quantized with importance weights and that they are usable.
fn check_importance(ty: GgmlType, importance: &[f32], expected: usize) -> Result<()> {
    check_supported(ty)?;
    let ignored = matches!(
        ty,
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::Q8_0
    );
    if !uses_importance(ty) && !ignored {
        return Err(CoreError::invalid(
            "ggml type",
            format!(
                "quantization of {} with importance weights is not implemented yet",
                ty.name()
            ),
        )
        .into());
    }
    if importance.len() != expected {
        return Err(length_error(
            "importance weights",
            expected,
            importance.len(),
            "values",
        ));
    }
    if let Some(i) = importance
        .iter()
        .position(|w| !(w.is_finite() && *w >= 0.0))
    {
        return Err(CoreError::invalid(
            "importance weights",
            format!(
                "weight {i} is {}; each must be finite and >= 0",
                importance[i]
            ),
        )
        .into());
    }
    Ok(())
}

/// Quantizes `src` into `dst` like [`quantize_row`], each element weighted by
/// `importance[j]` (one non-negative weight per element, e.g. an importance-matrix entry per
/// column), bit-exact with llama.cpp's `ggml_quantize_chunk(ty, ..., imatrix)`.
///
/// IQ4_NL and IQ4_XS use the weights in their scale search; F32, F16, BF16 and Q8_0 ignore
/// them, as llama.cpp does. Other types return an error for now.
///
/// Errors: as [`quantize_row`], plus `importance` of another length than `src`, a negative or
/// non-finite weight, or a type without an importance-weighted quantizer.
///
/// ```
/// use modelopt_quantize::ggml::{quantize_row, quantize_row_imatrix, GgmlType};
/// let x: Vec<f32> = (0..32).map(|i| (i as f32 * 0.7).sin()).collect();
/// let mut important = vec![1.0f32; 32];
/// important[3] = 1000.0;
/// let (mut a, mut b) = ([0u8; 18], [0u8; 18]);
/// quantize_row(GgmlType::IQ4_NL, &x, &mut a)?;
/// quantize_row_imatrix(GgmlType::IQ4_NL, &x, &important, &mut b)?;
/// assert_ne!(a, b);
/// assert!(quantize_row_imatrix(GgmlType::IQ4_NL, &x, &[1.0; 31], &mut b).is_err());
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
pub fn quantize_row_imatrix(
    ty: GgmlType,
    src: &[f32],
    importance: &[f32],
    dst: &mut [u8],
) -> Result<()> {
    check_importance(ty, importance, src.len())?;
    if !uses_importance(ty) {
        return quantize_row(ty, src, dst);
    }
    let bytes = ty.row_bytes(src.len())?;
    if dst.len() != bytes {
        return Err(length_error("quantized row", bytes, dst.len(), "bytes"));
    }
    encode_iq4(iq4::detect(), ty, src, Some(importance), dst).map_err(|i| non_finite(src, i))
}

/// Quantizes a row-major matrix with rows of `row_len` weights like
/// [`quantize_rows`](super::quantize_rows), with one importance weight per column
/// (`importance.len() == row_len`, the same for every row), as [`quantize_row_imatrix`].
///
/// ```
/// use modelopt_quantize::ggml::{quantize_row_imatrix, quantize_rows_imatrix, GgmlType, Par};
/// let x: Vec<f32> = (0..2 * 256).map(|i| (i as f32 * 0.3).cos()).collect();
/// let imp: Vec<f32> = (0..256).map(|c| 1.0 + (c % 7) as f32).collect();
/// let mut all = vec![0u8; 2 * 136];
/// quantize_rows_imatrix(GgmlType::IQ4_XS, &x, 256, &imp, &mut all, Par::Seq)?;
/// let mut second = [0u8; 136];
/// quantize_row_imatrix(GgmlType::IQ4_XS, &x[256..], &imp, &mut second)?;
/// assert_eq!(all[136..], second);
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
pub fn quantize_rows_imatrix(
    ty: GgmlType,
    src: &[f32],
    row_len: usize,
    importance: &[f32],
    dst: &mut [u8],
    par: Par,
) -> Result<()> {
    check_importance(ty, importance, row_len)?;
    if !uses_importance(ty) {
        return super::quantize_rows(ty, src, row_len, dst, par);
    }
    let row_bytes = check_rows(ty, src.len(), row_len, dst.len())?;
    if src.is_empty() {
        return Ok(());
    }
    let kernel = iq4::detect();
    let per_task = rows_per_task(row_len);
    let first_bad: Mutex<Option<usize>> = Mutex::new(None);
    par.for_each_chunk_mut(dst, per_task * row_bytes, |t, out| {
        let first_row = t * per_task;
        for (r, o) in out.chunks_exact_mut(row_bytes).enumerate() {
            let start = (first_row + r) * row_len;
            let x = &src[start..start + row_len];
            if let Err(i) = encode_iq4(kernel, ty, x, Some(importance), o) {
                // A poisoned lock only means another task panicked; the value is still usable.
                let mut bad = first_bad.lock().unwrap_or_else(|e| e.into_inner());
                let i = start + i;
                *bad = Some(bad.map_or(i, |b| b.min(i)));
                return;
            }
        }
    });
    match first_bad.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(i) => Err(non_finite(src, i)),
        None => Ok(()),
    }
}
