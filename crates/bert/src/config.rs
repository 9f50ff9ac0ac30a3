//! `config.json` of a BERT checkpoint (the Hugging Face `BertConfig` fields the encoder needs).

use std::path::Path;

use serde_json::Value;

use crate::{BertError, Result};

/// The feed-forward activation named by `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HiddenAct {
    /// `"gelu"`: the exact GELU, `x/2 (1 + erf(x/√2))` (BERT, MiniLM).
    Gelu,
    /// `"gelu_new"`, `"gelu_pytorch_tanh"`: the tanh approximation.
    GeluTanh,
    /// `"relu"`.
    Relu,
}

impl HiddenAct {
    /// The activation for a `hidden_act` name, if supported.
    ///
    /// ```
    /// use modelopt_bert::HiddenAct;
    /// assert_eq!(HiddenAct::from_name("gelu"), Some(HiddenAct::Gelu));
    /// assert_eq!(HiddenAct::from_name("swish"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(HiddenAct::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Some(HiddenAct::GeluTanh),
            "relu" => Some(HiddenAct::Relu),
            _ => None,
        }
    }

    /// Applies the activation to one value.
    ///
    /// ```
    /// use modelopt_bert::HiddenAct;
    /// assert_eq!(HiddenAct::Relu.apply(-1.0), 0.0);
    /// assert!((HiddenAct::Gelu.apply(1.0) - 0.841_344_7).abs() < 1e-6);
    /// ```
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            HiddenAct::Gelu => 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)),
            HiddenAct::GeluTanh => {
                let c = (2.0f32 / std::f32::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044_715 * x * x * x)).tanh())
            }
            HiddenAct::Relu => x.max(0.0),
        }
    }
}

/// `erf(x)` by Abramowitz and Stegun 7.1.26 (absolute error 1.5e-7, 5.2e-7 in f32): one `exp` and a
/// polynomial, the form torch's vectorised CPU `erf` evaluates for the exact GELU, and twice as
/// fast here as a correctly rounded `erff` (whose far range needs two `exp`s).
#[inline]
pub(crate) fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152,
        1.061_405_4,
    ];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = ((((A[4] * t + A[3]) * t + A[2]) * t + A[1]) * t + A[0]) * t;
    (1.0 - poly * (-a * a).exp()).copysign(x)
}

#[cfg(test)]
mod tests {
    #[test]
    fn erf_is_within_its_bound_of_a_correctly_rounded_erf() {
        let mut worst = 0.0f64;
        for i in -80_000..=80_000 {
            let x = i as f32 * 1e-4; // -8..8
            let d = (f64::from(super::erf(x)) - f64::from(libm::erff(x))).abs();
            worst = worst.max(d);
        }
        assert!(worst <= 6e-7, "{worst}"); // 1.5e-7 of the formula plus f32 rounding
        assert_eq!(super::erf(10.0), 1.0);
        assert_eq!(super::erf(-10.0), -1.0);
    }
}

/// The shape of a BERT encoder, read from `config.json` and checked once.
///
/// ```
/// let text = r#"{"vocab_size": 100, "hidden_size": 8, "num_hidden_layers": 1,
///   "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 32}"#;
/// let c = modelopt_bert::BertConfig::from_json(text, "config.json")?;
/// assert_eq!(c.head_dim(), 4);
/// assert_eq!(c.type_vocab_size, 2); // Hugging Face's default
/// # Ok::<(), modelopt_bert::BertError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    /// Rows of the word embedding table.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer (divides `hidden_size`).
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Positions the model has embeddings for: the longest input it can read.
    pub max_position_embeddings: usize,
    /// Token types (segments).
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f32,
    /// Feed-forward activation.
    pub hidden_act: HiddenAct,
}

impl BertConfig {
    /// Reads and checks `config.json`.
    ///
    /// ```no_run
    /// let c = modelopt_bert::BertConfig::from_file("minilm/config.json")?;
    /// # Ok::<(), modelopt_bert::BertError>(())
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| BertError::file(path, format!("cannot read the model config: {e}")))?;
        Self::from_json(&text, path)
    }

    /// Parses and checks the JSON text of a config; `path` names it in errors.
    ///
    /// ```
    /// let err = modelopt_bert::BertConfig::from_json("{}", "config.json").unwrap_err();
    /// assert!(err.to_string().contains("vocab_size"));
    /// ```
    pub fn from_json(text: &str, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bad = |problem: String| BertError::file(path, problem);
        let v: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        if !v.is_object() {
            return Err(bad("not a JSON object".into()));
        }
        let count = |key: &str, default: Option<usize>| -> Result<usize> {
            match v.get(key) {
                None => default.ok_or_else(|| bad(format!("missing `{key}`"))),
                Some(x) => match x.as_u64().and_then(|n| usize::try_from(n).ok()) {
                    Some(n) if n > 0 => Ok(n),
                    _ => Err(bad(format!(
                        "`{key}` must be a positive integer, found {x}"
                    ))),
                },
            }
        };
        if let Some(p) = v.get("position_embedding_type")
            && p.as_str() != Some("absolute")
        {
            return Err(bad(format!(
                "position_embedding_type {p} is not supported (only \"absolute\")"
            )));
        }
        let act_name = match v.get("hidden_act") {
            None => "gelu",
            Some(a) => a
                .as_str()
                .ok_or_else(|| bad(format!("`hidden_act` must be a string, found {a}")))?,
        };
        let hidden_act = HiddenAct::from_name(act_name).ok_or_else(|| {
            bad(format!(
                "hidden_act \"{act_name}\" is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)"
            ))
        })?;
        let layer_norm_eps = match v.get("layer_norm_eps") {
            None => 1e-12,
            Some(x) => match x.as_f64() {
                Some(e) if e.is_finite() && e >= 0.0 => e as f32,
                _ => {
                    return Err(bad(format!(
                        "`layer_norm_eps` must be a number >= 0, found {x}"
                    )));
                }
            },
        };
        let c = BertConfig {
            vocab_size: count("vocab_size", None)?,
            hidden_size: count("hidden_size", None)?,
            num_hidden_layers: count("num_hidden_layers", None)?,
            num_attention_heads: count("num_attention_heads", None)?,
            intermediate_size: count("intermediate_size", None)?,
            max_position_embeddings: count("max_position_embeddings", None)?,
            type_vocab_size: count("type_vocab_size", Some(2))?,
            layer_norm_eps,
            hidden_act,
        };
        if !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                c.hidden_size, c.num_attention_heads
            )));
        }
        Ok(c)
    }

    /// Width of one attention head.
    ///
    /// ```
    /// let text = r#"{"vocab_size": 10, "hidden_size": 384, "num_hidden_layers": 6,
    ///   "num_attention_heads": 12, "intermediate_size": 1536, "max_position_embeddings": 512}"#;
    /// assert_eq!(modelopt_bert::BertConfig::from_json(text, "c")?.head_dim(), 32);
    /// # Ok::<(), modelopt_bert::BertError>(())
    /// ```
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}
