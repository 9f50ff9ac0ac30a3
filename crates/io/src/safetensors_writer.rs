use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::tensor_out::Slots;
use crate::{AtomicFile, IoError, Result, TensorInfo, TensorOut};

/// Writes a safetensors file one tensor at a time: the header (with every offset) is written first
/// from the declared tensors, then each tensor's bytes in declaration order, so memory stays at one
/// tensor whatever the file size. The file appears at its path only after [`SafetensorsWriter::finish`]
/// (see [`AtomicFile`]).
///
/// ```
/// use modelopt_io::{DType, SafetensorsFile, SafetensorsWriter, TensorInfo};
/// let path = std::env::temp_dir().join(format!("modelopt-stw-doc-{}.safetensors", std::process::id()));
/// let tensors = vec![TensorInfo::new("ids", DType::I64, vec![2])];
/// let meta = [("format".to_string(), "pt".to_string())].into_iter().collect();
/// let mut w = SafetensorsWriter::create(&path, tensors, meta)?;
/// let bytes: Vec<u8> = [7i64, -1].iter().flat_map(|x| x.to_le_bytes()).collect();
/// w.write_tensor("ids", &bytes)?;
/// w.finish()?;
/// let f = SafetensorsFile::open(&path)?;
/// assert_eq!(f.tensor_bytes("ids")?, &bytes[..]);
/// assert_eq!(f.metadata()["format"], "pt");
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), modelopt_io::IoError>(())
/// ```
#[derive(Debug)]
pub struct SafetensorsWriter {
    slots: Slots,
}

impl SafetensorsWriter {
    /// Writes a whole small file in one call: `tensors` with their bytes `payloads` (same order)
    /// and `metadata`, atomically as [`SafetensorsWriter::create`] and
    /// [`finish`](SafetensorsWriter::finish) do; returns the file's size in bytes. Errors as
    /// `create` and `write_tensor` do, and on a payload count other than the tensors'.
    ///
    /// ```
    /// use modelopt_io::{DType, SafetensorsFile, SafetensorsWriter, TensorInfo};
    /// let path = std::env::temp_dir().join(format!("modelopt-stw-all-{}.safetensors", std::process::id()));
    /// let tensors = vec![TensorInfo::new("b", DType::U8, vec![3])];
    /// let size = SafetensorsWriter::write_all(&path, tensors, &[vec![1u8, 2, 3]], Default::default())?;
    /// assert_eq!(size, std::fs::metadata(&path)?.len());
    /// assert_eq!(SafetensorsFile::open(&path)?.tensor_bytes("b")?, &[1, 2, 3]);
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_all<B: AsRef<[u8]>>(
        path: impl AsRef<Path>,
        tensors: Vec<TensorInfo>,
        payloads: &[B],
        metadata: BTreeMap<String, String>,
    ) -> Result<u64> {
        let path = path.as_ref();
        if payloads.len() != tensors.len() {
            return Err(IoError::Usage(format!(
                "{}: {} payloads for {} tensors",
                path.display(),
                payloads.len(),
                tensors.len()
            )));
        }
        let names: Vec<String> = tensors.iter().map(|t| t.name.clone()).collect();
        let mut writer = SafetensorsWriter::create(path, tensors, metadata)?;
        for (name, bytes) in names.iter().zip(payloads) {
            writer.write_tensor(name, bytes.as_ref())?;
        }
        writer.finish()?;
        Ok(std::fs::metadata(path)
            .map_err(|source| IoError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .len())
    }

    /// Declares the tensors (written later in this order) and the `__metadata__` map, and writes
    /// the header to a temporary file beside `path`.
    ///
    /// ```
    /// use modelopt_io::{DType, SafetensorsWriter, TensorInfo};
    /// let dup = vec![TensorInfo::new("a", DType::U8, vec![1]), TensorInfo::new("a", DType::U8, vec![1])];
    /// assert!(SafetensorsWriter::create(std::env::temp_dir().join("x.safetensors"), dup, Default::default()).is_err());
    /// ```
    pub fn create(
        path: impl AsRef<Path>,
        tensors: Vec<TensorInfo>,
        metadata: BTreeMap<String, String>,
    ) -> Result<Self> {
        let path = path.as_ref();
        let mut header = Map::new();
        if !metadata.is_empty() {
            let m: Map<String, Value> = metadata
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            header.insert("__metadata__".into(), Value::Object(m));
        }
        let mut seen = HashSet::new();
        let mut offset = 0usize;
        let mut sized = Vec::with_capacity(tensors.len());
        for t in tensors {
            if t.name == "__metadata__" || !seen.insert(t.name.clone()) {
                return Err(IoError::format(
                    path,
                    format!("tensor name `{}` is reserved or repeated", t.name),
                ));
            }
            if t.dtype.element_bytes().is_none() {
                return Err(IoError::format(
                    path,
                    format!(
                        "tensor `{}`: safetensors cannot store {} (store its blocks as U8)",
                        t.name, t.dtype
                    ),
                ));
            }
            let n = t.bytes()?;
            let end = offset
                .checked_add(n)
                .ok_or_else(|| IoError::format(path, "total size overflows"))?;
            header.insert(
                t.name.clone(),
                json!({"dtype": t.dtype.name(), "shape": t.shape, "data_offsets": [offset, end]}),
            );
            sized.push((t.name, offset, n));
            offset = end;
        }
        let mut text = serde_json::to_string(&Value::Object(header))
            .map_err(|e| IoError::format(path, format!("cannot encode header: {e}")))?
            .into_bytes();
        // Pad with spaces so that the data starts 8-byte aligned, as the reference writer does.
        text.resize(text.len().next_multiple_of(8), b' ');
        if text.len() > 100_000_000 {
            return Err(IoError::format(
                path,
                format!(
                    "header of {} bytes exceeds the 100 MB safetensors limit",
                    text.len()
                ),
            ));
        }
        let file = AtomicFile::create(path)?;
        file.write_at(0, &(text.len() as u64).to_le_bytes())?;
        file.write_at(8, &text)?;
        let data = 8 + text.len() as u64;
        Ok(SafetensorsWriter {
            slots: Slots::new(file, data, sized, 1),
        })
    }

    /// Writes the bytes of the next declared tensor; `name` and the byte count must match it.
    ///
    /// ```
    /// use modelopt_io::{DType, SafetensorsWriter, TensorInfo};
    /// let path = std::env::temp_dir().join(format!("modelopt-stw2-doc-{}.safetensors", std::process::id()));
    /// let mut w = SafetensorsWriter::create(&path, vec![TensorInfo::new("a", DType::U8, vec![2])], Default::default())?;
    /// assert!(w.write_tensor("a", &[1]).is_err()); // 1 byte for 2 declared
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn write_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.slots.write_tensor(name, bytes)
    }

    /// Starts the next declared tensor (`name`, `len` bytes) to be written in parts, from
    /// several threads if wanted; see [`TensorOut`].
    ///
    /// ```
    /// use modelopt_io::{DType, SafetensorsWriter, TensorInfo};
    /// let path = std::env::temp_dir().join(format!("modelopt-stbt-doc-{}.safetensors", std::process::id()));
    /// let mut w = SafetensorsWriter::create(&path, vec![TensorInfo::new("a", DType::U8, vec![2])], Default::default())?;
    /// assert!(w.begin_tensor("a", 3).is_err()); // declared with 2 bytes
    /// let t = w.begin_tensor("a", 2)?;
    /// t.write_at(0, &[7, 8])?;
    /// t.finish()?;
    /// w.finish()?;
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn begin_tensor(&mut self, name: &str, len: usize) -> Result<TensorOut<'_>> {
        self.slots.begin(name, len)
    }

    /// Checks that every declared tensor was written and moves the file into place.
    ///
    /// ```
    /// use modelopt_io::{DType, SafetensorsWriter, TensorInfo};
    /// let path = std::env::temp_dir().join(format!("modelopt-stw3-doc-{}.safetensors", std::process::id()));
    /// let w = SafetensorsWriter::create(&path, vec![TensorInfo::new("a", DType::U8, vec![2])], Default::default())?;
    /// assert!(w.finish().is_err()); // `a` never written
    /// assert!(!path.exists());
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn finish(self) -> Result<()> {
        self.slots.finish()
    }
}
