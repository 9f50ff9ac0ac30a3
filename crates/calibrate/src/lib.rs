//! # modelopt-calibrate
//!
//! Calibration with data for a BERT encoder ([`modelopt_bert::BertModel`], e.g.
//! all-MiniLM-L6-v2): the algorithms of `modelopt-quantize` (GPTQ, importance-weighted GGML
//! quantization) fed with the inputs of every linear layer while the model runs on calibration
//! text.
//!
//! Sequential, as GPTQ's reference does it for transformers: the token states of all
//! calibration batches are kept between layers; for each encoder layer, (1) the layer runs on
//! them with an [`ActivationHook`] accumulating the input statistics of its linear layers
//! (one [`HessianAccumulator`] per distinct input: query, key and value share theirs), (2) its
//! linear weights are quantized against those statistics and replaced in the model by what the
//! stored tensors decode to, (3) the quantized layer runs again to give the next layer its
//! inputs. So every layer is calibrated on the inputs the quantized model really produces.
//! Within a layer all statistics come from the first run (the reference's default; its
//! `true-sequential` variant re-runs the layer after each sub-block).
//!
//! ```no_run
//! use modelopt_bert::SentenceEncoder;
//! use modelopt_calibrate::{Calibrator, Format, Method, batches};
//! use modelopt_quantize::ggml::GgmlType;
//! use modelopt_tensor_core::Par;
//!
//! let enc = SentenceEncoder::from_dir("minilm")?;
//! let texts: Vec<String> = std::fs::read_to_string("sentences.txt")?.lines().take(500).map(String::from).collect();
//! let b = batches(enc.tokenizer(), &texts)?;
//! let mut model = enc.model().clone();
//! let cal = Calibrator::new(Method::Gptq, Format::Ggml(GgmlType::Q4_0)).calibrate(&mut model, &b)?;
//! println!("{} tensors, {} tokens", cal.tensors.len(), cal.tokens);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;

mod sequential;

pub use sequential::{LayerInputs, layer_by_layer};

use modelopt_bert::{BATCH_SENTENCES, BertError, BertModel, SentenceTokenizer, TokenBatch};
use modelopt_quantize::ggml::{self, GgmlType};
use modelopt_quantize::gptq::{Gptq, GptqReport, HessianAccumulator};
use modelopt_quantize::{QuantError, QuantScheme};
use modelopt_tensor_core::{CoreError, Par};
use ndarray::Array2;
use thiserror::Error;

/// Errors of calibration.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CalibrateError {
    /// The model failed to run (bad batch, shapes).
    #[error(transparent)]
    Bert(#[from] BertError),
    /// A quantization step failed; `layer` is the weight's checkpoint name.
    #[error("`{layer}`: {source}")]
    Quant {
        /// The linear layer's weight name.
        layer: String,
        /// What went wrong.
        source: QuantError,
    },
    /// Calibration inputs or settings that cannot work (no text, unsupported combination).
    #[error("calibration: {0}")]
    Input(String),
}

/// `Result` with [`CalibrateError`].
pub type Result<T, E = CalibrateError> = std::result::Result<T, E>;

/// The calibration algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Method {
    /// GPTQ (Q4_0, Q8_0, int4).
    Gptq,
    /// llama.cpp's importance-weighted GGML quantizers with the per-column mean of `x²` as the
    /// importance (what `llama-imatrix` collects), any GGML type with an importance path.
    Imatrix,
}

/// The stored format of the linear weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// GGML blocks.
    Ggml(GgmlType),
    /// modelopt's int4 safetensors layout: symmetric codes in `[-7, 7]`, an f32 scale per
    /// `group_size` columns.
    Int4 {
        /// Columns per scale.
        group_size: usize,
    },
}

/// One calibrated weight in its stored form.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CalibratedTensor {
    /// The format.
    pub format: Format,
    /// GGML rows, or the int4 codes packed two per byte (even element in the low nibble).
    pub data: Vec<u8>,
    /// int4 only: the scales, row-major `[out, in / group_size]`.
    pub scales: Vec<f32>,
    /// What the stored tensor decodes to (`[out, in]`).
    pub dequantized: Array2<f32>,
    /// GPTQ's report (dampening, dead columns, loss), for GPTQ.
    pub gptq: Option<GptqReport>,
}

/// The result of a calibration.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Calibration {
    /// The calibrated weights by checkpoint name.
    pub tensors: BTreeMap<String, CalibratedTensor>,
    /// Calibration tokens per layer input.
    pub tokens: usize,
}

/// Tokenizes `texts` into batches of [`BATCH_SENTENCES`] sentences (the encoder's batching).
/// Errors on no text.
pub fn batches<S: AsRef<str>>(tok: &SentenceTokenizer, texts: &[S]) -> Result<Vec<TokenBatch>> {
    if texts.is_empty() {
        return Err(CalibrateError::Input("no calibration text".into()));
    }
    texts
        .chunks(BATCH_SENTENCES)
        .map(|c| Ok(tok.encode(c)?.batch))
        .collect()
}

/// Calibration settings (a builder).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibrator {
    method: Method,
    format: Format,
    fallback: Option<Format>,
    gptq: Gptq,
    par: Par,
}

impl Calibrator {
    /// `method` to `format`, GPTQ with its defaults, sequential.
    pub fn new(method: Method, format: Format) -> Self {
        Calibrator {
            method,
            format,
            fallback: None,
            gptq: Gptq::new(),
            par: Par::Seq,
        }
    }

    /// The format of weights whose rows do not fit `format`'s blocks (e.g. Q4_0 for rows of
    /// 384 when the format is a 256-block K type, as `llama-quantize` and `modelopt quantize`
    /// fall back).
    pub fn fallback(mut self, fallback: Format) -> Self {
        self.fallback = Some(fallback);
        self
    }

    /// GPTQ's settings (act order, dampening, block size).
    pub fn gptq(mut self, gptq: Gptq) -> Self {
        self.gptq = gptq;
        self
    }

    /// Threads for the forward passes and the per-layer quantization.
    pub fn par(mut self, par: Par) -> Self {
        self.par = par;
        self
    }

    fn check(&self) -> Result<()> {
        for f in [Some(self.format), self.fallback].into_iter().flatten() {
            self.check_format(f)?;
        }
        Ok(())
    }

    fn check_format(&self, format: Format) -> Result<()> {
        match (self.method, format) {
            (Method::Gptq, Format::Ggml(GgmlType::Q4_0 | GgmlType::Q8_0)) => {}
            (Method::Gptq, Format::Int4 { group_size }) if group_size > 0 => {}
            (Method::Imatrix, Format::Ggml(ty)) if ty.block_size() > 1 => {}
            (m, f) => {
                return Err(CalibrateError::Input(format!(
                    "{m:?} does not support {f:?} (GPTQ: q4_0, q8_0, int4; imatrix: GGML block types)"
                )));
            }
        }
        self.gptq.check().map_err(|source| CalibrateError::Quant {
            layer: "settings".into(),
            source,
        })?;
        Ok(())
    }

    /// Calibrates every linear layer of `model` on `batches`, layer after layer; `model`'s
    /// linear weights are replaced by their quantized values on the way (so afterwards it is
    /// the quantized model). Errors on no batch, a NaN in the activations (a diverging model),
    /// a layer whose width does not fit the format, or a Hessian that stays indefinite.
    pub fn calibrate(&self, model: &mut BertModel, batches: &[TokenBatch]) -> Result<Calibration> {
        self.check()?;
        let mut tensors = BTreeMap::new();
        let tokens = sequential::layer_by_layer(model, batches, self.par, |model, inputs| {
            let names = inputs.order();
            let weights: Vec<Array2<f32>> = names
                .iter()
                .map(|n| model.linear_weight(n).map(|w| w.to_owned()))
                .collect::<std::result::Result<_, _>>()?;
            let results = self.par.map_range(names.len(), |k| {
                self.quantize_one(&weights[k], inputs.stats(&names[k]))
                    .map_err(|source| CalibrateError::Quant {
                        layer: names[k].clone(),
                        source,
                    })
            });
            for (name, r) in names.iter().zip(results) {
                let t = r?;
                model.set_linear_weight(name, t.dequantized.view())?;
                tensors.insert(name.clone(), t);
            }
            Ok(())
        })?;
        Ok(Calibration { tensors, tokens })
    }

    /// The format for rows of `cols` weights: the requested one, or the fallback if its blocks
    /// do not divide the row.
    fn format_for(&self, cols: usize) -> Format {
        let fits = match self.format {
            Format::Ggml(ty) => cols.is_multiple_of(ty.block_size()),
            Format::Int4 { group_size } => cols.is_multiple_of(group_size),
        };
        match self.fallback {
            Some(f) if !fits => f,
            _ => self.format,
        }
    }

    fn quantize_one(
        &self,
        w: &Array2<f32>,
        stats: &HessianAccumulator,
    ) -> std::result::Result<CalibratedTensor, QuantError> {
        let (rows, cols) = w.dim();
        let format = self.format_for(cols);
        match (self.method, format) {
            (Method::Gptq, Format::Ggml(ty)) => {
                let out = self.gptq.check()?.quantize_ggml(w, &stats.finish()?, ty)?;
                Ok(CalibratedTensor {
                    format,
                    data: out.quantized,
                    scales: Vec::new(),
                    dequantized: out.dequantized,
                    gptq: Some(out.report),
                })
            }
            (Method::Gptq, Format::Int4 { group_size }) => {
                let scheme = QuantScheme::int4().per_group(1, group_size).check()?;
                let out = self
                    .gptq
                    .check()?
                    .quantize_uniform(w, &stats.finish()?, &scheme)?;
                Ok(CalibratedTensor {
                    format,
                    data: out.quantized.packed_codes().to_vec(),
                    scales: out.quantized.params().scales().iter().copied().collect(),
                    dequantized: out.dequantized,
                    gptq: Some(out.report),
                })
            }
            (Method::Imatrix, Format::Ggml(ty)) => {
                let n = stats.samples().max(1) as f64;
                let importance: Vec<f32> = stats.sum_sq().iter().map(|&v| (v / n) as f32).collect();
                let src: Vec<f32> = w.iter().copied().collect();
                let mut data = vec![0u8; rows * ty.row_bytes(cols)?];
                ggml::quantize_rows_imatrix(ty, &src, cols, &importance, &mut data, Par::Seq)?;
                let back = ggml::dequantize(ty, &data, rows * cols)?;
                let dequantized = Array2::from_shape_vec((rows, cols), back)
                    .map_err(|e| CoreError::invalid("shape", e.to_string()))?;
                Ok(CalibratedTensor {
                    format,
                    data,
                    scales: Vec::new(),
                    dequantized,
                    gptq: None,
                })
            }
            _ => Err(CoreError::invalid("method", "unsupported combination").into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_combinations_are_errors() {
        let c = Calibrator::new(Method::Gptq, Format::Ggml(GgmlType::Q4_K));
        assert!(matches!(c.check(), Err(CalibrateError::Input(_))));
        let c = Calibrator::new(Method::Imatrix, Format::Int4 { group_size: 32 });
        assert!(c.check().is_err());
        let c = Calibrator::new(Method::Gptq, Format::Int4 { group_size: 0 });
        assert!(c.check().is_err());
        let c =
            Calibrator::new(Method::Gptq, Format::Ggml(GgmlType::Q4_0)).gptq(Gptq::new().damp(0.0));
        assert!(c.check().is_err());
        let ok = Calibrator::new(Method::Imatrix, Format::Ggml(GgmlType::Q3_K))
            .fallback(Format::Ggml(GgmlType::Q4_0));
        assert!(ok.check().is_ok());
        assert_eq!(ok.format_for(384), Format::Ggml(GgmlType::Q4_0));
        assert_eq!(ok.format_for(1536), Format::Ggml(GgmlType::Q3_K));
    }
}
