use half::{bf16, f16};
use modelopt_quantize::ggml::GgmlType;

use crate::{IoError, Result};

/// The element type of a stored tensor: a plain number type, or a GGML block type.
///
/// ```
/// use modelopt_io::DType;
/// use modelopt_quantize::ggml::GgmlType;
/// assert_eq!(DType::F16.name(), "F16");
/// assert_eq!(DType::Ggml(GgmlType::Q4_0).name(), "q4_0");
/// assert_eq!(DType::from_name("BF16"), Some(DType::BF16));
/// assert_eq!(DType::F32.storage_bytes(&[2, 3])?, 24);
/// assert_eq!(DType::Ggml(GgmlType::Q8_0).storage_bytes(&[2, 64])?, 2 * 2 * 34);
/// # Ok::<(), modelopt_io::IoError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// Boolean, one byte.
    Bool,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 16-bit integer.
    U16,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 32-bit integer.
    U32,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 64-bit integer.
    U64,
    /// Signed 64-bit integer.
    I64,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE single precision.
    F32,
    /// IEEE double precision.
    F64,
    /// A GGML block type (Q8_0, Q4_K, ...); never F32/F16/BF16, which are the plain variants.
    Ggml(GgmlType),
}

impl DType {
    /// The name used in files: safetensors spelling (`"F32"`, `"I8"`) for plain types, llama.cpp's
    /// (`"q4_0"`, `"q6_K"`) for block types.
    ///
    /// ```
    /// assert_eq!(modelopt_io::DType::I64.name(), "I64");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "BOOL",
            DType::U8 => "U8",
            DType::I8 => "I8",
            DType::U16 => "U16",
            DType::I16 => "I16",
            DType::U32 => "U32",
            DType::I32 => "I32",
            DType::U64 => "U64",
            DType::I64 => "I64",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F32 => "F32",
            DType::F64 => "F64",
            DType::Ggml(t) => t.name(),
        }
    }

    /// The type named `name` ([`DType::name`] spelling; GGML names are case-insensitive).
    ///
    /// ```
    /// use modelopt_io::DType;
    /// use modelopt_quantize::ggml::GgmlType;
    /// assert_eq!(DType::from_name("Q4_K"), Some(DType::Ggml(GgmlType::Q4_K)));
    /// assert_eq!(DType::from_name("F8_E4M3"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Self> {
        let plain = [
            DType::Bool,
            DType::U8,
            DType::I8,
            DType::U16,
            DType::I16,
            DType::U32,
            DType::I32,
            DType::U64,
            DType::I64,
            DType::F16,
            DType::BF16,
            DType::F32,
            DType::F64,
        ];
        if let Some(d) = plain.into_iter().find(|d| d.name() == name) {
            return Some(d);
        }
        GgmlType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
            .map(DType::from_ggml)
    }

    /// The plain type for GGML's F32/F16/BF16, else [`DType::Ggml`].
    ///
    /// ```
    /// use modelopt_io::DType;
    /// use modelopt_quantize::ggml::GgmlType;
    /// assert_eq!(DType::from_ggml(GgmlType::F16), DType::F16);
    /// ```
    pub fn from_ggml(t: GgmlType) -> Self {
        match t {
            GgmlType::F32 => DType::F32,
            GgmlType::F16 => DType::F16,
            GgmlType::BF16 => DType::BF16,
            other => DType::Ggml(other),
        }
    }

    /// The GGML type of this dtype, when GGML has one.
    ///
    /// ```
    /// use modelopt_io::DType;
    /// use modelopt_quantize::ggml::GgmlType;
    /// assert_eq!(DType::BF16.to_ggml(), Some(GgmlType::BF16));
    /// assert_eq!(DType::U8.to_ggml(), None);
    /// ```
    pub fn to_ggml(self) -> Option<GgmlType> {
        match self {
            DType::F32 => Some(GgmlType::F32),
            DType::F16 => Some(GgmlType::F16),
            DType::BF16 => Some(GgmlType::BF16),
            DType::Ggml(t) => Some(t),
            _ => None,
        }
    }

    /// Bytes of one element of a plain type; `None` for block types.
    ///
    /// ```
    /// assert_eq!(modelopt_io::DType::BF16.element_bytes(), Some(2));
    /// ```
    pub fn element_bytes(self) -> Option<usize> {
        Some(match self {
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::U16 | DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::U32 | DType::I32 | DType::F32 => 4,
            DType::U64 | DType::I64 | DType::F64 => 8,
            DType::Ggml(_) => return None,
        })
    }

    /// True for F16, BF16, F32, F64 and the block types: what can be read as f32 and quantized.
    ///
    /// ```
    /// assert!(modelopt_io::DType::BF16.is_float());
    /// assert!(!modelopt_io::DType::I8.is_float());
    /// ```
    pub fn is_float(self) -> bool {
        matches!(
            self,
            DType::F16 | DType::BF16 | DType::F32 | DType::F64 | DType::Ggml(_)
        )
    }

    /// Bytes a tensor of `shape` (row-major) takes, with overflow checked. Block types need the last
    /// dimension (the row) to be a multiple of the block size.
    ///
    /// ```
    /// use modelopt_io::DType;
    /// use modelopt_quantize::ggml::GgmlType;
    /// assert!(DType::Ggml(GgmlType::Q4_K).storage_bytes(&[3, 100]).is_err());
    /// assert!(DType::F64.storage_bytes(&[usize::MAX, 2]).is_err());
    /// ```
    pub fn storage_bytes(self, shape: &[usize]) -> Result<usize> {
        let n = element_count(shape)?;
        let overflow = || {
            IoError::Usage(format!(
                "{} tensor of shape {shape:?}: byte size overflows",
                self.name()
            ))
        };
        match self.element_bytes() {
            Some(b) => n.checked_mul(b).ok_or_else(overflow),
            None => {
                let row = shape.last().copied().unwrap_or(1);
                let t = self.to_ggml().ok_or_else(overflow)?;
                let row_bytes = t.row_bytes(row)?;
                let rows = n.checked_div(row).unwrap_or(0);
                rows.checked_mul(row_bytes).ok_or_else(overflow)
            }
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The number of elements of `shape` (1 for a scalar), with overflow checked.
///
/// ```
/// assert_eq!(modelopt_io::element_count(&[2, 3, 4])?, 24);
/// assert_eq!(modelopt_io::element_count(&[])?, 1);
/// assert!(modelopt_io::element_count(&[1 << 40, 1 << 40]).is_err());
/// # Ok::<(), modelopt_io::IoError>(())
/// ```
pub fn element_count(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| IoError::Usage(format!("shape {shape:?}: element count overflows")))
}

/// Converts little-endian `bytes` of a plain float type (F32, F16, BF16, F64) into `out`.
///
/// `out.len()` elements are read; `bytes` must hold exactly that many.
///
/// ```
/// use modelopt_io::{decode_f32, DType};
/// let bytes: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
/// let mut out = [0.0f32; 2];
/// decode_f32(DType::F32, &bytes, &mut out)?;
/// assert_eq!(out, [1.5, -2.0]);
/// # Ok::<(), modelopt_io::IoError>(())
/// ```
pub fn decode_f32(dtype: DType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    let eb = dtype
        .element_bytes()
        .filter(|_| dtype.is_float())
        .ok_or_else(|| IoError::Usage(format!("decode_f32: {dtype} is not a plain float type")))?;
    if Some(bytes.len()) != out.len().checked_mul(eb) {
        return Err(IoError::Usage(format!(
            "decode_f32: {} bytes of {dtype} for {} elements",
            bytes.len(),
            out.len()
        )));
    }
    match dtype {
        DType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        DType::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        DType::BF16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        _ => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                *o = f64::from_le_bytes(a) as f32;
            }
        }
    }
    Ok(())
}

/// The little-endian bytes of `values` stored as `dtype` (F64, F32, F16 or BF16; the half types
/// round to nearest even): the inverse of [`decode_f32`] up to that rounding. Errors on another
/// dtype.
///
/// ```
/// use modelopt_io::{DType, decode_f32, encode_f32};
/// let b = encode_f32(DType::BF16, &[1.5, -2.0])?;
/// let mut back = [0.0f32; 2];
/// decode_f32(DType::BF16, &b, &mut back)?;
/// assert_eq!(back, [1.5, -2.0]);
/// # Ok::<(), modelopt_io::IoError>(())
/// ```
pub fn encode_f32(dtype: DType, values: &[f32]) -> Result<Vec<u8>> {
    Ok(match dtype {
        DType::F32 => f32_to_bytes(values),
        DType::F16 => values
            .iter()
            .flat_map(|&x| f16::from_f32(x).to_le_bytes())
            .collect(),
        DType::BF16 => values
            .iter()
            .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
            .collect(),
        DType::F64 => values
            .iter()
            .flat_map(|&x| f64::from(x).to_le_bytes())
            .collect(),
        other => {
            return Err(IoError::Usage(format!(
                "encode_f32: {other} is not a plain float type"
            )));
        }
    })
}

/// The little-endian bytes of `values` as f32.
///
/// ```
/// assert_eq!(modelopt_io::f32_to_bytes(&[1.0]), 1.0f32.to_le_bytes().to_vec());
/// ```
pub fn f32_to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}
