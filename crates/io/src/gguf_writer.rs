use std::collections::HashSet;
use std::path::Path;

use crate::gguf_reader::{GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, gguf_type_id};
use crate::gguf_value::write_string;
use crate::tensor_out::Slots;
use crate::{AtomicFile, GgufValue, IoError, Result, TensorInfo, TensorOut};

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
    slots: Slots,
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
            let start = offset;
            offset = offset
                .checked_add(n)
                .map(|e| e.next_multiple_of(alignment))
                .ok_or_else(|| at("total size overflows".into()))?;
            sized.push((t.name, start, n));
        }
        header.resize(header.len().next_multiple_of(alignment), 0);
        let data = header.len() as u64;
        let file = AtomicFile::create(&path)?;
        file.write_at(0, &header)?;
        Ok(GgufWriter {
            slots: Slots::new(file, data, sized, alignment),
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
        self.slots.write_tensor(name, bytes)
    }

    /// Starts the next declared tensor (`name`, `len` bytes) to be written in parts, from
    /// several threads if wanted; see [`TensorOut`].
    ///
    /// ```
    /// use modelopt_io::{DType, GgufFile, GgufWriter, TensorInfo};
    /// let path = std::env::temp_dir().join(format!("modelopt-ggufw4-doc-{}.gguf", std::process::id()));
    /// let mut w = GgufWriter::create(&path, vec![], vec![TensorInfo::new("a", DType::F32, vec![2])])?;
    /// let t = w.begin_tensor("a", 8)?;
    /// t.write_at(4, &2f32.to_le_bytes())?;
    /// t.write_at(0, &1f32.to_le_bytes())?;
    /// t.finish()?;
    /// w.finish()?;
    /// assert_eq!(GgufFile::open(&path)?.tensor_f32("a")?, vec![1.0, 2.0]);
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn begin_tensor(&mut self, name: &str, len: usize) -> Result<TensorOut<'_>> {
        self.slots.begin(name, len)
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
        self.slots.finish()
    }
}
