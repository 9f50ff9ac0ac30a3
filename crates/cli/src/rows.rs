//! Row-parallel quantization of one tensor, with the reconstruction error measured on the fly.

use modelopt_io::Checkpoint;
use modelopt_quantize::QuantScheme;
use modelopt_quantize::ggml::{self, GgmlType};
use ndarray::ArrayView2;
use rayon::prelude::*;

/// Elements per parallel work item (1 MiB of f32): each item is one `pwrite` into the output, and
/// on ext4 fewer, larger writes contend less for the inode lock (2^16: 4.3 GB/s for q8_0 on the
/// 537 MB bench file, 2^18: 5.0); a 4096 x 4096 tensor still splits into 64 items.
const CHUNK_ELEMENTS: usize = 1 << 18;

/// The values of a tensor: f32 in memory, or a plain float tensor (F32, F16, BF16, F64) read
/// from its file chunk by chunk inside the parallel loop.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// Values already in f32.
    F32(&'a [f32]),
    /// A plain float tensor of `len` elements read from its file piece by piece
    /// ([`Checkpoint::read_f32_at`]): no page faults on a map, nothing to release after.
    File {
        /// The checkpoint.
        input: &'a Checkpoint,
        /// The tensor's name.
        name: &'a str,
        /// Its number of elements.
        len: usize,
    },
}

impl<'a> Source<'a> {
    fn len(&self) -> usize {
        match self {
            Source::F32(x) => x.len(),
            Source::File { len, .. } => *len,
        }
    }

    /// Elements `first..first + len` as f32: borrowed (f32 in memory, or aligned little-endian
    /// F32 bytes viewed in place), or decoded into `local`.
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
            Source::File { input, name, .. } => {
                local.resize(len, 0.0f32);
                input
                    .read_f32_at(name, first, local)
                    .map_err(|e| e.to_string())?;
                Ok(local)
            }
        }
    }
}

/// Bytes of GGML blocks for `src` seen as rows of `row_len`, or why there are none.
pub fn ggml_bytes(ty: GgmlType, elements: usize, row_len: usize) -> Result<usize, String> {
    let row_bytes = ty.row_bytes(row_len).map_err(|e| e.to_string())?;
    if row_len == 0 || !elements.is_multiple_of(row_len) {
        return Err(format!(
            "{elements} elements are not whole rows of {row_len}"
        ));
    }
    Ok(elements / row_len * row_bytes)
}

/// Quantizes `src` (rows of `row_len`) to `ty` in parallel over groups of rows and hands each
/// group's blocks to `put(byte_offset, bytes)` (which writes them to their place in the output),
/// so a tensor is never assembled in memory. Each group's reconstruction error is summed on the
/// way ([`ggml::error_sums`]). Returns `(sum x^2, sum (x - x_hat)^2)`.
#[allow(dead_code)] // the unweighted entry point, for callers without importance
pub fn quantize_ggml(
    ty: GgmlType,
    src: Source<'_>,
    row_len: usize,
    put: impl Fn(usize, &[u8]) -> Result<(), String> + Sync,
) -> Result<(f64, f64), String> {
    quantize_ggml_weighted(ty, src, row_len, None, put)
}

/// [`quantize_ggml`] with optional importance weights (one per column, `row_len` of them):
/// llama.cpp's weighted quantizers, as `llama-quantize --imatrix` runs them.
pub fn quantize_ggml_weighted(
    ty: GgmlType,
    src: Source<'_>,
    row_len: usize,
    importance: Option<&[f32]>,
    put: impl Fn(usize, &[u8]) -> Result<(), String> + Sync,
) -> Result<(f64, f64), String> {
    let n = src.len();
    ggml_bytes(ty, n, row_len)?;
    let row_bytes = ty.row_bytes(row_len).map_err(|e| e.to_string())?;
    let rows = n / row_len;
    let rows_per_chunk = (CHUNK_ELEMENTS / row_len).max(1);
    (0..rows.div_ceil(rows_per_chunk))
        .into_par_iter()
        // Per-thread buffers for the decoded input and the blocks.
        .map_init(
            || (Vec::new(), Vec::new()),
            |(local, blocks): &mut (Vec<f32>, Vec<u8>), chunk| {
                let first_row = chunk * rows_per_chunk;
                let nrows = rows_per_chunk.min(rows - first_row);
                let x = src.slice(first_row * row_len, nrows * row_len, local)?;
                blocks.resize(nrows * row_bytes, 0);
                for (i, (d, s)) in blocks
                    .chunks_exact_mut(row_bytes)
                    .zip(x.chunks_exact(row_len))
                    .enumerate()
                {
                    match importance {
                        Some(w) => ggml::quantize_row_imatrix(ty, s, w, d)
                            .map_err(|e| format!("row {}: {e}", first_row + i))?,
                        None => quantize_row(ty, s, d)
                            .map_err(|e| format!("row {}: {e}", first_row + i))?,
                    }
                }
                // llama-quantize's bytes: K-quant codes re-derived from the stored scales.
                ggml::rederive_codes(ty, x, blocks).map_err(|e| e.to_string())?;
                put(first_row * row_bytes, blocks)?;
                ggml::error_sums(ty, x, blocks).map_err(|e| e.to_string())
            },
        )
        .try_reduce(|| (0.0, 0.0), |a, b| Ok((a.0 + b.0, a.1 + b.1)))
}

fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), String> {
    ggml::quantize_row(ty, src, dst).map_err(|e| e.to_string())
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

    /// Quantizes through `quantize_ggml` into one buffer.
    fn blocks(ty: GgmlType, src: Source<'_>, row: usize) -> (Vec<u8>, (f64, f64)) {
        let out = std::sync::Mutex::new(vec![0u8; ggml_bytes(ty, src.len(), row).unwrap()]);
        let sums = quantize_ggml(ty, src, row, |at, b| {
            out.lock().unwrap()[at..at + b.len()].copy_from_slice(b);
            Ok(())
        })
        .unwrap();
        (out.into_inner().unwrap(), sums)
    }

    #[test]
    fn file_and_f32_sources_give_the_same_blocks() {
        // 7 rows of 64Ki + 64 elements: work items of 3 rows, the last one short.
        let row = 65536 + 64;
        let x = values(7 * row);
        let bytes = f32_to_bytes(&x);
        let (a, sa) = blocks(GgmlType::Q4_0, Source::F32(&x), row);
        // Read from a file piece by piece: F32 straight into the buffer, F16 decoded.
        let halves: Vec<half::f16> = x.iter().map(|v| half::f16::from_f32(*v)).collect();
        let h_bytes: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
        let h_values: Vec<f32> = halves.iter().map(|h| h.to_f32()).collect();
        let path =
            std::env::temp_dir().join(format!("modelopt-rows-{}.safetensors", std::process::id()));
        let infos = vec![
            modelopt_io::TensorInfo::new("w", modelopt_io::DType::F32, vec![7, row]),
            modelopt_io::TensorInfo::new("h", modelopt_io::DType::F16, vec![7, row]),
        ];
        let mut w =
            modelopt_io::SafetensorsWriter::create(&path, infos, Default::default()).unwrap();
        w.write_tensor("w", &bytes).unwrap();
        w.write_tensor("h", &h_bytes).unwrap();
        w.finish().unwrap();
        let input = Checkpoint::open(&path).unwrap();
        let file = |name| Source::File {
            input: &input,
            name,
            len: x.len(),
        };
        let (d, sd) = blocks(GgmlType::Q4_0, file("w"), row);
        let (e, se) = blocks(GgmlType::Q4_0, file("h"), row);
        let (f, sf) = blocks(GgmlType::Q4_0, Source::F32(&h_values), row);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(a, d);
        assert_eq!(sa, sd);
        assert_eq!((e, se), (f, sf));
        assert_eq!(a, ggml::quantize(GgmlType::Q4_0, &x).unwrap());
    }

    #[test]
    fn a_failing_output_stops_with_its_error() {
        let x = values(4 * 1024);
        let e = quantize_ggml(GgmlType::Q8_0, Source::F32(&x), 1024, |_, _| {
            Err("disk full".to_string())
        })
        .unwrap_err();
        assert_eq!(e, "disk full");
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
