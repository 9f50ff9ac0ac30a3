//! The quantized-safetensors convention (docs/formats.md) and decoding of stored tensors to f32.

use std::collections::BTreeMap;

use modelopt_quantize::codebook::Bnb4Kind;
use modelopt_quantize::ggml::GgmlType;
use serde_json::{Value, json};

use crate::codebook_layout::{
    bnb_companions, bnb_dequantize, check_bnb, check_codebook, codebook_code_bytes,
    codebook_companions, codebook_dequantize,
};

use crate::{DType, IoError, Result, TensorInfo, decode_f32};

/// `__metadata__` key marking a file that follows the modelopt quantized convention.
pub const FORMAT_KEY: &str = "modelopt.format";
/// Value of [`FORMAT_KEY`] for this version of the convention.
pub const FORMAT_VERSION: &str = "quantized-safetensors/1";
/// Prefix of the per-tensor `__metadata__` key: `modelopt.quant.<tensor name>`.
pub const QUANT_KEY_PREFIX: &str = "modelopt.quant.";

/// Suffix of the per-row (int8) or per-group (int4) scale companion tensor: `<name>.scale`.
pub const SCALE_SUFFIX: &str = ".scale";

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
    /// Signed 8-bit symmetric codes, one scale per index of axis 0: codes `I8` of `shape`,
    /// `<name>.scale` F32 `[shape[0]]`; `x = code * scale[i0]`.
    Int8PerChannel {
        /// Logical shape (at least one dimension).
        shape: Vec<usize>,
    },
    /// Signed 4-bit symmetric codes in `[-7, 7]`, one scale per `group_size` consecutive elements
    /// of a row: codes packed two per byte (element `2i` in the low nibble, two's complement) as
    /// `U8` of `shape` with the last dimension halved, `<name>.scale` F32 of `shape` with the last
    /// dimension divided by `group_size`; `x = code * scale[.., j / group_size]`.
    Int4Grouped {
        /// Logical shape; its last dimension is even and a multiple of `group_size`.
        shape: Vec<usize>,
        /// Elements per scale.
        group_size: usize,
    },
    /// bitsandbytes' NF4 or FP4: `U8 [ceil(n / 2)]` codes (first element in the high nibble),
    /// `<name>.absmax` F32 per block of the flattened tensor, or with double quantization
    /// `<name>.absmax` U8 codes, `<name>.absmax2` F32 per 256 blocks, `<name>.absmax_offset`
    /// F32 `[1]` and `<name>.absmax_code` F32 `[256]` (docs/formats.md).
    Bnb4 {
        /// NF4 or FP4.
        kind: Bnb4Kind,
        /// Logical shape.
        shape: Vec<usize>,
        /// Elements per absmax block (a power of two >= 32).
        block_size: usize,
        /// Whether the absmax values are double-quantized.
        double_quant: bool,
    },
    /// One learned codebook of `2^bits` f32 levels over absmax-normalised blocks: `U8` dense
    /// MSB-first `bits`-bit indices, `<name>.codebook` F32 `[2^bits]`, `<name>.scale` F32 per
    /// block of the flattened tensor; `x = codebook[index] * scale[i / block_size]`.
    Codebook {
        /// Logical shape.
        shape: Vec<usize>,
        /// Index width (1..=8).
        bits: u8,
        /// Elements per scale.
        block_size: usize,
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
            QuantLayout::Int8PerChannel { shape } => {
                json!({"scheme": "int8", "axis": 0, "shape": shape}).to_string()
            }
            QuantLayout::Int4Grouped { shape, group_size } => {
                json!({"scheme": "int4", "group_size": group_size, "shape": shape}).to_string()
            }
            QuantLayout::Bnb4 {
                kind,
                shape,
                block_size,
                double_quant,
            } => json!({"scheme": kind.name(), "block_size": block_size,
                "double_quant": double_quant, "shape": shape})
            .to_string(),
            QuantLayout::Codebook {
                shape,
                bits,
                block_size,
            } => json!({"scheme": "codebook", "bits": bits, "block_size": block_size,
                "shape": shape})
            .to_string(),
        }
    }

    /// Parses the JSON text of [`QuantLayout::to_json`] (and checks the shape fits the scheme).
    ///
    /// ```
    /// assert!(modelopt_io::QuantLayout::from_json(r#"{"scheme":"magic"}"#).is_err());
    /// assert!(modelopt_io::QuantLayout::from_json(r#"{"scheme":"int4","group_size":3,"shape":[2,4]}"#).is_err());
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
        let layout = match v.get("scheme").and_then(Value::as_str) {
            Some("ggml") => {
                let name = v
                    .get("type")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("missing `type`"))?;
                let ggml_type = match DType::from_name(name) {
                    Some(DType::Ggml(t)) => t,
                    _ => return Err(bad(&format!("unknown GGML block type `{name}`"))),
                };
                QuantLayout::Ggml { ggml_type, shape }
            }
            Some("int8") => {
                if v.get("axis").and_then(Value::as_u64) != Some(0) {
                    return Err(bad("int8 `axis` must be 0"));
                }
                QuantLayout::Int8PerChannel { shape }
            }
            Some("int4") => {
                let g = v
                    .get("group_size")
                    .and_then(Value::as_u64)
                    .and_then(|g| usize::try_from(g).ok())
                    .ok_or_else(|| bad("missing integer `group_size`"))?;
                QuantLayout::Int4Grouped {
                    shape,
                    group_size: g,
                }
            }
            Some(k @ ("nf4" | "fp4")) => {
                let block_size = v
                    .get("block_size")
                    .and_then(Value::as_u64)
                    .and_then(|g| usize::try_from(g).ok())
                    .ok_or_else(|| bad("missing integer `block_size`"))?;
                let double_quant = v
                    .get("double_quant")
                    .and_then(Value::as_bool)
                    .ok_or_else(|| bad("missing boolean `double_quant`"))?;
                QuantLayout::Bnb4 {
                    kind: if k == "nf4" {
                        Bnb4Kind::Nf4
                    } else {
                        Bnb4Kind::Fp4
                    },
                    shape,
                    block_size,
                    double_quant,
                }
            }
            Some("codebook") => {
                let int = |key: &str| {
                    v.get(key)
                        .and_then(Value::as_u64)
                        .and_then(|g| usize::try_from(g).ok())
                        .ok_or_else(|| bad(&format!("missing integer `{key}`")))
                };
                QuantLayout::Codebook {
                    shape,
                    bits: u8::try_from(int("bits")?).map_err(|_| bad("`bits` out of range"))?,
                    block_size: int("block_size")?,
                }
            }
            _ => return Err(bad("unknown `scheme`")),
        };
        layout.storage().map_err(|e| bad(&e.to_string()))?;
        Ok(layout)
    }

    /// Logical row-major shape of the tensor.
    ///
    /// ```
    /// use modelopt_io::QuantLayout;
    /// let q = QuantLayout::Int8PerChannel { shape: vec![3, 32] };
    /// assert_eq!(q.shape(), &[3, 32]);
    /// ```
    pub fn shape(&self) -> &[usize] {
        match self {
            QuantLayout::Ggml { shape, .. }
            | QuantLayout::Int8PerChannel { shape }
            | QuantLayout::Int4Grouped { shape, .. }
            | QuantLayout::Bnb4 { shape, .. }
            | QuantLayout::Codebook { shape, .. } => shape,
        }
    }

    /// The scheme's name: the GGML type name (`"q4_0"`), `"int8"` or `"int4"`.
    ///
    /// ```
    /// use modelopt_io::QuantLayout;
    /// assert_eq!(QuantLayout::Int4Grouped { shape: vec![1, 32], group_size: 32 }.name(), "int4");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            QuantLayout::Ggml { ggml_type, .. } => ggml_type.name(),
            QuantLayout::Int8PerChannel { .. } => "int8",
            QuantLayout::Int4Grouped { .. } => "int4",
            QuantLayout::Bnb4 { kind, .. } => kind.name(),
            QuantLayout::Codebook { .. } => "codebook",
        }
    }

    /// The logical dtype: `DType::Ggml(t)` for GGML blocks, the codes' dtype (I8, U8) otherwise.
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
            QuantLayout::Int8PerChannel { .. } => DType::I8,
            QuantLayout::Int4Grouped { .. }
            | QuantLayout::Bnb4 { .. }
            | QuantLayout::Codebook { .. } => DType::U8,
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
        let shape = self.shape();
        let row = *shape.last().ok_or_else(|| {
            IoError::Usage("a quantized tensor needs at least one dimension".into())
        })?;
        let n = crate::element_count(shape)?;
        match self {
            QuantLayout::Ggml { ggml_type, .. } => {
                let rows = n.checked_div(row).unwrap_or(0);
                Ok((DType::U8, vec![rows, ggml_type.row_bytes(row)?]))
            }
            QuantLayout::Int8PerChannel { shape } => Ok((DType::I8, shape.clone())),
            QuantLayout::Int4Grouped { shape, group_size } => {
                if *group_size == 0 || row % 2 != 0 || row % group_size != 0 {
                    return Err(IoError::Usage(format!(
                        "int4: row length {row} must be even and a multiple of the group size {group_size}"
                    )));
                }
                let mut s = shape.clone();
                *s.last_mut().unwrap_or(&mut 0) = row / 2; // ok: shape is non-empty
                Ok((DType::U8, s))
            }
            QuantLayout::Bnb4 { block_size, .. } => {
                check_bnb(*block_size)?;
                Ok((DType::U8, vec![n.div_ceil(2)]))
            }
            QuantLayout::Codebook {
                bits, block_size, ..
            } => {
                check_codebook(*bits, *block_size)?;
                Ok((DType::U8, vec![codebook_code_bytes(n, *bits)]))
            }
        }
    }

    /// The companion tensors stored beside the codes: `(name suffix, dtype, shape)`.
    ///
    /// ```
    /// use modelopt_io::{DType, QuantLayout};
    /// let q = QuantLayout::Int4Grouped { shape: vec![2, 64], group_size: 32 };
    /// assert_eq!(q.companions(), vec![(".scale", DType::F32, vec![2, 2])]);
    /// ```
    pub fn companions(&self) -> Vec<(&'static str, DType, Vec<usize>)> {
        match self {
            QuantLayout::Ggml { .. } => vec![],
            QuantLayout::Int8PerChannel { shape } => {
                vec![(
                    SCALE_SUFFIX,
                    DType::F32,
                    vec![shape.first().copied().unwrap_or(1)],
                )]
            }
            QuantLayout::Int4Grouped { shape, group_size } => {
                let mut s = shape.clone();
                if let Some(last) = s.last_mut() {
                    *last /= (*group_size).max(1);
                }
                vec![(SCALE_SUFFIX, DType::F32, s)]
            }
            QuantLayout::Bnb4 {
                shape,
                block_size,
                double_quant,
                ..
            } => bnb_companions(shape.iter().product(), *block_size, *double_quant),
            QuantLayout::Codebook {
                shape,
                bits,
                block_size,
            } => codebook_companions(shape.iter().product(), *bits, *block_size),
        }
    }

    /// Every tensor to declare for tensor `name` in a safetensors writer (codes first, then the
    /// companions, in write order) and the `__metadata__` entry.
    ///
    /// ```
    /// use modelopt_io::QuantLayout;
    /// let q = QuantLayout::Int8PerChannel { shape: vec![4, 32] };
    /// let (infos, (key, _)) = q.safetensors_entries("w")?;
    /// assert_eq!(infos.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["w", "w.scale"]);
    /// assert_eq!(key, "modelopt.quant.w");
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn safetensors_entries(&self, name: &str) -> Result<(Vec<TensorInfo>, (String, String))> {
        let (dtype, shape) = self.storage()?;
        let mut infos = vec![TensorInfo::new(name, dtype, shape)];
        for (suffix, d, s) in self.companions() {
            infos.push(TensorInfo::new(format!("{name}{suffix}"), d, s));
        }
        Ok((infos, (format!("{QUANT_KEY_PREFIX}{name}"), self.to_json())))
    }

    /// Reconstructs f32 values from the stored codes and companion bytes (in
    /// [`QuantLayout::companions`] order).
    ///
    /// ```
    /// use modelopt_io::QuantLayout;
    /// let q = QuantLayout::Int8PerChannel { shape: vec![2, 2] };
    /// let scale: Vec<u8> = [0.5f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    /// let codes = [1u8, 0xff, 3, 0x80]; // 1, -1, 3, -128
    /// assert_eq!(q.dequantize(&codes, &[&scale])?, vec![0.5, -0.5, 6.0, -256.0]);
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn dequantize(&self, codes: &[u8], companions: &[&[u8]]) -> Result<Vec<f32>> {
        let (dtype, stored_shape) = self.storage()?;
        let want = dtype.storage_bytes(&stored_shape)?;
        if codes.len() != want {
            return Err(IoError::Usage(format!(
                "{}: {} code bytes for {want} expected",
                self.name(),
                codes.len()
            )));
        }
        let n = crate::element_count(self.shape())?;
        let scales = |i: usize| -> Result<Vec<f32>> {
            let (_, d, s) = &self.companions()[i];
            let bytes = companions.get(i).copied().unwrap_or(&[]);
            let mut out = vec![0.0f32; crate::element_count(s)?];
            decode_f32(*d, bytes, &mut out)?;
            Ok(out)
        };
        match self {
            QuantLayout::Ggml { ggml_type, .. } => ggml_to_f32(*ggml_type, codes, n),
            QuantLayout::Int8PerChannel { .. } => {
                let scale = scales(0)?;
                let per = n.checked_div(scale.len()).unwrap_or(0);
                Ok(codes
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| f32::from(c as i8) * scale[i.checked_div(per).unwrap_or(0)])
                    .collect())
            }
            QuantLayout::Int4Grouped { group_size, .. } => {
                let scale = scales(0)?;
                let g = *group_size;
                let mut out = Vec::with_capacity(n);
                for (i, &b) in codes.iter().enumerate() {
                    for (k, nib) in [b & 0x0f, b >> 4].into_iter().enumerate() {
                        let code = ((nib << 4) as i8) >> 4; // sign-extend the 4-bit value
                        out.push(f32::from(code) * scale[(2 * i + k) / g]);
                    }
                }
                Ok(out)
            }
            QuantLayout::Bnb4 {
                kind,
                shape,
                block_size,
                double_quant,
            } => bnb_dequantize(*kind, *block_size, *double_quant, shape, codes, companions),
            QuantLayout::Codebook {
                shape,
                bits,
                block_size,
            } => codebook_dequantize(*bits, *block_size, shape, codes, companions),
        }
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
