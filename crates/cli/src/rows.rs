//! Row-parallel quantization of one tensor, with the reconstruction error measured on the fly.

use modelopt_quantize::QuantScheme;
use modelopt_quantize::ggml::{self, GgmlType};
use ndarray::ArrayView2;
use rayon::prelude::*;

/// A quantized tensor and the sums its SQNR is computed from.
pub struct Quantized {
    /// The GGML blocks, row after row.
    pub bytes: Vec<u8>,
    /// Sum of squared inputs.
    pub sum_sq_x: f64,
    /// Sum of squared reconstruction errors.
    pub sum_sq_err: f64,
}

impl Quantized {
    /// `10 log10(sum x^2 / sum err^2)`, `+inf` for an exact reconstruction.
    pub fn sqnr_db(&self) -> f64 {
        sqnr_db((self.sum_sq_x, self.sum_sq_err))
    }
}

/// Elements per parallel work item: enough to amortise scheduling, small enough to balance.
const CHUNK_ELEMENTS: usize = 1 << 16;

/// Quantizes `src` (rows of `row_len`) to `ty` in parallel over groups of rows, dequantizing each
/// group into a small local buffer to accumulate the error, so memory stays at input + output.
pub fn quantize_ggml(ty: GgmlType, src: &[f32], row_len: usize) -> Result<Quantized, String> {
    let row_bytes = ty.row_bytes(row_len).map_err(|e| e.to_string())?;
    if row_len == 0 || !src.len().is_multiple_of(row_len) {
        return Err(format!(
            "{} elements are not whole rows of {row_len}",
            src.len()
        ));
    }
    let rows = src.len() / row_len;
    let rows_per_chunk = (CHUNK_ELEMENTS / row_len).max(1);
    let mut bytes = vec![0u8; rows * row_bytes];
    let (sum_sq_x, sum_sq_err) = bytes
        .par_chunks_mut(rows_per_chunk * row_bytes)
        .zip(src.par_chunks(rows_per_chunk * row_len))
        .enumerate()
        .map(|(chunk, (dst, x))| {
            if let Some(i) = x.iter().position(|v| !v.is_finite()) {
                return Err(format!(
                    "non-finite value {} at flat index {}",
                    x[i],
                    chunk * rows_per_chunk * row_len + i
                ));
            }
            let mut back = vec![0.0f32; x.len()];
            for ((d, s), b) in dst
                .chunks_exact_mut(row_bytes)
                .zip(x.chunks_exact(row_len))
                .zip(back.chunks_exact_mut(row_len))
            {
                quantize_row(ty, s, d)?;
                dequantize_row(ty, d, b)?;
            }
            let mut sx = 0.0f64;
            let mut se = 0.0f64;
            for (a, b) in x.iter().zip(&back) {
                let (a, b) = (f64::from(*a), f64::from(*b));
                sx += a * a;
                se += (a - b) * (a - b);
            }
            Ok((sx, se))
        })
        .try_reduce(|| (0.0, 0.0), |a, b| Ok((a.0 + b.0, a.1 + b.1)))?;
    Ok(Quantized {
        bytes,
        sum_sq_x,
        sum_sq_err,
    })
}

fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), String> {
    ggml::quantize_row(ty, src, dst).map_err(|e| e.to_string())
}

fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), String> {
    ggml::dequantize_row(ty, src, dst).map_err(|e| e.to_string())
}

/// A uniformly quantized tensor (int8 per channel or int4 per group), assembled from row chunks.
pub struct Uniform {
    /// Codes: one byte each (int8) or two per byte (int4), row-major.
    pub codes: Vec<u8>,
    /// Scales, row-major in the scheme's layout.
    pub scales: Vec<f32>,
    /// Sum of squared inputs and of squared reconstruction errors.
    pub sums: (f64, f64),
}

/// Quantizes `src` seen as `[rows, row_len]` with `scheme` (whose parameters depend only on the
/// rows: per channel along axis 0, or per group along axis 1), in parallel over groups of rows.
pub fn quantize_uniform(
    scheme: &QuantScheme,
    src: &[f32],
    row_len: usize,
) -> Result<Uniform, String> {
    if row_len == 0 || !src.len().is_multiple_of(row_len) {
        return Err(format!(
            "{} elements are not whole rows of {row_len}",
            src.len()
        ));
    }
    let rows_per_chunk = (CHUNK_ELEMENTS / row_len).max(1);
    let parts: Vec<(Vec<u8>, Vec<f32>, f64, f64)> = src
        .par_chunks(rows_per_chunk * row_len)
        .map(|x| {
            let view = ArrayView2::from_shape((x.len() / row_len, row_len), x)
                .map_err(|e| e.to_string())?;
            let q = scheme.quantize(&view).map_err(|e| e.to_string())?;
            let back = q.dequantize();
            let (mut sx, mut se) = (0.0f64, 0.0f64);
            for (a, b) in x.iter().zip(back.iter()) {
                let (a, b) = (f64::from(*a), f64::from(*b));
                sx += a * a;
                se += (a - b) * (a - b);
            }
            Ok((
                q.packed_codes().to_vec(),
                q.scales().iter().copied().collect(),
                sx,
                se,
            ))
        })
        .collect::<Result<_, String>>()?;
    let mut out = Uniform {
        codes: Vec::with_capacity(parts.iter().map(|p| p.0.len()).sum()),
        scales: Vec::with_capacity(parts.iter().map(|p| p.1.len()).sum()),
        sums: (0.0, 0.0),
    };
    for (c, s, sx, se) in parts {
        out.codes.extend_from_slice(&c);
        out.scales.extend_from_slice(&s);
        out.sums.0 += sx;
        out.sums.1 += se;
    }
    Ok(out)
}

/// `10 log10(sum x^2 / sum err^2)`, `+inf` for an exact reconstruction.
pub fn sqnr_db((sum_sq_x, sum_sq_err): (f64, f64)) -> f64 {
    if sum_sq_err == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (sum_sq_x / sum_sq_err).log10()
    }
}
