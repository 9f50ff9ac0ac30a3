//! How the encoder's linear layers compute: in f32 on dequantized weights, or in integers on the
//! weights as they are stored (`modelopt-kernels`).

use modelopt_io::{Checkpoint, DType, QuantLayout};
use modelopt_kernels::{ActScale, Epilogue, PackedBlocks, PackedI8, QuantizedActivations};
use modelopt_quantize::ggml::GgmlType;
use modelopt_tensor_core::Par;

use crate::{BertError, Result};

/// How the linear layers of a [`BertModel`](crate::BertModel) run.
///
/// The embeddings, attention scores, LayerNorms and activations are f32 in every mode; only the
/// 6 products per layer that hold the weights change.
///
/// ```no_run
/// use modelopt_bert::{BertConfig, BertModel, Execution};
/// let config = BertConfig::from_file("minilm/config.json")?;
/// // Q4_0 blocks times 8-bit activation blocks, as llama.cpp runs them:
/// let q4 = BertModel::from_file_with(config.clone(), "minilm-q4_0.gguf", Execution::Stored)?;
/// // f32 weights quantized to int8 at load, activations per token (as `quantize_dynamic`):
/// let w8a8 = BertModel::from_file_with(config, "minilm/model.safetensors", Execution::Int8Dynamic)?;
/// # Ok::<(), modelopt_bert::BertError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Execution {
    /// Every weight dequantized once at load; f32 matrix products (the reference path).
    Float,
    /// Quantized weights run in integers where a kernel exists for their stored format:
    /// GGML Q8_0 / Q4_0 / Q4_K / IQ4_NL blocks (GGUF or safetensors) times activations quantized
    /// on the fly to 8-bit blocks; int8 per-channel safetensors as W8A8 with activations
    /// quantized per token; int4 grouped safetensors (group a multiple of 8) weight-only. Other
    /// formats and f32 weights run as [`Execution::Float`]. The default: what a user of the
    /// quantized file runs.
    #[default]
    Stored,
    /// Every linear weight quantized at load to int8 with one scale per output channel and run
    /// as W8A8 with activations quantized per token (torch's `quantize_dynamic` with the
    /// per-channel qconfig), whatever the file stores.
    Int8Dynamic,
}

impl Execution {
    /// Parses `float`, `stored` or `int8` (the `modelopt eval --exec` values).
    ///
    /// ```
    /// use modelopt_bert::Execution;
    /// assert_eq!(Execution::parse("int8")?, Execution::Int8Dynamic);
    /// assert!(Execution::parse("fast").is_err());
    /// # Ok::<(), modelopt_bert::BertError>(())
    /// ```
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "float" => Ok(Execution::Float),
            "stored" => Ok(Execution::Stored),
            "int8" => Ok(Execution::Int8Dynamic),
            other => Err(BertError::Input(format!(
                "execution `{other}`: expected float, stored or int8"
            ))),
        }
    }
}

/// An integer product for one linear layer (bias included).
#[derive(Debug, Clone)]
pub(crate) enum Kernel {
    /// int8 weights, activations quantized per token; the epilogue holds scales and bias.
    W8A8 { w: PackedI8, epi: Epilogue },
    /// Weight-only blocks times 8-bit activation blocks, then the bias.
    Blocks { w: PackedBlocks, bias: Vec<f32> },
}

impl Kernel {
    /// `out = x W^T + b` for `m` rows of `x` (row-major `[m, k]`), on one thread.
    pub(crate) fn forward(&self, x: &[f32], m: usize, out: &mut [f32]) -> Result<()> {
        match self {
            Kernel::W8A8 { w, epi } => {
                let xq = QuantizedActivations::quantize(x, m, w.cols(), ActScale::PerToken)
                    .map_err(kernel_err)?;
                modelopt_kernels::w8a8_with(
                    modelopt_kernels::Isa::best(),
                    Par::Seq,
                    &xq,
                    w,
                    epi,
                    out,
                )
                .map_err(kernel_err)
            }
            Kernel::Blocks { w, bias } => {
                w.matmul(Par::Seq, x, m, out).map_err(kernel_err)?;
                for row in out.chunks_exact_mut(bias.len()) {
                    for (o, b) in row.iter_mut().zip(bias) {
                        *o += b;
                    }
                }
                Ok(())
            }
        }
    }

    /// What runs, for reports: `"W8A8"`, `"Q4_0 x Q8_0"`, ...
    pub(crate) fn name(&self) -> String {
        match self {
            Kernel::W8A8 { .. } => "W8A8 (int8 weights, per-token int8 activations)".into(),
            Kernel::Blocks { w, .. } => format!("{} x 8-bit activation blocks", w.format().name()),
        }
    }
}

fn kernel_err(e: modelopt_kernels::KernelError) -> BertError {
    BertError::Input(format!("integer kernel: {e}"))
}

/// A linear weight as the file stores it, in a form the kernels take.
#[derive(Debug, Clone)]
pub(crate) enum StoredWeight {
    /// GGML rows of one block type (row-major, `rows` rows).
    Ggml(GgmlType, Vec<u8>),
    /// int8 codes `[rows, cols]` and one scale per row.
    Int8(Vec<i8>, Vec<f32>),
    /// int4 codes `[rows, cols]` and one scale per `group` inputs of a row.
    Int4(Vec<i8>, Vec<f32>, usize),
}

impl StoredWeight {
    /// The stored form of tensor `name`, if a kernel can run it (`None` for f32 and for formats
    /// without a kernel).
    pub(crate) fn read(ckpt: &Checkpoint, name: &str) -> Result<Option<Self>> {
        let Some(t) = ckpt.tensors().into_iter().find(|t| t.info.name == name) else {
            return Ok(None);
        };
        let with_kernel = |ty: GgmlType| {
            matches!(
                ty,
                GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_K | GgmlType::IQ4_NL
            )
        };
        Ok(match (&t.layout, t.info.dtype) {
            (None, DType::Ggml(ty)) if with_kernel(ty) => {
                Some(StoredWeight::Ggml(ty, ckpt.tensor_bytes(name)?.to_vec()))
            }
            (Some(QuantLayout::Ggml { ggml_type, .. }), _) if with_kernel(*ggml_type) => Some(
                StoredWeight::Ggml(*ggml_type, ckpt.tensor_bytes(name)?.to_vec()),
            ),
            (Some(QuantLayout::Int8PerChannel { .. }), _) => {
                let codes = ckpt.tensor_bytes(name)?.iter().map(|&b| b as i8).collect();
                Some(StoredWeight::Int8(codes, scales(ckpt, name)?))
            }
            (Some(QuantLayout::Int4Grouped { group_size, .. }), _) if group_size % 8 == 0 => {
                // Two codes a byte, element 2i in the low nibble, two's complement.
                let codes = ckpt
                    .tensor_bytes(name)?
                    .iter()
                    .flat_map(|&b| [((b << 4) as i8) >> 4, (b as i8) >> 4])
                    .collect();
                Some(StoredWeight::Int4(codes, scales(ckpt, name)?, *group_size))
            }
            _ => None,
        })
    }

    /// Query, key and value stacked into one `[3H, H]` weight (rows are independent in every
    /// stored form); `None` when the three are not stored alike.
    pub(crate) fn stack(parts: [Option<Self>; 3]) -> Option<Self> {
        let [a, b, c] = parts;
        match (a?, b?, c?) {
            (
                StoredWeight::Ggml(t0, mut x),
                StoredWeight::Ggml(t1, y),
                StoredWeight::Ggml(t2, z),
            ) if t0 == t1 && t1 == t2 => {
                x.extend(y);
                x.extend(z);
                Some(StoredWeight::Ggml(t0, x))
            }
            (
                StoredWeight::Int8(mut c0, mut s0),
                StoredWeight::Int8(c1, s1),
                StoredWeight::Int8(c2, s2),
            ) => {
                c0.extend(c1);
                c0.extend(c2);
                s0.extend(s1);
                s0.extend(s2);
                Some(StoredWeight::Int8(c0, s0))
            }
            (
                StoredWeight::Int4(mut c0, mut s0, g0),
                StoredWeight::Int4(c1, s1, g1),
                StoredWeight::Int4(c2, s2, g2),
            ) if g0 == g1 && g1 == g2 => {
                c0.extend(c1);
                c0.extend(c2);
                s0.extend(s1);
                s0.extend(s2);
                Some(StoredWeight::Int4(c0, s0, g0))
            }
            _ => None,
        }
    }

    /// The kernel of this `[rows, cols]` weight with `bias`.
    pub(crate) fn kernel(self, rows: usize, cols: usize, bias: &[f32]) -> Result<Kernel> {
        let kernels = |e| kernel_err(e);
        Ok(match self {
            StoredWeight::Ggml(ty, bytes) => Kernel::Blocks {
                w: PackedBlocks::from_ggml(ty, &bytes, rows, cols).map_err(kernels)?,
                bias: bias.to_vec(),
            },
            StoredWeight::Int8(codes, scales) => Kernel::W8A8 {
                w: PackedI8::new(&codes, rows, cols).map_err(kernels)?,
                epi: Epilogue::new(scales)
                    .and_then(|e| e.bias(bias.to_vec()))
                    .map_err(kernels)?,
            },
            StoredWeight::Int4(codes, scales, group) => Kernel::Blocks {
                w: PackedBlocks::int4(&codes, &scales, rows, cols, group).map_err(kernels)?,
                bias: bias.to_vec(),
            },
        })
    }

    /// f32 weights `[rows, cols]` (row-major) quantized to int8, symmetric, one scale per row
    /// (`max |w| / 127`; a zero row gets scale 1): torch's `quantize_dynamic` with its
    /// per-channel qconfig.
    pub(crate) fn int8_per_channel(w: &[f32], cols: usize) -> Self {
        let mut codes = Vec::with_capacity(w.len());
        let mut scales = Vec::with_capacity(w.len() / cols.max(1));
        for row in w.chunks_exact(cols) {
            let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = if amax > 0.0 { amax / 127.0 } else { 1.0 };
            codes.extend(
                row.iter()
                    .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8),
            );
            scales.push(scale);
        }
        StoredWeight::Int8(codes, scales)
    }
}

/// The `.scale` companion of quantized tensor `name` as f32.
fn scales(ckpt: &Checkpoint, name: &str) -> Result<Vec<f32>> {
    let companions = ckpt.companion_bytes(name)?;
    let bytes = companions.first().ok_or_else(|| BertError::Weight {
        path: ckpt.path().to_path_buf(),
        tensor: name.to_string(),
        problem: "quantized tensor without its scale companion".into(),
    })?;
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use modelopt_quantize::ggml;

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// `x W^T + b` in f64.
    fn reference(x: &[f32], w: &[f32], b: &[f32], k: usize) -> Vec<f64> {
        x.chunks(k)
            .flat_map(|xr| {
                w.chunks(k).zip(b).map(move |(wr, &bi)| {
                    xr.iter()
                        .zip(wr)
                        .map(|(&a, &c)| f64::from(a) * f64::from(c))
                        .sum::<f64>()
                        + f64::from(bi)
                })
            })
            .collect()
    }

    fn relative(got: &[f32], want: &[f64]) -> f64 {
        let num: f64 = got
            .iter()
            .zip(want)
            .map(|(&g, &w)| (f64::from(g) - w).powi(2))
            .sum();
        let den: f64 = want.iter().map(|w| w * w).sum();
        (num / den).sqrt()
    }

    #[test]
    fn kernels_compute_x_w_t_plus_b() {
        let (m, n, k) = (5, 96, 64);
        let (x, w, b) = (values(m * k, 1), values(n * k, 2), values(n, 3));
        let want = reference(&x, &w, &b, k);
        let cases = [
            ("int8", StoredWeight::int8_per_channel(&w, k), 0.02),
            (
                "q8_0",
                StoredWeight::Ggml(GgmlType::Q8_0, ggml::quantize(GgmlType::Q8_0, &w).unwrap()),
                0.02,
            ),
            (
                "q4_0",
                StoredWeight::Ggml(GgmlType::Q4_0, ggml::quantize(GgmlType::Q4_0, &w).unwrap()),
                0.15,
            ),
        ];
        for (tag, stored, tol) in cases {
            let kernel = stored.kernel(n, k, &b).unwrap();
            let mut out = vec![0f32; m * n];
            kernel.forward(&x, m, &mut out).unwrap();
            let err = relative(&out, &want);
            assert!(err < tol, "{tag}: relative error {err}");
        }
    }
}
