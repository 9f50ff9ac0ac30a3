//! A small reader for NumPy `.npy` files (format versions 1-3), enough for stored teacher logits and
//! labels from any framework: little-endian `f4`/`f8` floats and `i1..i8`/`u1..u8` integers, C order.

use std::path::Path;

use modelopt_tensor_core::Float;
use ndarray::{Array2, ArrayD, IxDyn};

use crate::{DistillError, Result};

/// The element types the reader understands, from the header's `descr`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Dtype {
    F32,
    F64,
    Int { bytes: usize, signed: bool },
}

struct Npy {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn bad(path: &Path, reason: impl Into<String>) -> DistillError {
    DistillError::File {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn parse(path: &Path) -> Result<Npy> {
    let bytes = std::fs::read(path).map_err(|e| bad(path, e.to_string()))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(path, "not a .npy file (missing \\x93NUMPY magic)"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(path, format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or_else(|| bad(path, "truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad(path, "header is not text"))?;
    let field = |key: &str| -> Result<&str> {
        let at = header
            .find(&format!("'{key}'"))
            .ok_or_else(|| bad(path, format!("header has no '{key}'")))?;
        let rest = &header[at + key.len() + 2..];
        let colon = rest
            .find(':')
            .ok_or_else(|| bad(path, format!("malformed '{key}'")))?;
        Ok(rest[colon + 1..].trim_start())
    };
    if field("fortran_order")?.starts_with("True") {
        return Err(bad(
            path,
            "Fortran-order arrays are not supported (save with C order)",
        ));
    }
    let descr = field("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or_else(|| bad(path, "malformed 'descr'"))?;
    let dtype = match descr {
        "<f4" => Dtype::F32,
        "<f8" => Dtype::F64,
        "|i1" | "<i2" | "<i4" | "<i8" | "|u1" | "<u2" | "<u4" | "<u8" => Dtype::Int {
            bytes: descr[2..]
                .parse()
                .map_err(|_| bad(path, "bad integer width"))?,
            signed: descr.as_bytes()[1] == b'i',
        },
        other => {
            return Err(bad(
                path,
                format!("unsupported dtype '{other}' (need little-endian f4/f8/int)"),
            ));
        }
    };
    let shape_text = field("shape")?;
    let shape_text = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad(path, "malformed 'shape'"))?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad(path, format!("bad dimension '{s}'")))
        })
        .collect::<Result<Vec<_>>>()?;
    let width = match dtype {
        Dtype::F32 => 4,
        Dtype::F64 => 8,
        Dtype::Int { bytes, .. } => bytes,
    };
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let needed = count
        .and_then(|c| c.checked_mul(width))
        .ok_or_else(|| bad(path, "shape overflows"))?;
    let data = &bytes[start + header_len..];
    if data.len() != needed {
        return Err(bad(
            path,
            format!(
                "expected {needed} data bytes for shape {shape:?}, found {}",
                data.len()
            ),
        ));
    }
    Ok(Npy {
        dtype,
        shape,
        data: data.to_vec(),
    })
}

/// Read a `.npy` float array (`<f4` or `<f8`, any rank), converted to `A`.
///
/// ```
/// # let dir = std::env::temp_dir().join("modelopt_npy_doc"); std::fs::create_dir_all(&dir).unwrap();
/// # let path = dir.join("t.npy");
/// # let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }";
/// # let mut b = b"\x93NUMPY\x01\x00".to_vec(); b.extend((header.len() as u16).to_le_bytes());
/// # b.extend(header.as_bytes()); b.extend(1.5f32.to_le_bytes()); b.extend((-2.0f32).to_le_bytes());
/// # std::fs::write(&path, b).unwrap();
/// let a = modelopt_distill::read_npy::<f64>(&path)?;
/// assert_eq!(a.shape(), [1, 2]);
/// assert_eq!(a[[0, 1]], -2.0);
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
pub fn read_npy<A: Float>(path: impl AsRef<Path>) -> Result<ArrayD<A>> {
    let path = path.as_ref();
    let npy = parse(path)?;
    let values: Vec<A> = match npy.dtype {
        Dtype::F32 => npy
            .data
            .chunks_exact(4)
            .map(|c| A::from_f32_lossless(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        Dtype::F64 => npy
            .data
            .chunks_exact(8)
            .map(|c| {
                let v = f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                A::from_f64(v).unwrap_or_else(A::nan)
            })
            .collect(),
        Dtype::Int { .. } => return Err(bad(path, "expected a float array, found integers")),
    };
    ArrayD::from_shape_vec(IxDyn(&npy.shape), values).map_err(|e| bad(path, e.to_string()))
}

/// Read a 2-D `.npy` float array, e.g. stored teacher logits `[samples, classes]`.
///
/// ```
/// # let path = std::env::temp_dir().join("modelopt_npy_doc2.npy");
/// # let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }";
/// # let mut b = b"\x93NUMPY\x01\x00".to_vec(); b.extend((header.len() as u16).to_le_bytes());
/// # b.extend(header.as_bytes()); b.extend(1.0f64.to_le_bytes()); b.extend(2.0f64.to_le_bytes());
/// # std::fs::write(&path, b).unwrap();
/// assert!(modelopt_distill::read_npy_2d::<f32>(&path).is_err()); // 1-D
/// ```
pub fn read_npy_2d<A: Float>(path: impl AsRef<Path>) -> Result<Array2<A>> {
    let path = path.as_ref();
    read_npy(path)?
        .into_dimensionality()
        .map_err(|e| bad(path, format!("expected a 2-D array: {e}")))
}

/// Read a 1-D `.npy` integer array of class labels (any little-endian integer width); negative
/// labels are an error.
///
/// ```
/// # let path = std::env::temp_dir().join("modelopt_npy_doc3.npy");
/// # let header = "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }";
/// # let mut b = b"\x93NUMPY\x01\x00".to_vec(); b.extend((header.len() as u16).to_le_bytes());
/// # b.extend(header.as_bytes()); b.extend(3i64.to_le_bytes()); b.extend(0i64.to_le_bytes());
/// # std::fs::write(&path, b).unwrap();
/// assert_eq!(modelopt_distill::read_npy_labels(&path)?, [3, 0]);
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
pub fn read_npy_labels(path: impl AsRef<Path>) -> Result<Vec<usize>> {
    let path = path.as_ref();
    let npy = parse(path)?;
    let Dtype::Int { bytes, signed } = npy.dtype else {
        return Err(bad(path, "expected an integer array of labels"));
    };
    if npy.shape.len() != 1 {
        return Err(bad(
            path,
            format!(
                "expected a 1-D array of labels, found shape {:?}",
                npy.shape
            ),
        ));
    }
    npy.data
        .chunks_exact(bytes)
        .enumerate()
        .map(|(i, c)| {
            let mut buf = [0u8; 8];
            buf[..bytes].copy_from_slice(c);
            let negative = signed && c[bytes - 1] & 0x80 != 0;
            if negative {
                return Err(bad(path, format!("negative label at index {i}")));
            }
            usize::try_from(u64::from_le_bytes(buf))
                .map_err(|_| bad(path, format!("label too large at index {i}")))
        })
        .collect()
}
