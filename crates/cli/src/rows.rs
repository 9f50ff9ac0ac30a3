//! Row-parallel quantization of one tensor, with the reconstruction error measured on the fly.

use modelopt_io::{DType, decode_f32};
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

/// The values of a tensor: f32 in memory, or the stored little-endian bytes of a plain float
/// dtype (F32, F16, BF16, F64), decoded chunk by chunk inside the parallel loop.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// Values already in f32.
    F32(&'a [f32]),
    /// Stored bytes of a plain float dtype.
    Stored(DType, &'a [u8]),
}

impl<'a> Source<'a> {
    fn len(&self) -> usize {
        match self {
            Source::F32(x) => x.len(),
            Source::Stored(d, b) => b.len() / d.element_bytes().unwrap_or(1).max(1),
        }
    }

    /// Elements `first..first + len` as f32: borrowed, or decoded into `local`.
    fn slice<'b>(
        &self,
        first: usize,
        len: usize,
        local: &'b mut Vec<f32>,
    ) -> Result<&'b [f32], String>
    where
        'a: 'b,
    {
        match *self {
            Source::F32(all) => Ok(&all[first..first + len]),
            Source::Stored(d, raw) => {
                let eb = d.element_bytes().unwrap_or(4);
                local.resize(len, 0.0f32);
                decode_f32(d, &raw[first * eb..(first + len) * eb], local)
                    .map_err(|e| e.to_string())?;
                Ok(local)
            }
        }
    }
}

/// Quantizes `src` (rows of `row_len`) to `ty` in parallel over groups of rows, decoding and
/// dequantizing each group in small local buffers to accumulate the error, so memory stays at the
/// output (plus the input when it is already in f32). The blocks go into `bytes`, a buffer to
/// reuse (its contents are overwritten).
pub fn quantize_ggml(
    ty: GgmlType,
    src: Source<'_>,
    row_len: usize,
    mut bytes: Vec<u8>,
) -> Result<Quantized, String> {
    let row_bytes = ty.row_bytes(row_len).map_err(|e| e.to_string())?;
    let n = src.len();
    if row_len == 0 || !n.is_multiple_of(row_len) {
        return Err(format!("{n} elements are not whole rows of {row_len}"));
    }
    let rows = n / row_len;
    let rows_per_chunk = (CHUNK_ELEMENTS / row_len).max(1);
    let chunk_elems = rows_per_chunk * row_len;
    bytes.clear();
    bytes.resize(rows * row_bytes, 0);
    let (sum_sq_x, sum_sq_err) = bytes
        .par_chunks_mut(rows_per_chunk * row_bytes)
        .enumerate()
        // Per-thread buffers for the decoded input and the reconstruction, reused across chunks.
        .map_init(
            || (Vec::new(), Vec::new()),
            |(local, back): &mut (Vec<f32>, Vec<f32>), (chunk, dst)| {
                let first = chunk * chunk_elems;
                let len = dst.len() / row_bytes * row_len;
                let x = src.slice(first, len, local)?;
                back.resize(x.len(), 0.0);
                for (i, ((d, s), b)) in dst
                    .chunks_exact_mut(row_bytes)
                    .zip(x.chunks_exact(row_len))
                    .zip(back.chunks_exact_mut(row_len))
                    .enumerate()
                {
                    quantize_row(ty, s, d)
                        .map_err(|e| format!("row {}: {e}", chunk * rows_per_chunk + i))?;
                    dequantize_row(ty, d, b)?;
                }
                Ok::<_, String>(error_sums(x, back))
            },
        )
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
    src: Source<'_>,
    row_len: usize,
) -> Result<Uniform, String> {
    let n = src.len();
    if row_len == 0 || !n.is_multiple_of(row_len) {
        return Err(format!("{n} elements are not whole rows of {row_len}"));
    }
    let chunk_elems = (CHUNK_ELEMENTS / row_len).max(1) * row_len;
    let parts: Vec<(Vec<u8>, Vec<f32>, f64, f64)> = (0..n.div_ceil(chunk_elems))
        .into_par_iter()
        .map(|chunk| {
            let first = chunk * chunk_elems;
            let mut local = Vec::new();
            let x = src.slice(first, chunk_elems.min(n - first), &mut local)?;
            let view = ArrayView2::from_shape((x.len() / row_len, row_len), x)
                .map_err(|e| e.to_string())?;
            let q = scheme.quantize(&view).map_err(|e| e.to_string())?;
            let back = q.dequantize();
            let back = back
                .as_slice()
                .ok_or("dequantized array is not contiguous")?;
            let (sx, se) = error_sums(x, back);
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

/// `(sum x^2, sum (x - y)^2)` in one pass. Sums run in 16 f32 lanes over runs of 1024 elements
/// (fixed-size chunks, so the compiler vectorises without bounds checks), each run's total added
/// in f64 so that millions of terms keep their digits.
pub fn error_sums(x: &[f32], y: &[f32]) -> (f64, f64) {
    const LANES: usize = 16;
    const RUN: usize = 1024;
    let n = x.len().min(y.len());
    let (cx, tx) = x[..n].as_chunks::<LANES>();
    let (cy, ty) = y[..n].as_chunks::<LANES>();
    let (mut sx, mut se) = (0.0f64, 0.0f64);
    for (rx, ry) in cx.chunks(RUN / LANES).zip(cy.chunks(RUN / LANES)) {
        let (ax, ae) = lane_sums(rx, ry);
        sx += ax.iter().map(|v| f64::from(*v)).sum::<f64>();
        se += ae.iter().map(|v| f64::from(*v)).sum::<f64>();
    }
    for (a, b) in tx.iter().zip(ty) {
        sx += f64::from(a * a);
        se += f64::from((a - b) * (a - b));
    }
    (sx, se)
}

/// Lane-wise sums of `x^2` and `(x - y)^2`. Whole-array expressions: written lane by lane with
/// `+=` the compiler keeps them scalar.
#[inline(never)]
fn lane_sums(x: &[[f32; 16]], y: &[[f32; 16]]) -> ([f32; 16], [f32; 16]) {
    let mut ax = [0.0f32; 16];
    let mut ae = [0.0f32; 16];
    for (a, b) in x.iter().zip(y) {
        let e: [f32; 16] = std::array::from_fn(|k| a[k] - b[k]);
        ax = std::array::from_fn(|k| ax[k] + a[k] * a[k]);
        ae = std::array::from_fn(|k| ae[k] + e[k] * e[k]);
    }
    (ax, ae)
}

#[cfg(test)]
mod tests {
    use super::*;
    use modelopt_io::f32_to_bytes;

    fn values(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 97.0)
            .collect()
    }

    #[test]
    fn error_sums_match_f64_reference() {
        let x = values(1000);
        let y: Vec<f32> = x.iter().map(|v| v * 0.99 + 0.001).collect();
        let want_x: f64 = x.iter().map(|v| f64::from(*v).powi(2)).sum();
        let want_e: f64 = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
            .sum();
        let (sx, se) = error_sums(&x, &y);
        assert!((sx - want_x).abs() <= 1e-6 * want_x, "{sx} {want_x}");
        assert!((se - want_e).abs() <= 1e-5 * want_e, "{se} {want_e}");
    }

    #[test]
    fn stored_and_f32_sources_give_the_same_blocks() {
        // 3 rows of 64Ki + 64 elements: several chunks, the last one short.
        let row = 65536 + 64;
        let x = values(3 * row);
        let bytes = f32_to_bytes(&x);
        let a = quantize_ggml(GgmlType::Q4_0, Source::F32(&x), row, Vec::new()).unwrap();
        let b = quantize_ggml(
            GgmlType::Q4_0,
            Source::Stored(DType::F32, &bytes),
            row,
            vec![7; 5],
        )
        .unwrap();
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(a.bytes, ggml::quantize(GgmlType::Q4_0, &x).unwrap());
        assert_eq!((a.sum_sq_x, a.sum_sq_err), (b.sum_sq_x, b.sum_sq_err));
    }

    #[test]
    fn chunked_uniform_quantization_equals_whole_tensor() {
        let (rows, row) = (300, 512); // chunks of 128 rows: 3 chunks, the last short
        let x = values(rows * row);
        let view = ArrayView2::from_shape((rows, row), &x[..]).unwrap();
        for scheme in [
            QuantScheme::int8().per_channel(0),
            QuantScheme::int4().per_group(1, 32),
        ] {
            let whole = scheme.quantize(&view).unwrap();
            let got = quantize_uniform(&scheme, Source::F32(&x), row).unwrap();
            assert_eq!(got.codes, whole.packed_codes());
            assert_eq!(
                got.scales,
                whole.scales().iter().copied().collect::<Vec<_>>()
            );
        }
    }
}
