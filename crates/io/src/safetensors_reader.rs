use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use modelopt_tensor_core::Par;
use serde_json::Value;

use crate::mapped::Mapped;
use crate::{DType, IoError, Result, TensorInfo, decode_f32};

/// Largest header a safetensors file may declare (the `safetensors` crate's own limit).
const MAX_HEADER_BYTES: usize = 100_000_000;

/// A safetensors file, memory-mapped and validated: every tensor's dtype, shape and byte range
/// were checked against the file before any data is touched.
///
/// Plain float tensors (F16, BF16, F32, F64) read as f32 with [`SafetensorsFile::tensor_f32`];
/// every tensor's stored bytes are available untouched with [`SafetensorsFile::tensor_bytes`].
///
/// ```
/// use modelopt_io::{DType, SafetensorsFile, SafetensorsWriter, TensorInfo, f32_to_bytes};
/// let path = std::env::temp_dir().join(format!("modelopt-st-doc-{}.safetensors", std::process::id()));
/// let mut w = SafetensorsWriter::create(&path, vec![TensorInfo::new("w", DType::F32, vec![2])], Default::default())?;
/// w.write_tensor("w", &f32_to_bytes(&[1.0, 2.0]))?;
/// w.finish()?;
/// let f = SafetensorsFile::open(&path)?;
/// assert_eq!(f.tensor_f32("w")?, vec![1.0, 2.0]);
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), modelopt_io::IoError>(())
/// ```
#[derive(Debug)]
pub struct SafetensorsFile {
    path: PathBuf,
    map: Mapped,
    tensors: Vec<TensorInfo>,
    ranges: Vec<Range<usize>>,
    index: HashMap<String, usize>,
    metadata: BTreeMap<String, String>,
}

impl SafetensorsFile {
    /// Maps and validates `path`. Errors name the file and the problem (header length beyond the
    /// file, offsets out of range or overlapping, shape x dtype not matching the bytes, unknown
    /// dtype, bad JSON).
    ///
    /// ```
    /// let e = modelopt_io::SafetensorsFile::open("/nonexistent.safetensors").unwrap_err();
    /// assert!(e.to_string().starts_with("/nonexistent.safetensors: "));
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let map = Mapped::open(path)?;
        let bad = |p: String| IoError::format(path, p);
        let bytes = map.bytes();
        let head: [u8; 8] = bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                bad(format!(
                    "file of {} bytes is shorter than the 8-byte header length",
                    bytes.len()
                ))
            })?;
        let header_len = u64::from_le_bytes(head);
        let available = (bytes.len() - 8) as u64;
        if header_len > available {
            return Err(bad(format!(
                "header length {header_len} is beyond the file ({available} bytes after the length)"
            )));
        }
        let header_len = header_len as usize; // ok: <= file length, which fits usize
        if header_len > MAX_HEADER_BYTES {
            return Err(bad(format!(
                "header of {header_len} bytes is larger than the {MAX_HEADER_BYTES}-byte limit"
            )));
        }
        let header = &bytes[8..8 + header_len];
        if header.first() != Some(&b'{') {
            return Err(bad(
                "bad magic: the header does not start with `{` (not a safetensors file)".into(),
            ));
        }
        let data_start = 8 + header_len;
        let data_len = bytes.len() - data_start;
        let (tensors, offsets, metadata) = parse_header(header, data_len).map_err(bad)?;

        // Second opinion from the reference implementation (same rules; catches what we missed).
        safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("rejected by the safetensors parser: {e}")))?;

        let ranges: Vec<Range<usize>> = offsets
            .iter()
            .map(|&(s, e)| data_start + s..data_start + e)
            .collect();
        let index = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            map,
            tensors,
            ranges,
            index,
            metadata,
        })
    }

    /// The file's path.
    ///
    /// ```no_run
    /// let f = modelopt_io::SafetensorsFile::open("model.safetensors")?;
    /// println!("{}", f.path().display());
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensors, in file order.
    ///
    /// ```no_run
    /// let f = modelopt_io::SafetensorsFile::open("model.safetensors")?;
    /// for t in f.tensors() { println!("{} {} {:?}", t.name, t.dtype, t.shape); }
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name`.
    ///
    /// ```no_run
    /// let f = modelopt_io::SafetensorsFile::open("model.safetensors")?;
    /// let t = f.tensor("embeddings.weight")?;
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        Ok(&self.tensors[self.position(name)?])
    }

    /// The `__metadata__` string map (empty when absent).
    ///
    /// ```no_run
    /// let f = modelopt_io::SafetensorsFile::open("model.safetensors")?;
    /// let format = f.metadata().get("format");
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The stored bytes of tensor `name`, untouched (zero-copy from the map).
    ///
    /// ```no_run
    /// let f = modelopt_io::SafetensorsFile::open("model.safetensors")?;
    /// let raw: &[u8] = f.tensor_bytes("position_ids")?;
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let i = self.position(name)?;
        Ok(&self.map.bytes()[self.ranges[i].clone()])
    }

    /// Tensor `name` converted to f32 (F16, BF16, F32, F64 only).
    ///
    /// ```no_run
    /// let f = modelopt_io::SafetensorsFile::open("model.safetensors")?;
    /// let w: Vec<f32> = f.tensor_f32("encoder.weight")?;
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let i = self.position(name)?;
        let t = &self.tensors[i];
        if !(t.dtype.is_float() && t.dtype.element_bytes().is_some()) {
            return Err(IoError::format(
                &self.path,
                format!("tensor `{name}`: dtype {} cannot be read as f32", t.dtype),
            ));
        }
        let mut out = vec![0.0f32; t.elements()?];
        decode_f32(t.dtype, &self.map.bytes()[self.ranges[i].clone()], &mut out)?;
        Ok(out)
    }

    /// Drops the memory pages of tensor `name` (after processing it), so that the resident memory
    /// of a whole-file pass follows the largest tensor, not the file.
    ///
    /// ```no_run
    /// let f = modelopt_io::SafetensorsFile::open("model.safetensors")?;
    /// f.release("encoder.weight")?;
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn release(&self, name: &str) -> Result<()> {
        let i = self.position(name)?;
        self.map.release(self.ranges[i].clone());
        Ok(())
    }

    /// Reads bytes `offset..offset + buf.len()` of tensor `name` from the file (`pread`, not the
    /// map); see [`Checkpoint::read_f32_at`](crate::Checkpoint::read_f32_at).
    ///
    /// ```
    /// use modelopt_io::{DType, SafetensorsFile, SafetensorsWriter, TensorInfo};
    /// let path = std::env::temp_dir().join(format!("modelopt-strd-doc-{}.safetensors", std::process::id()));
    /// let mut w = SafetensorsWriter::create(&path, vec![TensorInfo::new("ids", DType::U8, vec![4])], Default::default())?;
    /// w.write_tensor("ids", &[1, 2, 3, 4])?;
    /// w.finish()?;
    /// let f = SafetensorsFile::open(&path)?;
    /// let mut buf = [0u8; 2];
    /// f.read_tensor_at("ids", 2, &mut buf)?;
    /// assert_eq!(buf, [3, 4]);
    /// assert!(f.read_tensor_at("ids", 3, &mut buf).is_err()); // past its end
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn read_tensor_at(&self, name: &str, offset: usize, buf: &mut [u8]) -> Result<()> {
        let range = self.ranges[self.position(name)?].clone();
        self.map
            .read_tensor_at(&self.path, name, range, offset, buf)
    }

    /// Reads all of tensor `name`'s stored bytes into `buf` (exactly its length) with positioned
    /// reads of a few MiB each, spread over threads as `par` allows: copies straight from the
    /// page cache into a buffer the caller reuses, without touching the file's mapping.
    ///
    /// ```
    /// use modelopt_io::{DType, SafetensorsFile, SafetensorsWriter, TensorInfo};
    /// use modelopt_tensor_core::Par;
    /// let path = std::env::temp_dir().join(format!("modelopt-rti-doc-{}.safetensors", std::process::id()));
    /// let mut w = SafetensorsWriter::create(&path, vec![TensorInfo::new("b", DType::U8, vec![3])], Default::default())?;
    /// w.write_tensor("b", &[7, 8, 9])?;
    /// w.finish()?;
    /// let f = SafetensorsFile::open(&path)?;
    /// let mut buf = [0u8; 3];
    /// f.read_tensor_into("b", &mut buf, Par::Seq)?;
    /// assert_eq!(buf, [7, 8, 9]);
    /// assert!(f.read_tensor_into("b", &mut [0u8; 2], Par::Seq).is_err()); // not its length
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn read_tensor_into(&self, name: &str, buf: &mut [u8], par: Par) -> Result<()> {
        let range = &self.ranges[self.position(name)?];
        if buf.len() != range.len() {
            return Err(IoError::format(
                &self.path,
                format!(
                    "tensor `{name}` has {} bytes, the buffer {}",
                    range.len(),
                    buf.len()
                ),
            ));
        }
        const PIECE: usize = 4 << 20;
        let first_error = std::sync::Mutex::new(None);
        par.for_each_chunk_mut(buf, PIECE, |i, piece| {
            if let Err(e) = self.read_tensor_at(name, i * PIECE, piece)
                && let Ok(mut slot) = first_error.lock()
            {
                slot.get_or_insert(e);
            }
        });
        match first_error.into_inner() {
            Ok(None) => Ok(()),
            Ok(Some(e)) => Err(e),
            Err(_) => Err(IoError::format(&self.path, "a reader thread panicked")),
        }
    }

    pub(crate) fn info(&self, name: &str) -> Result<&TensorInfo> {
        Ok(&self.tensors[self.position(name)?])
    }

    fn position(&self, name: &str) -> Result<usize> {
        self.index
            .get(name)
            .copied()
            .ok_or_else(|| IoError::format(&self.path, format!("no tensor named `{name}`")))
    }
}

type Header = (
    Vec<TensorInfo>,
    Vec<(usize, usize)>,
    BTreeMap<String, String>,
);

/// Parses and checks the JSON header against a data section of `data_len` bytes.
fn parse_header(header: &[u8], data_len: usize) -> std::result::Result<Header, String> {
    let text = std::str::from_utf8(header).map_err(|e| format!("header is not UTF-8: {e}"))?;
    let json: serde_json::Map<String, Value> =
        serde_json::from_str(text).map_err(|e| format!("header is not a JSON object: {e}"))?;
    let mut metadata = BTreeMap::new();
    let mut entries: Vec<(TensorInfo, (usize, usize))> = Vec::with_capacity(json.len());
    for (name, value) in &json {
        if name == "__metadata__" {
            let obj = value.as_object().ok_or("`__metadata__` is not an object")?;
            for (k, v) in obj {
                let s = v
                    .as_str()
                    .ok_or_else(|| format!("`__metadata__` value of `{k}` is not a string"))?;
                metadata.insert(k.clone(), s.to_owned());
            }
            continue;
        }
        entries.push(parse_entry(name, value, data_len)?);
    }
    entries.sort_by_key(|(_, o)| *o);
    let mut end = 0usize;
    let mut prev: Option<&str> = None;
    for (t, (s, e)) in &entries {
        if *s < end {
            return Err(format!(
                "tensor `{}` (bytes {s}..{e}) overlaps tensor `{}` (ending at {end})",
                t.name,
                prev.unwrap_or("?")
            ));
        }
        if *s > end {
            return Err(format!(
                "gap of {} unused bytes before tensor `{}`",
                s - end,
                t.name
            ));
        }
        end = *e;
        prev = Some(&t.name);
    }
    if end != data_len {
        return Err(format!(
            "tensors cover {end} bytes but the data section has {data_len} bytes"
        ));
    }
    let (tensors, offsets) = entries.into_iter().unzip();
    Ok((tensors, offsets, metadata))
}

fn parse_entry(
    name: &str,
    value: &Value,
    data_len: usize,
) -> std::result::Result<(TensorInfo, (usize, usize)), String> {
    let at = |p: &str| format!("tensor `{name}`: {p}");
    let dtype_name = value
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| at("missing string `dtype`"))?;
    let dtype = DType::from_name(dtype_name)
        .filter(|d| d.element_bytes().is_some())
        .ok_or_else(|| at(&format!("unknown or unsupported dtype `{dtype_name}`")))?;
    let shape_json = value
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| at("missing array `shape`"))?;
    let shape = shape_json
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| at("`shape` holds a value that is not a non-negative integer"))?;
    let offsets = value
        .get("data_offsets")
        .and_then(Value::as_array)
        .filter(|a| a.len() == 2)
        .ok_or_else(|| at("missing `data_offsets` [begin, end]"))?;
    let (s, e) = match (offsets[0].as_u64(), offsets[1].as_u64()) {
        (Some(s), Some(e)) => (s, e),
        _ => return Err(at("`data_offsets` are not non-negative integers")),
    };
    if s > e || e > data_len as u64 {
        return Err(at(&format!(
            "data_offsets [{s}, {e}] out of range of the {data_len}-byte data section"
        )));
    }
    let (s, e) = (s as usize, e as usize); // ok: both <= data_len
    let info = TensorInfo::new(name, dtype, shape);
    let want = info
        .bytes()
        .map_err(|_| at(&format!("shape {:?} overflows", info.shape)))?;
    if want != e - s {
        return Err(at(&format!(
            "shape {:?} x {} needs {want} bytes but data_offsets give {}",
            info.shape,
            dtype,
            e - s
        )));
    }
    Ok((info, (s, e)))
}
