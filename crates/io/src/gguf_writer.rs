use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::gguf_reader::{GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, gguf_type_id};
use crate::gguf_value::write_string;
use crate::{AtomicFile, GgufValue, IoError, Result, TensorInfo};

/// The GGUF version written.
pub const GGUF_VERSION: u32 = 3;
/// Value of `general.quantization_version` written (the current GGML block layout).
pub const GGML_QUANTIZATION_VERSION: u32 = 2;

/// Writes a GGUF v3 file one tensor at a time: the header (metadata and every tensor info with
/// its offset, computed from dtype and shape) goes first, then each tensor's bytes in declaration
/// order, padded to `general.alignment` (32 unless the metadata says otherwise). Peak memory is the
/// caller's one tensor. `general.quantization_version = 2` is added when absent. The file appears
/// at its path only after [`GgufWriter::finish`] (see [`AtomicFile`]).
///
/// ```
/// use modelopt_io::{DType, GgufFile, GgufValue, GgufWriter, TensorInfo};
/// let path = std::env::temp_dir().join(format!("modelopt-ggufw-doc-{}.gguf", std::process::id()));
/// let meta = vec![("general.architecture".to_string(), GgufValue::from("none"))];
/// let mut w = GgufWriter::create(&path, meta, vec![TensorInfo::new("ids", DType::I32, vec![3])])?;
/// let ids: Vec<u8> = [1i32, 2, 3].iter().flat_map(|x| x.to_le_bytes()).collect();
/// w.write_tensor("ids", &ids)?;
/// w.finish()?;
/// let f = GgufFile::open(&path)?;
/// assert_eq!(f.get("general.quantization_version"), Some(&GgufValue::U32(2)));
/// assert_eq!(f.tensor_bytes("ids")?, &ids[..]);
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), modelopt_io::IoError>(())
/// ```
#[derive(Debug)]
pub struct GgufWriter {
    file: AtomicFile,
    path: PathBuf,
    alignment: usize,
    tensors: Vec<(TensorInfo, usize)>,
    next: usize,
}

impl GgufWriter {
    /// Declares the metadata and the tensors (written later in this order) and writes the header
    /// to a temporary file beside `path`.
    ///
    /// ```
    /// use modelopt_io::{DType, GgufWriter, TensorInfo};
    /// use modelopt_quantize::ggml::GgmlType;
    /// // a Q4_0 row must be a whole number of 32-element blocks
    /// let t = TensorInfo::new("w", DType::Ggml(GgmlType::Q4_0), vec![2, 33]);
    /// assert!(GgufWriter::create(std::env::temp_dir().join("bad.gguf"), vec![], vec![t]).is_err());
    /// ```
    pub fn create(
        path: impl AsRef<Path>,
        mut metadata: Vec<(String, GgufValue)>,
        tensors: Vec<TensorInfo>,
    ) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bad = |p: String| IoError::format(&path, p);
        let mut keys = HashSet::new();
        for (k, _) in &metadata {
            if !keys.insert(k.as_str()) {
                return Err(bad(format!("metadata key `{k}` repeated")));
            }
        }
        let mut alignment = GGUF_DEFAULT_ALIGNMENT;
        if let Some((_, v)) = metadata.iter().find(|(k, _)| k == "general.alignment") {
            alignment = match v {
                GgufValue::U32(a) if a.is_power_of_two() => *a as usize,
                v => {
                    return Err(bad(format!(
                        "general.alignment {v:?} is not a power-of-two u32"
                    )));
                }
            };
        }
        if !keys.contains("general.quantization_version") {
            metadata.push((
                "general.quantization_version".into(),
                GgufValue::U32(GGML_QUANTIZATION_VERSION),
            ));
        }
        for (k, v) in &metadata {
            if let GgufValue::Array { item_type, items } = v
                && items.iter().any(|x| x.value_type() != *item_type)
            {
                return Err(bad(format!(
                    "metadata `{k}`: array items differ from its item type"
                )));
            }
        }

        let mut names = HashSet::new();
        let mut header: Vec<u8> = Vec::new();
        let io = |e: std::io::Error| IoError::io(&path, e);
        header.extend_from_slice(GGUF_MAGIC);
        header.extend_from_slice(&GGUF_VERSION.to_le_bytes());
        header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (k, v) in &metadata {
            write_string(&mut header, k).map_err(io)?;
            header.extend_from_slice(&v.value_type().id().to_le_bytes());
            v.write_payload(&mut header).map_err(io)?;
        }
        let mut offset = 0usize;
        let mut sized = Vec::with_capacity(tensors.len());
        for t in tensors {
            let at = |p: String| bad(format!("tensor `{}`: {p}", t.name));
            if !names.insert(t.name.clone()) {
                return Err(at("name repeated".into()));
            }
            if t.shape.len() > 4 {
                return Err(at(format!(
                    "{} dimensions (GGUF allows at most 4)",
                    t.shape.len()
                )));
            }
            let id = gguf_type_id(t.dtype)
                .ok_or_else(|| at(format!("GGUF cannot store {}", t.dtype)))?;
            let n = t.bytes().map_err(|e| at(e.to_string()))?;
            write_string(&mut header, &t.name).map_err(io)?;
            header.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for d in t.shape.iter().rev() {
                header.extend_from_slice(&(*d as u64).to_le_bytes());
            }
            header.extend_from_slice(&id.to_le_bytes());
            header.extend_from_slice(&(offset as u64).to_le_bytes());
            offset = offset
                .checked_add(n)
                .map(|e| e.next_multiple_of(alignment))
                .ok_or_else(|| at("total size overflows".into()))?;
            sized.push((t, n));
        }
        header.resize(header.len().next_multiple_of(alignment), 0);
        let mut file = AtomicFile::create(&path)?;
        file.write_all(&header).map_err(io)?;
        Ok(GgufWriter {
            file,
            path,
            alignment,
            tensors: sized,
            next: 0,
        })
    }

    /// Writes the bytes of the next declared tensor (GGML blocks for block types, little-endian
    /// values otherwise); `name` and the byte count must match the declaration.
    ///
    /// ```
    /// use modelopt_io::{DType, GgufWriter, TensorInfo};
    /// let path = std::env::temp_dir().join(format!("modelopt-ggufw2-doc-{}.gguf", std::process::id()));
    /// let mut w = GgufWriter::create(&path, vec![], vec![TensorInfo::new("a", DType::F32, vec![1])])?;
    /// assert!(w.write_tensor("b", &[0; 4]).is_err());
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn write_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let (t, n) = self.tensors.get(self.next).ok_or_else(|| {
            IoError::format(
                &self.path,
                format!("tensor `{name}` was not declared (all tensors written)"),
            )
        })?;
        if t.name != name || *n != bytes.len() {
            return Err(IoError::format(
                &self.path,
                format!(
                    "expected tensor `{}` ({n} bytes) next, got `{name}` ({} bytes)",
                    t.name,
                    bytes.len()
                ),
            ));
        }
        let pad = n.next_multiple_of(self.alignment) - n;
        let io = |e| IoError::io(&self.path, e);
        self.file.write_all(bytes).map_err(io)?;
        self.file.write_all(&vec![0u8; pad]).map_err(io)?;
        self.next += 1;
        Ok(())
    }

    /// Checks that every declared tensor was written and moves the file into place.
    ///
    /// ```
    /// use modelopt_io::{DType, GgufWriter, TensorInfo};
    /// let path = std::env::temp_dir().join(format!("modelopt-ggufw3-doc-{}.gguf", std::process::id()));
    /// let w = GgufWriter::create(&path, vec![], vec![TensorInfo::new("a", DType::F32, vec![1])])?;
    /// assert!(w.finish().is_err());
    /// assert!(!path.exists());
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn finish(self) -> Result<()> {
        if let Some((t, _)) = self.tensors.get(self.next) {
            return Err(IoError::format(
                &self.path,
                format!("tensor `{}` was declared but not written", t.name),
            ));
        }
        self.file.commit()
    }
}
