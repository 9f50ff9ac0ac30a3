use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use modelopt_quantize::ggml::GgmlType;

use crate::mapped::Mapped;
use crate::{DType, GgufType, GgufValue, IoError, Result, TensorInfo};

/// GGUF's magic bytes.
pub(crate) const GGUF_MAGIC: &[u8; 4] = b"GGUF";
/// Alignment of tensor data when `general.alignment` is absent.
pub const GGUF_DEFAULT_ALIGNMENT: usize = 32;
/// Most dimensions a GGML tensor has (`GGML_MAX_DIMS`).
const MAX_DIMS: usize = 4;
/// Deepest nesting of arrays accepted (a hostile file could otherwise exhaust the stack).
const MAX_ARRAY_DEPTH: usize = 8;
/// Most items of one metadata array (real vocabularies hold a few hundred thousand); bounds the
/// memory a small hostile file can make the reader allocate (each item is a `GgufValue`).
const MAX_ARRAY_ITEMS: usize = 1 << 22;

/// The GGUF type id of `dtype`, if GGUF can store it.
pub(crate) fn gguf_type_id(dtype: DType) -> Option<u32> {
    Some(match dtype {
        DType::I8 => 24,
        DType::I16 => 25,
        DType::I32 => 26,
        DType::I64 => 27,
        DType::F64 => 28,
        d => d.to_ggml()?.id(),
    })
}

fn dtype_from_gguf(id: u32) -> Option<DType> {
    Some(match id {
        24 => DType::I8,
        25 => DType::I16,
        26 => DType::I32,
        27 => DType::I64,
        28 => DType::F64,
        id => DType::from_ggml(GgmlType::from_id(id)?),
    })
}

/// A GGUF file (version 2 or 3), memory-mapped and validated: header, metadata, tensor infos and
/// every tensor's byte range were checked against the file before any data is touched.
///
/// Shapes are row-major (GGUF stores the dimensions reversed; this type turns them back).
///
/// ```
/// use modelopt_io::{DType, GgufFile, GgufWriter, TensorInfo, f32_to_bytes};
/// let path = std::env::temp_dir().join(format!("modelopt-gguf-doc-{}.gguf", std::process::id()));
/// let t = TensorInfo::new("w", DType::F32, vec![2, 3]);
/// let mut w = GgufWriter::create(&path, vec![("general.name".into(), "demo".into())], vec![t])?;
/// w.write_tensor("w", &f32_to_bytes(&[1., 2., 3., 4., 5., 6.]))?;
/// w.finish()?;
/// let f = GgufFile::open(&path)?;
/// assert_eq!(f.tensors()[0].shape, vec![2, 3]);
/// assert_eq!(f.get("general.name").and_then(|v| v.as_str()), Some("demo"));
/// assert_eq!(f.tensor_f32("w")?, vec![1., 2., 3., 4., 5., 6.]);
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), modelopt_io::IoError>(())
/// ```
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    map: Mapped,
    version: u32,
    alignment: usize,
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<TensorInfo>,
    ranges: Vec<Range<usize>>,
    index: HashMap<String, usize>,
}

impl GgufFile {
    /// Maps and validates `path`. Errors name the file and the problem (bad magic, unsupported
    /// version, truncation, absurd counts, unknown value or tensor types, misaligned, out of range
    /// or overlapping tensor data).
    ///
    /// ```
    /// let e = modelopt_io::GgufFile::open("/nonexistent.gguf").unwrap_err();
    /// assert!(e.to_string().starts_with("/nonexistent.gguf: "));
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let map = Mapped::open(path)?;
        let parsed = parse(map.bytes()).map_err(|p| IoError::format(path, p))?;
        let index = parsed
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(GgufFile {
            path: path.to_path_buf(),
            map,
            version: parsed.version,
            alignment: parsed.alignment,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
            ranges: parsed.ranges,
            index,
        })
    }

    /// The file's path.
    ///
    /// ```no_run
    /// let f = modelopt_io::GgufFile::open("model.gguf")?;
    /// println!("{}", f.path().display());
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format version (2 or 3).
    ///
    /// ```no_run
    /// assert_eq!(modelopt_io::GgufFile::open("model.gguf")?.version(), 3);
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The tensor data alignment (`general.alignment`, default 32).
    ///
    /// ```no_run
    /// assert_eq!(modelopt_io::GgufFile::open("model.gguf")?.alignment(), 32);
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// Every metadata key/value, in file order.
    ///
    /// ```no_run
    /// for (k, v) in modelopt_io::GgufFile::open("model.gguf")?.metadata() { println!("{k} = {v:?}"); }
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn metadata(&self) -> &[(String, GgufValue)] {
        &self.metadata
    }

    /// The value of metadata key `key`.
    ///
    /// ```no_run
    /// let f = modelopt_io::GgufFile::open("model.gguf")?;
    /// let arch = f.get("general.architecture").and_then(|v| v.as_str());
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The tensors, in tensor-info order, with row-major shapes.
    ///
    /// ```no_run
    /// for t in modelopt_io::GgufFile::open("model.gguf")?.tensors() { println!("{} {}", t.name, t.dtype); }
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name`.
    ///
    /// ```no_run
    /// let t = modelopt_io::GgufFile::open("model.gguf")?.tensor("token_embd.weight")?.clone();
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        Ok(&self.tensors[self.position(name)?])
    }

    /// The stored bytes of tensor `name` (GGML blocks for quantized types), zero-copy.
    ///
    /// ```no_run
    /// let f = modelopt_io::GgufFile::open("model.gguf")?;
    /// let blocks: &[u8] = f.tensor_bytes("blk.0.attn_q.weight")?;
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let i = self.position(name)?;
        Ok(&self.map.bytes()[self.ranges[i].clone()])
    }

    /// Tensor `name` as f32: plain floats converted, GGML block types dequantized.
    ///
    /// ```no_run
    /// let w = modelopt_io::GgufFile::open("model.gguf")?.tensor_f32("output.weight")?;
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let i = self.position(name)?;
        let t = &self.tensors[i];
        let bytes = &self.map.bytes()[self.ranges[i].clone()];
        crate::quantized::to_f32(t, bytes)
            .map_err(|e| IoError::format(&self.path, format!("tensor `{name}`: {e}")))
    }

    /// Drops the memory pages of tensor `name` after processing it.
    ///
    /// ```no_run
    /// modelopt_io::GgufFile::open("model.gguf")?.release("output.weight")?;
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
    /// use modelopt_io::{DType, GgufFile, GgufWriter, TensorInfo};
    /// let path = std::env::temp_dir().join(format!("modelopt-ggrd-doc-{}.gguf", std::process::id()));
    /// let mut w = GgufWriter::create(&path, vec![], vec![TensorInfo::new("ids", DType::I8, vec![4])])?;
    /// w.write_tensor("ids", &[1, 2, 3, 4])?;
    /// w.finish()?;
    /// let mut buf = [0u8; 3];
    /// GgufFile::open(&path)?.read_tensor_at("ids", 1, &mut buf)?;
    /// assert_eq!(buf, [2, 3, 4]);
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn read_tensor_at(&self, name: &str, offset: usize, buf: &mut [u8]) -> Result<()> {
        let range = self.ranges[self.position(name)?].clone();
        self.map
            .read_tensor_at(&self.path, name, range, offset, buf)
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

struct Parsed {
    version: u32,
    alignment: usize,
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<TensorInfo>,
    ranges: Vec<Range<usize>>,
}

/// A bounds-checked little-endian reader over the file bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

type Parse<T> = std::result::Result<T, String>;

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Parse<&'a [u8]> {
        if n > self.remaining() {
            return Err(format!(
                "truncated: {what} needs {n} bytes at offset {} but the file ends at {}",
                self.pos,
                self.bytes.len()
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Parse<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Parse<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Parse<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A count of items of at least `min_bytes` each, refused when the rest of the file could not
    /// hold them (so no allocation is ever sized by an unchecked count).
    fn count(&mut self, min_bytes: usize, what: &str) -> Parse<usize> {
        let at = self.pos;
        let n = self.u64(what)?;
        let fits = (self.remaining() / min_bytes.max(1)) as u64;
        if n > fits {
            return Err(format!(
                "absurd {what} {n} at offset {at}: the remaining {} bytes hold at most {fits}",
                self.remaining()
            ));
        }
        Ok(n as usize) // ok: <= remaining bytes
    }

    fn string(&mut self, what: &str) -> Parse<String> {
        let n = self.count(1, &format!("length of {what}"))?;
        let at = self.pos;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| format!("{what} at offset {at} is not UTF-8"))
    }

    fn value(&mut self, ty: GgufType, key: &str, depth: usize) -> Parse<GgufValue> {
        Ok(match ty {
            GgufType::U8 => GgufValue::U8(self.array::<1>(key)?[0]),
            GgufType::I8 => GgufValue::I8(i8::from_le_bytes(self.array(key)?)),
            GgufType::U16 => GgufValue::U16(u16::from_le_bytes(self.array(key)?)),
            GgufType::I16 => GgufValue::I16(i16::from_le_bytes(self.array(key)?)),
            GgufType::U32 => GgufValue::U32(self.u32(key)?),
            GgufType::I32 => GgufValue::I32(i32::from_le_bytes(self.array(key)?)),
            GgufType::F32 => GgufValue::F32(f32::from_le_bytes(self.array(key)?)),
            GgufType::Bool => match self.array::<1>(key)?[0] {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => return Err(format!("key `{key}`: bool byte {b} is neither 0 nor 1")),
            },
            GgufType::String => GgufValue::String(self.string(&format!("value of `{key}`"))?),
            GgufType::U64 => GgufValue::U64(self.u64(key)?),
            GgufType::I64 => GgufValue::I64(i64::from_le_bytes(self.array(key)?)),
            GgufType::F64 => GgufValue::F64(f64::from_le_bytes(self.array(key)?)),
            GgufType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(format!(
                        "key `{key}`: arrays nested deeper than {MAX_ARRAY_DEPTH}"
                    ));
                }
                let id = self.u32(key)?;
                let item_type = GgufType::from_id(id)
                    .ok_or_else(|| format!("key `{key}`: unknown array item type {id}"))?;
                let n = self.count(item_type.min_bytes(), &format!("item count of `{key}`"))?;
                if n > MAX_ARRAY_ITEMS {
                    return Err(format!(
                        "key `{key}`: array of {n} items exceeds the {MAX_ARRAY_ITEMS}-item limit"
                    ));
                }
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(item_type, key, depth + 1)?);
                }
                GgufValue::Array { item_type, items }
            }
        })
    }
}

fn parse(bytes: &[u8]) -> Parse<Parsed> {
    let mut c = Cursor { bytes, pos: 0 };
    let magic = c
        .take(4, "magic")
        .map_err(|_| "bad magic: file is shorter than 4 bytes".to_string())?;
    if magic != GGUF_MAGIC {
        return Err(format!("bad magic {magic:?}: not a GGUF file"));
    }
    let version = c.u32("version")?;
    if version != 2 && version != 3 {
        return Err(format!(
            "unsupported GGUF version {version} (2 and 3 are read)"
        ));
    }
    // A tensor info takes at least 8 (name) + 4 (n_dims) + 4 (type) + 8 (offset) bytes; a
    // key/value at least 8 (key) + 4 (type) + 1.
    let n_tensors = c.count(24, "tensor count")?;
    let n_kv = c.count(13, "metadata key count")?;
    let mut metadata = Vec::with_capacity(n_kv);
    let mut alignment = GGUF_DEFAULT_ALIGNMENT;
    for i in 0..n_kv {
        let key = c.string(&format!("key #{i}"))?;
        let id = c.u32(&key)?;
        let ty =
            GgufType::from_id(id).ok_or_else(|| format!("key `{key}`: unknown value type {id}"))?;
        let value = c.value(ty, &key, 0)?;
        if key == "general.alignment" {
            alignment = match value {
                GgufValue::U32(a) if a.is_power_of_two() => a as usize,
                ref v => return Err(format!("general.alignment {v:?} is not a power-of-two u32")),
            };
        }
        metadata.push((key, value));
    }
    let mut tensors = Vec::with_capacity(n_tensors);
    let mut offsets = Vec::with_capacity(n_tensors);
    let mut names = std::collections::HashSet::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let name = c.string(&format!("name of tensor #{i}"))?;
        let at = |p: String| format!("tensor `{name}`: {p}");
        let n_dims = c.u32("n_dims")? as usize;
        if n_dims > MAX_DIMS {
            return Err(at(format!("{n_dims} dimensions (at most {MAX_DIMS})")));
        }
        let mut dims = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            let d = c.u64("dimension")?;
            dims.push(usize::try_from(d).map_err(|_| at(format!("dimension {d} too large")))?);
        }
        dims.reverse(); // GGUF: ne[0] is the row length; row-major shape has it last
        let id = c.u32("tensor type")?;
        let dtype = dtype_from_gguf(id).ok_or_else(|| at(format!("unknown tensor type {id}")))?;
        let offset = c.u64("tensor offset")?;
        if !names.insert(name.clone()) {
            return Err(at("name repeated".into()));
        }
        tensors.push(TensorInfo::new(name, dtype, dims));
        offsets.push(offset);
    }
    let data_start = c.pos.next_multiple_of(alignment);
    let data_len = bytes.len().saturating_sub(data_start);
    let mut ranges = Vec::with_capacity(n_tensors);
    for (t, &off) in tensors.iter().zip(&offsets) {
        let at = |p: String| format!("tensor `{}`: {p}", t.name);
        let size = t.bytes().map_err(|e| at(e.to_string()))?;
        if off % alignment as u64 != 0 {
            return Err(at(format!(
                "offset {off} is not a multiple of the alignment {alignment}"
            )));
        }
        let end = off.checked_add(size as u64).filter(|&e| e <= data_len as u64).ok_or_else(|| {
            at(format!(
                "data [{off}, +{size}) out of range of the {data_len}-byte data section ({} {:?})",
                t.dtype, t.shape
            ))
        })?;
        ranges.push(data_start + off as usize..data_start + end as usize); // ok: <= file length
    }
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| (ranges[i].start, ranges[i].end));
    for w in order.windows(2) {
        let (a, b) = (&ranges[w[0]], &ranges[w[1]]);
        if b.start < a.end && !a.is_empty() && !b.is_empty() {
            return Err(format!(
                "tensors `{}` and `{}` overlap",
                tensors[w[0]].name, tensors[w[1]].name
            ));
        }
    }
    Ok(Parsed {
        version,
        alignment,
        metadata,
        tensors,
        ranges,
    })
}
