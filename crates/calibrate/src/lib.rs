//! # modelopt-calibrate
//!
//! Calibration with data for a BERT encoder ([`modelopt_bert::BertModel`], e.g.
//! all-MiniLM-L6-v2): the algorithms of `modelopt-quantize` (GPTQ, AWQ, importance-weighted GGML
//! quantization; SparseGPT pruning with [`SparseGptPruner`]) fed with the inputs of every
//! linear layer while the model runs on calibration text.
//!
//! Sequential, as GPTQ's reference does it for transformers: the token states of all
//! calibration batches are kept between layers; for each encoder layer, (1) the layer runs on
//! them with an [`ActivationHook`](modelopt_bert::ActivationHook) accumulating the input statistics of its linear layers
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

mod prune;
mod sequential;

pub use prune::{PrunedTensor, Pruning, SparseGptPruner};
pub use sequential::{LayerInputs, layer_by_layer};

use modelopt_bert::{BATCH_SENTENCES, BertError, BertModel, SentenceTokenizer, TokenBatch};
use modelopt_quantize::awq::Awq;
use modelopt_quantize::ggml::{self, GgmlType};
use modelopt_quantize::gptq::{Gptq, GptqReport, HessianAccumulator};
use modelopt_quantize::{QuantError, QuantScheme};
use modelopt_tensor_core::{CoreError, Par};
use ndarray::{Array1, Array2};
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
    /// AWQ: per-input-channel scales searched on the layer's inputs
    /// ([`modelopt_quantize::awq`]) for the linear layers whose input scales fold exactly into
    /// the layer producing that input ([`BertModel::input_producer`]: on BERT the attention
    /// output projections, folded into the value projections), then round-to-nearest for
    /// every weight. Any GGML block type or int4.
    Awq,
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
    /// The method that calibrated it.
    pub method: Method,
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
    /// AWQ's choice for this weight's input channels (the exponent, the calibration errors
    /// with and without it), for AWQ on a layer whose inputs could be rescaled.
    pub awq: Option<AwqChoice>,
}

/// What AWQ chose for one linear layer.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct AwqChoice {
    /// The exponent `α` of `s = mean|x|^α` (0: no scaling).
    pub alpha: f32,
    /// The layer's calibration output error `tr(Δ H Δᵀ)` with the chosen scales.
    pub error: f64,
    /// The same without scaling.
    pub error_unscaled: f64,
}

/// The result of a calibration.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Calibration {
    /// The calibrated weights by checkpoint name.
    pub tensors: BTreeMap<String, CalibratedTensor>,
    /// Calibration tokens per layer input.
    pub tokens: usize,
    /// Float tensors the calibration changed, by checkpoint name: the biases of the layers
    /// into which AWQ folded its input scales (their weights are in `tensors`).
    pub biases: BTreeMap<String, Array1<f32>>,
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
    awq: Awq,
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
            awq: Awq::new(),
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

    /// AWQ's settings (the grid of exponents).
    pub fn awq(mut self, awq: Awq) -> Self {
        self.awq = awq;
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
            (Method::Imatrix | Method::Awq, Format::Ggml(ty)) if ty.block_size() > 1 => {}
            (Method::Awq, Format::Int4 { group_size }) if group_size > 0 => {}
            (m, f) => {
                return Err(CalibrateError::Input(format!(
                    "{m:?} does not support {f:?} (GPTQ: q4_0, q8_0, int4; imatrix: GGML block types; AWQ: GGML block types, int4)"
                )));
            }
        }
        let settings = |source| CalibrateError::Quant {
            layer: "settings".into(),
            source,
        };
        self.gptq.check().map_err(settings)?;
        self.awq.check().map_err(settings)?;
        Ok(())
    }

    /// Calibrates every linear layer of `model` on `batches`, layer after layer; `model`'s
    /// linear weights are replaced by their quantized values on the way (so afterwards it is
    /// the quantized model). Errors on no batch, a NaN in the activations (a diverging model),
    /// a layer whose width does not fit the format, or a Hessian that stays indefinite.
    pub fn calibrate(&self, model: &mut BertModel, batches: &[TokenBatch]) -> Result<Calibration> {
        self.check()?;
        let mut tensors = BTreeMap::new();
        let mut biases = BTreeMap::new();
        let mut choices = BTreeMap::new();
        let tokens = sequential::layer_by_layer(model, batches, self.par, |model, inputs| {
            let names = inputs.order();
            if self.method == Method::Awq {
                for name in names {
                    if let Some((choice, producer)) = self.awq_scale(model, name, inputs)? {
                        let bias = model.linear_bias(&producer)?.to_owned();
                        let bias_name = producer.strip_suffix(".weight").unwrap_or(&producer);
                        biases.insert(format!("{bias_name}.bias"), bias);
                        choices.insert(name.clone(), choice);
                    }
                }
            }
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
                let mut t = r?;
                t.method = self.method;
                t.awq = choices.get(name).copied();
                model.set_linear_weight(name, t.dequantized.view())?;
                tensors.insert(name.clone(), t);
            }
            Ok(())
        })?;
        Ok(Calibration {
            tensors,
            tokens,
            biases,
        })
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

    /// AWQ for linear layer `name` if its input can be rescaled: searches the scales against
    /// round-to-nearest in the layer's format and folds them into the model (the layer's
    /// columns and its producer's rows and bias). Returns the choice and the producer's name,
    /// `None` for layers without a producer or when no scaling beats none.
    fn awq_scale(
        &self,
        model: &mut BertModel,
        name: &str,
        inputs: &LayerInputs,
    ) -> Result<Option<(AwqChoice, String)>> {
        if model.input_producer(name).is_none() {
            return Ok(None);
        }
        let quant = |source| CalibrateError::Quant {
            layer: name.to_string(),
            source,
        };
        let w = model.linear_weight(name)?.to_owned();
        let format = self.format_for(w.ncols());
        let stats = inputs.stats(name);
        let (hessian, mean_abs) = (
            stats.finish().map_err(quant)?,
            stats.mean_abs().map_err(quant)?,
        );
        let found = self
            .awq
            .check()
            .and_then(|a| {
                a.search(&[&w], &hessian, &mean_abs, |w| {
                    Ok(round_to_nearest(w, format)?.dequantized)
                })
            })
            .map_err(quant)?;
        if found.alpha == 0.0 {
            return Ok(None);
        }
        let producer = model.scale_linear_input(name, found.scales.view())?;
        let choice = AwqChoice {
            alpha: found.alpha,
            error: found.error,
            error_unscaled: found.error_unscaled,
        };
        Ok(Some((choice, producer)))
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
                    method: Method::Gptq,
                    format,
                    data: out.quantized,
                    scales: Vec::new(),
                    dequantized: out.dequantized,
                    gptq: Some(out.report),
                    awq: None,
                })
            }
            (Method::Gptq, Format::Int4 { group_size }) => {
                let scheme = QuantScheme::int4().per_group(1, group_size).check()?;
                let out = self
                    .gptq
                    .check()?
                    .quantize_uniform(w, &stats.finish()?, &scheme)?;
                Ok(CalibratedTensor {
                    method: Method::Gptq,
                    format,
                    data: out.quantized.packed_codes().to_vec(),
                    scales: out.quantized.params().scales().iter().copied().collect(),
                    dequantized: out.dequantized,
                    gptq: Some(out.report),
                    awq: None,
                })
            }
            (Method::Awq, format) => round_to_nearest(w, format),
            (Method::Imatrix, Format::Ggml(ty)) => {
                let n = stats.samples().max(1) as f64;
                let importance: Vec<f32> = stats.sum_sq().iter().map(|&v| (v / n) as f32).collect();
                let src: Vec<f32> = w.iter().copied().collect();
                let mut data = vec![0u8; rows * ty.row_bytes(cols)?];
                ggml::quantize_rows_imatrix(ty, &src, cols, &importance, &mut data, Par::Seq)?;
                ggml_tensor(ty, data, rows, cols)
            }
            _ => Err(CoreError::invalid("method", "unsupported combination").into()),
        }
    }
}

/// `w` rounded to nearest in `format` (GGML blocks without importance, or int4 per group).
fn round_to_nearest(
    w: &Array2<f32>,
    format: Format,
) -> std::result::Result<CalibratedTensor, QuantError> {
    let (rows, cols) = w.dim();
    match format {
        Format::Ggml(ty) => {
            let src: Vec<f32> = w.iter().copied().collect();
            let mut data = vec![0u8; rows * ty.row_bytes(cols)?];
            ggml::quantize_rows(ty, &src, cols, &mut data, Par::Seq)?;
            ggml_tensor(ty, data, rows, cols)
        }
        Format::Int4 { group_size } => {
            let q = QuantScheme::int4()
                .per_group(1, group_size)
                .check()?
                .quantize(w)?;
            Ok(CalibratedTensor {
                method: Method::Awq,
                format,
                data: q.packed_codes().to_vec(),
                scales: q.params().scales().iter().copied().collect(),
                dequantized: q.dequantize(),
                gptq: None,
                awq: None,
            })
        }
    }
}

/// GGML rows of a `[rows, cols]` weight as a calibrated tensor (with what they decode to).
fn ggml_tensor(
    ty: GgmlType,
    data: Vec<u8>,
    rows: usize,
    cols: usize,
) -> std::result::Result<CalibratedTensor, QuantError> {
    let back = ggml::dequantize(ty, &data, rows * cols)?;
    let dequantized = Array2::from_shape_vec((rows, cols), back)
        .map_err(|e| CoreError::invalid("shape", e.to_string()))?;
    Ok(CalibratedTensor {
        method: Method::Awq,
        format: Format::Ggml(ty),
        data,
        scales: Vec::new(),
        dequantized,
        gptq: None,
        awq: None,
    })
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
