//! The quantized-safetensors convention (docs/formats.md) and decoding of stored tensors to f32.

use std::collections::BTreeMap;

use modelopt_quantize::ggml::GgmlType;
use serde_json::{Value, json};

use crate::{DType, IoError, Result, TensorInfo, decode_f32};

/// `__metadata__` key marking a file that follows the modelopt quantized convention.
pub const FORMAT_KEY: &str = "modelopt.format";
/// Value of [`FORMAT_KEY`] for this version of the convention.
pub const FORMAT_VERSION: &str = "quantized-safetensors/1";
/// Prefix of the per-tensor `__metadata__` key: `modelopt.quant.<tensor name>`.
pub const QUANT_KEY_PREFIX: &str = "modelopt.quant.";

/// How a quantized tensor is stored in a safetensors file (see docs/formats.md).
///
/// ```
/// use modelopt_io::QuantLayout;
/// use modelopt_quantize::ggml::GgmlType;
/// let q = QuantLayout::Ggml { ggml_type: GgmlType::Q8_0, shape: vec![2, 64] };
/// let json = q.to_json();
/// assert_eq!(QuantLayout::from_json(&json)?, q);
/// assert_eq!(q.storage()?, (modelopt_io::DType::U8, vec![2, 68]));
/// # Ok::<(), modelopt_io::IoError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuantLayout {
    /// GGML blocks of `ggml_type`, stored as a U8 tensor `[rows, row_bytes]`; `shape` is the
    /// logical row-major shape (its last dimension is the row that the blocks cover).
    Ggml {
        /// The block type.
        ggml_type: GgmlType,
        /// Logical shape of the f32 tensor.
        shape: Vec<usize>,
    },
}

impl QuantLayout {
    /// The JSON text stored under `modelopt.quant.<name>`.
    ///
    /// ```
    /// use modelopt_io::QuantLayout;
    /// use modelopt_quantize::ggml::GgmlType;
    /// let q = QuantLayout::Ggml { ggml_type: GgmlType::Q4_K, shape: vec![1, 256] };
    /// assert_eq!(q.to_json(), r#"{"scheme":"ggml","shape":[1,256],"type":"q4_K"}"#);
    /// ```
    pub fn to_json(&self) -> String {
        match self {
            QuantLayout::Ggml { ggml_type, shape } => {
                json!({"scheme": "ggml", "type": ggml_type.name(), "shape": shape}).to_string()
            }
        }
    }

    /// Parses the JSON text of [`QuantLayout::to_json`].
    ///
    /// ```
    /// assert!(modelopt_io::QuantLayout::from_json(r#"{"scheme":"magic"}"#).is_err());
    /// ```
    pub fn from_json(text: &str) -> Result<Self> {
        let bad = |p: &str| IoError::Usage(format!("quantization descriptor {text:?}: {p}"));
        let v: Value = serde_json::from_str(text).map_err(|_| bad("not JSON"))?;
        let shape = v
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| bad("missing integer array `shape`"))?;
        match v.get("scheme").and_then(Value::as_str) {
            Some("ggml") => {
                let name = v
                    .get("type")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("missing `type`"))?;
                let ggml_type = match DType::from_name(name) {
                    Some(DType::Ggml(t)) => t,
                    _ => return Err(bad(&format!("unknown GGML block type `{name}`"))),
                };
                Ok(QuantLayout::Ggml { ggml_type, shape })
            }
            _ => Err(bad("unknown `scheme`")),
        }
    }

    /// Logical row-major shape of the tensor.
    ///
    /// ```
    /// use modelopt_io::QuantLayout;
    /// use modelopt_quantize::ggml::GgmlType;
    /// let q = QuantLayout::Ggml { ggml_type: GgmlType::Q4_0, shape: vec![3, 32] };
    /// assert_eq!(q.shape(), &[3, 32]);
    /// ```
    pub fn shape(&self) -> &[usize] {
        match self {
            QuantLayout::Ggml { shape, .. } => shape,
        }
    }

    /// The logical dtype: `DType::Ggml(t)` for GGML blocks.
    ///
    /// ```
    /// use modelopt_io::{DType, QuantLayout};
    /// use modelopt_quantize::ggml::GgmlType;
    /// let q = QuantLayout::Ggml { ggml_type: GgmlType::Q6_K, shape: vec![1, 256] };
    /// assert_eq!(q.dtype(), DType::Ggml(GgmlType::Q6_K));
    /// ```
    pub fn dtype(&self) -> DType {
        match self {
            QuantLayout::Ggml { ggml_type, .. } => DType::from_ggml(*ggml_type),
        }
    }

    /// The safetensors dtype and shape of the stored codes tensor.
    ///
    /// ```
    /// use modelopt_io::QuantLayout;
    /// use modelopt_quantize::ggml::GgmlType;
    /// let q = QuantLayout::Ggml { ggml_type: GgmlType::Q4_0, shape: vec![2, 3, 64] };
    /// assert_eq!(q.storage()?.1, vec![6, 36]);
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn storage(&self) -> Result<(DType, Vec<usize>)> {
        match self {
            QuantLayout::Ggml { ggml_type, shape } => {
                let row = *shape.last().ok_or_else(|| {
                    IoError::Usage("a GGML-quantized tensor needs at least one dimension".into())
                })?;
                let n = crate::element_count(shape)?;
                let rows = n.checked_div(row).unwrap_or(0);
                Ok((DType::U8, vec![rows, ggml_type.row_bytes(row)?]))
            }
        }
    }

    /// The `(codes tensor, metadata entry)` to declare for tensor `name` in a safetensors writer.
    ///
    /// ```
    /// use modelopt_io::QuantLayout;
    /// use modelopt_quantize::ggml::GgmlType;
    /// let q = QuantLayout::Ggml { ggml_type: GgmlType::Q8_0, shape: vec![4, 32] };
    /// let (info, (key, _)) = q.safetensors_entry("w")?;
    /// assert_eq!((info.name.as_str(), key.as_str()), ("w", "modelopt.quant.w"));
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn safetensors_entry(&self, name: &str) -> Result<(TensorInfo, (String, String))> {
        let (dtype, shape) = self.storage()?;
        Ok((
            TensorInfo::new(name, dtype, shape),
            (format!("{QUANT_KEY_PREFIX}{name}"), self.to_json()),
        ))
    }
}

/// The quantized tensors a safetensors `__metadata__` map declares, by tensor name.
///
/// ```
/// use modelopt_io::{QuantLayout, quant_layouts};
/// use modelopt_quantize::ggml::GgmlType;
/// let q = QuantLayout::Ggml { ggml_type: GgmlType::Q8_0, shape: vec![1, 32] };
/// let meta = [("modelopt.quant.w".to_string(), q.to_json())].into_iter().collect();
/// assert_eq!(quant_layouts(&meta)?["w"], q);
/// # Ok::<(), modelopt_io::IoError>(())
/// ```
pub fn quant_layouts(metadata: &BTreeMap<String, String>) -> Result<BTreeMap<String, QuantLayout>> {
    metadata
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(QUANT_KEY_PREFIX).map(|name| (name, v)))
        .map(|(name, v)| {
            QuantLayout::from_json(v)
                .map(|q| (name.to_owned(), q))
                .map_err(|e| IoError::Usage(format!("tensor `{name}`: {e}")))
        })
        .collect()
}

/// Decodes `bytes` stored as `info` (plain float or GGML blocks) to f32.
pub(crate) fn to_f32(info: &TensorInfo, bytes: &[u8]) -> Result<Vec<f32>> {
    let n = info.elements()?;
    match info.dtype {
        DType::Ggml(t) => ggml_to_f32(t, bytes, n),
        d if d.is_float() => {
            let mut out = vec![0.0f32; n];
            decode_f32(d, bytes, &mut out)?;
            Ok(out)
        }
        d => Err(IoError::Usage(format!("dtype {d} cannot be read as f32"))),
    }
}

fn ggml_to_f32(t: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    Ok(modelopt_quantize::ggml::dequantize(t, bytes, n)?)
}
