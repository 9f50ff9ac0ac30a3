//! llama.cpp's legacy importance-matrix file (`imatrix.dat`, written by `llama-imatrix
//! --output-format dat` and read by `llama-quantize --imatrix`).
//!
//! Layout (all integers little-endian `int32`, values `f32`), as `save_imatrix_legacy` in
//! llama.cpp's `tools/imatrix/imatrix.cpp` writes it:
//!
//! ```text
//! n_entries
//! n_entries x { name_len, name bytes, ncall, n_values, n_values x f32 }
//! [ last_chunk, dataset_len, dataset bytes ]        (optional trailer)
//! ```
//!
//! The stored values are sums over `ncall` calls (the mean squared activation of each input
//! column, times `ncall`); `llama-quantize` divides them by `ncall` when `ncall > 0` and hands
//! the result to the quantizers as one importance weight per column. Entries are named after the
//! weight tensor they belong to (`blk.0.attn_q.weight`), written sorted by name.

use std::io::Write;
use std::path::Path;

use crate::{AtomicFile, IoError, Result};

/// One entry of an importance matrix: the tensor it belongs to and its per-column sums.
///
/// ```
/// use modelopt_io::ImatrixEntry;
/// let e = ImatrixEntry::new("blk.0.ffn_up.weight", 4, vec![8.0, 4.0])?;
/// assert_eq!(e.means(), vec![2.0, 1.0]);
/// # Ok::<(), modelopt_io::IoError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ImatrixEntry {
    name: String,
    ncall: i32,
    sums: Vec<f32>,
}

impl ImatrixEntry {
    /// An entry named `name` whose `sums` were accumulated over `ncall` calls.
    ///
    /// Errors: an empty name or one holding a NUL byte, a negative `ncall`, no values, more
    /// values than an `int32` counts, or a value that is NaN, infinite or negative.
    ///
    /// ```
    /// use modelopt_io::ImatrixEntry;
    /// assert!(ImatrixEntry::new("w", 1, vec![f32::NAN]).is_err());
    /// assert!(ImatrixEntry::new("w", -1, vec![1.0]).is_err());
    /// ```
    pub fn new(name: impl Into<String>, ncall: i32, sums: Vec<f32>) -> Result<Self> {
        let name = name.into();
        let bad = |problem: String| IoError::Usage(format!("imatrix entry `{name}`: {problem}"));
        if name.is_empty() || name.contains('\0') || name.len() > i32::MAX as usize {
            return Err(IoError::Usage(format!(
                "imatrix entry name {name:?}: must be 1 to 2^31-1 bytes without NUL"
            )));
        }
        if ncall < 0 {
            return Err(bad(format!("negative call count {ncall}")));
        }
        if sums.is_empty() || sums.len() > i32::MAX as usize {
            return Err(bad(format!("{} values (need 1 to 2^31-1)", sums.len())));
        }
        if let Some((i, v)) = sums
            .iter()
            .enumerate()
            .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
        {
            return Err(bad(format!("value {i} is {v} (must be finite and >= 0)")));
        }
        Ok(ImatrixEntry { name, ncall, sums })
    }

    /// The tensor name.
    ///
    /// ```
    /// let e = modelopt_io::ImatrixEntry::new("output.weight", 1, vec![1.0])?;
    /// assert_eq!(e.name(), "output.weight");
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many calls the sums were accumulated over.
    ///
    /// ```
    /// assert_eq!(modelopt_io::ImatrixEntry::new("w", 7, vec![1.0])?.ncall(), 7);
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn ncall(&self) -> i32 {
        self.ncall
    }

    /// The values as stored in the file: sums over [`ImatrixEntry::ncall`] calls.
    ///
    /// ```
    /// assert_eq!(modelopt_io::ImatrixEntry::new("w", 2, vec![3.0])?.sums(), &[3.0]);
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn sums(&self) -> &[f32] {
        &self.sums
    }

    /// The per-call means, as `llama-quantize` loads them: each sum divided (in f32) by
    /// `ncall` when `ncall > 0`, the sums unchanged otherwise. These are the importance
    /// weights handed to the quantizers.
    ///
    /// ```
    /// assert_eq!(modelopt_io::ImatrixEntry::new("w", 0, vec![3.0])?.means(), vec![3.0]);
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn means(&self) -> Vec<f32> {
        if self.ncall > 0 {
            let n = self.ncall as f32;
            self.sums.iter().map(|v| v / n).collect()
        } else {
            self.sums.clone()
        }
    }
}

/// A legacy `imatrix.dat` importance matrix: its entries plus the trailer (chunk count and the
/// name of the calibration data set).
///
/// ```
/// use modelopt_io::{Imatrix, ImatrixEntry};
/// let dir = std::env::temp_dir().join(format!("modelopt-imatrix-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("imatrix.dat");
/// let m = Imatrix::new(vec![ImatrixEntry::new("blk.0.attn_q.weight", 10, vec![20.0; 64])?])?
///     .with_trailer(10, "wiki.train.raw");
/// m.write(&path)?;
/// let back = Imatrix::read(&path)?;
/// assert_eq!(back, m);
/// assert_eq!(back.get("blk.0.attn_q.weight").unwrap().means(), vec![2.0; 64]);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), modelopt_io::IoError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Imatrix {
    entries: Vec<ImatrixEntry>,
    last_chunk: i32,
    dataset: String,
}

/// Reads little-endian fields from a byte slice with the offset at hand for errors.
struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn err(&self, at: usize, problem: impl std::fmt::Display) -> IoError {
        IoError::format(self.path, format!("{problem} (at byte offset {at})"))
    }

    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(
                self.pos,
                format!(
                    "truncated: {} needs {n} bytes, {} left",
                    what(),
                    self.remaining()
                ),
            ));
        }
        let bytes: &'a [u8] = self.bytes;
        let s = &bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn i32(&mut self, what: &dyn Fn() -> String) -> Result<i32> {
        let b = self.take(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

impl Imatrix {
    /// An importance matrix of `entries` (names must be distinct), with an empty trailer.
    ///
    /// ```
    /// use modelopt_io::{Imatrix, ImatrixEntry};
    /// let e = ImatrixEntry::new("w", 1, vec![1.0])?;
    /// assert!(Imatrix::new(vec![e.clone(), e]).is_err()); // duplicate name
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn new(entries: Vec<ImatrixEntry>) -> Result<Self> {
        if entries.is_empty() {
            return Err(IoError::Usage("an imatrix needs at least one entry".into()));
        }
        if entries.len() > i32::MAX as usize {
            return Err(IoError::Usage(
                "more imatrix entries than an int32 counts".into(),
            ));
        }
        let mut names: Vec<&str> = entries.iter().map(|e| e.name()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(IoError::Usage(format!(
                "imatrix entry `{}` appears twice",
                w[0]
            )));
        }
        Ok(Imatrix {
            entries,
            last_chunk: 0,
            dataset: String::new(),
        })
    }

    /// The same matrix with the trailer `llama-imatrix` writes: the number of chunks the
    /// matrix was computed on and the calibration data set's name.
    ///
    /// ```
    /// use modelopt_io::{Imatrix, ImatrixEntry};
    /// let m = Imatrix::new(vec![ImatrixEntry::new("w", 1, vec![1.0])?])?.with_trailer(3, "data.txt");
    /// assert_eq!((m.last_chunk(), m.dataset()), (3, "data.txt"));
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn with_trailer(mut self, last_chunk: i32, dataset: impl Into<String>) -> Self {
        self.last_chunk = last_chunk;
        self.dataset = dataset.into();
        self
    }

    /// The entries in file order.
    ///
    /// ```
    /// use modelopt_io::{Imatrix, ImatrixEntry};
    /// let m = Imatrix::new(vec![ImatrixEntry::new("w", 1, vec![1.0])?])?;
    /// assert_eq!(m.entries().len(), 1);
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn entries(&self) -> &[ImatrixEntry] {
        &self.entries
    }

    /// The entry named `name` (exact match, as `llama-quantize` looks tensors up).
    ///
    /// ```
    /// use modelopt_io::{Imatrix, ImatrixEntry};
    /// let m = Imatrix::new(vec![ImatrixEntry::new("w", 1, vec![1.0])?])?;
    /// assert!(m.get("w").is_some() && m.get("v").is_none());
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn get(&self, name: &str) -> Option<&ImatrixEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The chunk count of the trailer (0 when the file has none).
    ///
    /// ```
    /// # use modelopt_io::{Imatrix, ImatrixEntry};
    /// let m = Imatrix::new(vec![ImatrixEntry::new("w", 1, vec![1.0])?])?;
    /// assert_eq!(m.last_chunk(), 0);
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn last_chunk(&self) -> i32 {
        self.last_chunk
    }

    /// The calibration data set named in the trailer (empty when the file has none).
    ///
    /// ```
    /// # use modelopt_io::{Imatrix, ImatrixEntry};
    /// let m = Imatrix::new(vec![ImatrixEntry::new("w", 1, vec![1.0])?])?;
    /// assert_eq!(m.dataset(), "");
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn dataset(&self) -> &str {
        &self.dataset
    }

    /// Reads and validates a legacy `imatrix.dat` file (see [`Imatrix::from_bytes`]).
    ///
    /// ```
    /// let e = modelopt_io::Imatrix::read("/nonexistent/imatrix.dat").unwrap_err();
    /// assert!(e.to_string().contains("/nonexistent/imatrix.dat"));
    /// ```
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| IoError::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses the bytes of a legacy `imatrix.dat`; `path` only names the file in errors.
    ///
    /// Every count and length is checked against the bytes left before anything is allocated.
    /// Errors ([`IoError::Format`], naming the entry and the byte offset): a truncated file, an
    /// entry count or value count below 1, a negative or oversized name length, a name that is
    /// not UTF-8 or holds a NUL, a negative call count, a value that is NaN, infinite or
    /// negative, a name that appears twice, or bytes after the entries that are not a trailer.
    ///
    /// ```
    /// // One entry named "w" whose value count (2) runs past the end of the file.
    /// let bytes = [1, 0, 0, 0, 1, 0, 0, 0, b'w', 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 128, 63];
    /// let e = modelopt_io::Imatrix::from_bytes(&bytes, "m.dat").unwrap_err();
    /// assert_eq!(e.to_string(), "m.dat: entry 0 `w`: value count 2 (need 1 to 1, the values left in the file) (at byte offset 13)");
    /// ```
    pub fn from_bytes(bytes: &[u8], path: impl AsRef<Path>) -> Result<Self> {
        let mut c = Cursor {
            path: path.as_ref(),
            bytes,
            pos: 0,
        };
        let n = c.i32(&|| "the entry count".into())?;
        // Each entry takes at least 4 + 1 + 4 + 4 bytes (name length, name, ncall, count).
        if n < 1 || n as usize > c.remaining() / 13 {
            return Err(c.err(
                0,
                format!(
                    "entry count {n} does not fit a file of {} bytes",
                    bytes.len()
                ),
            ));
        }
        let mut entries: Vec<ImatrixEntry> = Vec::with_capacity(n as usize);
        let mut seen = std::collections::HashSet::new();
        for i in 0..n as usize {
            let at = c.pos;
            let entry = |i: usize| move || format!("entry {i}");
            let len = c.i32(&|| format!("the name length of entry {i}"))?;
            if len < 1 || len as usize > c.remaining() {
                return Err(c.err(
                    at,
                    format!(
                        "entry {i}: name length {len} (need 1 to {} bytes)",
                        c.remaining()
                    ),
                ));
            }
            let name_at = c.pos;
            let raw = c.take(len as usize, &entry(i))?;
            let name = std::str::from_utf8(raw)
                .map_err(|e| c.err(name_at, format!("entry {i}: name is not UTF-8 ({e})")))?;
            if name.contains('\0') {
                return Err(c.err(
                    name_at,
                    format!("entry {i}: name {name:?} holds a NUL byte"),
                ));
            }
            let name = name.to_owned();
            let what = |field: &'static str| {
                let name = name.clone();
                move || format!("the {field} of entry {i} `{name}`")
            };
            let ncall_at = c.pos;
            let ncall = c.i32(&what("call count"))?;
            if ncall < 0 {
                return Err(c.err(
                    ncall_at,
                    format!("entry {i} `{name}`: negative call count {ncall}"),
                ));
            }
            let nval_at = c.pos;
            let nval = c.i32(&what("value count"))?;
            if nval < 1 || nval as usize > c.remaining() / 4 {
                return Err(c.err(
                    nval_at,
                    format!(
                        "entry {i} `{name}`: value count {nval} (need 1 to {}, the values left in the file)",
                        c.remaining() / 4
                    ),
                ));
            }
            let values_at = c.pos;
            let raw = c.take(nval as usize * 4, &what("values"))?;
            let sums: Vec<f32> = raw
                .as_chunks::<4>()
                .0
                .iter()
                .map(|b| f32::from_le_bytes(*b))
                .collect();
            if let Some((k, v)) = sums
                .iter()
                .enumerate()
                .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
            {
                return Err(c.err(
                    values_at + 4 * k,
                    format!("entry {i} `{name}`: value {k} is {v} (must be finite and >= 0)"),
                ));
            }
            if !seen.insert(name.clone()) {
                return Err(c.err(at, format!("entry {i} `{name}` appears twice")));
            }
            entries.push(ImatrixEntry { name, ncall, sums });
        }
        let mut m = Imatrix {
            entries,
            last_chunk: 0,
            dataset: String::new(),
        };
        if c.remaining() == 0 {
            return Ok(m);
        }
        let trailer = || "the trailer (chunk count)".to_string();
        m.last_chunk = c.i32(&trailer)?;
        if c.remaining() == 0 {
            return Ok(m);
        }
        let at = c.pos;
        let len = c.i32(&|| "the trailer's data set name length".into())?;
        if len < 0 || len as usize != c.remaining() {
            return Err(c.err(
                at,
                format!(
                    "trailer: data set name length {len}, but {} bytes follow",
                    c.remaining()
                ),
            ));
        }
        let name_at = c.pos;
        let raw = c.take(len as usize, &|| "the data set name".into())?;
        m.dataset = std::str::from_utf8(raw)
            .map_err(|e| {
                c.err(
                    name_at,
                    format!("trailer: data set name is not UTF-8 ({e})"),
                )
            })?
            .to_owned();
        Ok(m)
    }

    /// The file's bytes, laid out as `llama-imatrix` writes them: entries sorted by name, then
    /// the trailer.
    ///
    /// ```
    /// use modelopt_io::{Imatrix, ImatrixEntry};
    /// let m = Imatrix::new(vec![ImatrixEntry::new("w", 1, vec![0.5])?])?;
    /// assert_eq!(m.to_bytes().len(), 4 + (4 + 1 + 4 + 4 + 4) + 4 + 4);
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut sorted: Vec<&ImatrixEntry> = self.entries.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let size = 12
            + self.dataset.len()
            + sorted
                .iter()
                .map(|e| 12 + e.name.len() + 4 * e.sums.len())
                .sum::<usize>();
        let mut out = Vec::with_capacity(size);
        // Lengths and counts were checked to fit an i32 when the values were built.
        out.extend_from_slice(&(sorted.len() as i32).to_le_bytes());
        for e in sorted {
            out.extend_from_slice(&(e.name.len() as i32).to_le_bytes());
            out.extend_from_slice(e.name.as_bytes());
            out.extend_from_slice(&e.ncall.to_le_bytes());
            out.extend_from_slice(&(e.sums.len() as i32).to_le_bytes());
            for v in &e.sums {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out.extend_from_slice(&self.last_chunk.to_le_bytes());
        let dataset = &self.dataset.as_bytes()[..self.dataset.len().min(i32::MAX as usize)];
        out.extend_from_slice(&(dataset.len() as i32).to_le_bytes());
        out.extend_from_slice(dataset);
        out
    }

    /// Writes the file atomically (a temporary file renamed into place: no partial file on
    /// failure).
    ///
    /// ```
    /// use modelopt_io::{Imatrix, ImatrixEntry};
    /// let m = Imatrix::new(vec![ImatrixEntry::new("w", 1, vec![0.5])?])?;
    /// assert!(m.write("/nonexistent-dir/imatrix.dat").is_err());
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut f = AtomicFile::create(path)?;
        f.write_all(&self.to_bytes())
            .map_err(|e| IoError::io(path, e))?;
        f.commit()
    }
}
