//! `modelopt quantize --type nf4|fp4|kmeans2..kmeans8`: the nonlinear (codebook) types, written
//! to safetensors in the layouts of docs/formats.md.

use modelopt_io::{
    ABSMAX_CODE_SUFFIX, ABSMAX_OFFSET_SUFFIX, ABSMAX_SUFFIX, ABSMAX2_SUFFIX, CODEBOOK_SUFFIX,
    Checkpoint, CheckpointTensor, QuantLayout, SCALE_SUFFIX, f32_to_bytes,
};
use modelopt_quantize::codebook::{Absmax, Bnb4, Bnb4Kind, CodebookScheme, DYNAMIC_CODE};
use modelopt_tensor_core::{ErrorMetrics, Par};
use ndarray::ArrayView1;

use crate::error::{CliResult, failure};

/// A nonlinear quantization target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nonlinear {
    /// bitsandbytes' NF4/FP4, absmax per `block` elements of the flattened tensor.
    Bnb4 {
        /// NF4 or FP4.
        kind: Bnb4Kind,
        /// Elements per absmax block.
        block: usize,
        /// Double quantization of the absmax.
        double: bool,
    },
    /// One learned `2^bits`-level codebook per tensor over absmax-normalised blocks (k-means,
    /// each normalised weight weighted by its block's absmax squared).
    Codebook {
        /// Index width.
        bits: u8,
        /// Elements per absmax block.
        block: usize,
    },
}

impl Nonlinear {
    /// The type name in the report.
    pub fn name(&self) -> String {
        match self {
            Nonlinear::Bnb4 { kind, double, .. } => {
                format!("{}{}", kind.name(), if *double { "+dq" } else { "" })
            }
            Nonlinear::Codebook { bits, .. } => format!("kmeans{bits}"),
        }
    }

    /// Checks the parameters before any file is touched.
    pub fn check(&self) -> CliResult<()> {
        let r = match *self {
            Nonlinear::Bnb4 { block, .. } => Bnb4::nf4().block_size(block).check().map(|_| ()),
            Nonlinear::Codebook { bits, block } => {
                CodebookScheme::learned_nf4(bits, block).check().map(|_| ())
            }
        };
        r.map_err(|e| crate::error::CliError::Usage(format!("--block-size: {e}")))
    }

    /// The stored layout of a tensor of `shape`.
    pub fn layout(&self, shape: Vec<usize>) -> QuantLayout {
        match *self {
            Nonlinear::Bnb4 {
                kind,
                block,
                double,
            } => QuantLayout::Bnb4 {
                kind,
                shape,
                block_size: block,
                double_quant: double,
            },
            Nonlinear::Codebook { bits, block } => QuantLayout::Codebook {
                shape,
                bits,
                block_size: block,
            },
        }
    }
}

/// The tensors to write for one quantized tensor, in declaration order, and the SQNR.
pub struct Encoded {
    /// `(name, bytes)` of the codes and companions.
    pub parts: Vec<(String, Vec<u8>)>,
    /// SQNR of the reconstruction (dB).
    pub sqnr_db: f64,
}

/// Quantizes tensor `t` of `input` to `target` on all threads.
pub fn encode(input: &Checkpoint, t: &CheckpointTensor, target: Nonlinear) -> CliResult<Encoded> {
    let name = &t.info.name;
    let at = |p: String| failure(input.path(), format!("tensor `{name}`: {p}"));
    let x = input.tensor_f32(name)?;
    let view = ArrayView1::from(&x[..]);
    let par = Par::all_cores();
    let (parts, y) = match target {
        Nonlinear::Bnb4 {
            kind,
            block,
            double,
        } => {
            let s = match kind {
                Bnb4Kind::Nf4 => Bnb4::nf4(),
                Bnb4Kind::Fp4 => Bnb4::fp4(),
            }
            .block_size(block)
            .double_quant(double)
            .check()
            .map_err(|e| at(e.to_string()))?;
            let q = s.quantize_par(&view, par).map_err(|e| at(e.to_string()))?;
            let mut parts = vec![(name.clone(), q.packed().to_vec())];
            match q.absmax() {
                Absmax::F32(a) => parts.push((format!("{name}{ABSMAX_SUFFIX}"), f32_to_bytes(a))),
                Absmax::Double {
                    codes,
                    absmax2,
                    offset,
                } => {
                    parts.push((format!("{name}{ABSMAX_SUFFIX}"), codes.clone()));
                    parts.push((format!("{name}{ABSMAX2_SUFFIX}"), f32_to_bytes(absmax2)));
                    parts.push((
                        format!("{name}{ABSMAX_OFFSET_SUFFIX}"),
                        f32_to_bytes(&[*offset]),
                    ));
                    parts.push((
                        format!("{name}{ABSMAX_CODE_SUFFIX}"),
                        f32_to_bytes(&DYNAMIC_CODE),
                    ));
                }
                other => return Err(at(format!("unexpected absmax storage {other:?}"))),
            }
            (parts, q.dequantize_par(par))
        }
        Nonlinear::Codebook { bits, block } => {
            let s = CodebookScheme::learned_nf4(bits, block)
                .scale_weighted(true)
                .check()
                .map_err(|e| at(e.to_string()))?;
            let q = s.quantize_par(&view, par).map_err(|e| at(e.to_string()))?;
            let scales = q.scales().map(|s| s.1.to_vec()).unwrap_or_default();
            let parts = vec![
                (name.clone(), q.packed_indices().to_vec()),
                (format!("{name}{CODEBOOK_SUFFIX}"), f32_to_bytes(q.levels())),
                (format!("{name}{SCALE_SUFFIX}"), f32_to_bytes(&scales)),
            ];
            (parts, q.dequantize())
        }
    };
    let m = ErrorMetrics::between(&view, &y).map_err(|e| at(e.to_string()))?;
    Ok(Encoded {
        parts,
        sqnr_db: m.sqnr_db,
    })
}
