//! The data section of a file being written: declared tensors at known offsets, filled in
//! declaration order, each one whole or in parts from several threads.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{AtomicFile, IoError, Result};

/// Where one declared tensor goes: its first byte in the file, its size, and the zero padding
/// after it.
#[derive(Debug)]
struct Slot {
    name: String,
    start: u64,
    len: usize,
    pad: usize,
}

/// The output file and its declared tensors; `next` is the first one not yet written.
#[derive(Debug)]
pub(crate) struct Slots {
    file: AtomicFile,
    slots: Vec<Slot>,
    next: usize,
}

impl Slots {
    /// `file` already holds the header; the tensors, in declaration order, are `(name, offset
    /// in the data section, bytes)`, the data section starts at byte `data` and each tensor is
    /// padded with zeros to a multiple of `alignment`.
    pub(crate) fn new(
        file: AtomicFile,
        data: u64,
        tensors: Vec<(String, usize, usize)>,
        alignment: usize,
    ) -> Self {
        let slots = tensors
            .into_iter()
            .map(|(name, offset, len)| Slot {
                name,
                start: data + offset as u64,
                len,
                pad: len.next_multiple_of(alignment) - len,
            })
            .collect();
        Slots {
            file,
            slots,
            next: 0,
        }
    }

    pub(crate) fn target(&self) -> &Path {
        self.file.target()
    }

    /// The index of the next declared tensor, after checking it is `name` of `len` bytes.
    fn expect_next(&self, name: &str, len: usize) -> Result<usize> {
        let Some(s) = self.slots.get(self.next) else {
            return Err(IoError::format(
                self.target(),
                format!("tensor `{name}` was not declared (all tensors written)"),
            ));
        };
        if s.name != name || s.len != len {
            return Err(IoError::format(
                self.target(),
                format!(
                    "expected tensor `{}` ({} bytes) next, got `{name}` ({len} bytes)",
                    s.name, s.len
                ),
            ));
        }
        Ok(self.next)
    }

    /// Writes the next declared tensor whole.
    pub(crate) fn write_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let i = self.expect_next(name, bytes.len())?;
        self.file.write_at(self.slots[i].start, bytes)?;
        self.complete(i)
    }

    /// Starts the next declared tensor, to be written in parts.
    pub(crate) fn begin(&mut self, name: &str, len: usize) -> Result<TensorOut<'_>> {
        let index = self.expect_next(name, len)?;
        Ok(TensorOut {
            slots: self,
            index,
            written: AtomicUsize::new(0),
        })
    }

    /// Pads tensor `i` and moves on to the next.
    fn complete(&mut self, i: usize) -> Result<()> {
        let s = &self.slots[i];
        if s.pad > 0 {
            self.file
                .write_at(s.start + s.len as u64, &vec![0u8; s.pad])?;
        }
        self.next = i + 1;
        // A finished tensor goes to disk while the next one is computed: the final fsync then
        // waits for the last tensor only (it took as long as the quantization of 537 MB).
        self.file.start_writeback(s.start, (s.len + s.pad) as u64);
        Ok(())
    }

    /// Checks that every declared tensor was written and moves the file into place.
    pub(crate) fn finish(self) -> Result<()> {
        if let Some(s) = self.slots.get(self.next) {
            return Err(IoError::format(
                self.target(),
                format!("tensor `{}` was declared but not written", s.name),
            ));
        }
        self.file.commit()
    }
}

/// One declared tensor being written in parts, possibly by several threads at once (it is
/// `Sync`): each part goes straight to its place in the file, so a tensor never has to be
/// assembled in memory. [`TensorOut::finish`] checks that every byte was written; dropping it
/// unfinished leaves the tensor unwritten (and the file's `finish` then fails).
///
/// ```
/// use modelopt_io::{DType, SafetensorsFile, SafetensorsWriter, TensorInfo};
/// let path = std::env::temp_dir().join(format!("modelopt-tout-doc-{}.safetensors", std::process::id()));
/// let mut w = SafetensorsWriter::create(&path, vec![TensorInfo::new("a", DType::U8, vec![4])], Default::default())?;
/// let t = w.begin_tensor("a", 4)?;
/// t.write_at(2, &[3, 4])?;
/// t.write_at(0, &[1, 2])?;
/// assert!(t.write_at(3, &[9, 9]).is_err()); // past the end
/// t.finish()?;
/// w.finish()?;
/// assert_eq!(SafetensorsFile::open(&path)?.tensor_bytes("a")?, &[1, 2, 3, 4]);
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), modelopt_io::IoError>(())
/// ```
#[derive(Debug)]
pub struct TensorOut<'a> {
    slots: &'a mut Slots,
    index: usize,
    written: AtomicUsize,
}

impl TensorOut<'_> {
    /// The tensor's name.
    pub fn name(&self) -> &str {
        &self.slots.slots[self.index].name
    }

    /// The tensor's size in bytes.
    pub fn len(&self) -> usize {
        self.slots.slots[self.index].len
    }

    /// True for a tensor of no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes `bytes` at byte `offset` of the tensor. Parts must not overlap.
    pub fn write_at(&self, offset: usize, bytes: &[u8]) -> Result<()> {
        let s = &self.slots.slots[self.index];
        if offset
            .checked_add(bytes.len())
            .is_none_or(|end| end > s.len)
        {
            return Err(IoError::format(
                self.slots.target(),
                format!(
                    "tensor `{}`: {} bytes at offset {offset} run past its {} bytes",
                    s.name,
                    bytes.len(),
                    s.len
                ),
            ));
        }
        self.slots.file.write_at(s.start + offset as u64, bytes)?;
        self.written.fetch_add(bytes.len(), Ordering::Relaxed);
        Ok(())
    }

    /// Checks that the parts covered the tensor and moves on to the next declared one.
    pub fn finish(self) -> Result<()> {
        let written = self.written.load(Ordering::Relaxed);
        let s = &self.slots.slots[self.index];
        if written != s.len {
            return Err(IoError::format(
                self.slots.target(),
                format!(
                    "tensor `{}`: {written} of its {} bytes written",
                    s.name, s.len
                ),
            ));
        }
        self.slots.complete(self.index)
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, GgufFile, GgufWriter, SafetensorsFile, SafetensorsWriter, TensorInfo};

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("modelopt-tout-{}-{name}", std::process::id()))
    }

    /// Four threads fill one tensor in interleaved parts; the GGUF padding and the next tensor
    /// land where the reader expects them.
    #[test]
    fn parts_from_several_threads_make_the_tensor() {
        let path = temp("threads.gguf");
        let infos = vec![
            TensorInfo::new("a", DType::I8, vec![1000]),
            TensorInfo::new("b", DType::I8, vec![3]),
        ];
        let mut w = GgufWriter::create(&path, vec![], infos).unwrap();
        let want: Vec<u8> = (0..1000).map(|i| (i * 7 % 251) as u8).collect();
        let t = w.begin_tensor("a", 1000).unwrap();
        std::thread::scope(|s| {
            for k in 0..4 {
                let (t, want) = (&t, &want);
                s.spawn(move || {
                    for part in (k..10).step_by(4) {
                        t.write_at(part * 100, &want[part * 100..(part + 1) * 100])
                            .unwrap();
                    }
                });
            }
        });
        t.finish().unwrap();
        w.write_tensor("b", &[1, 2, 3]).unwrap();
        w.finish().unwrap();
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.tensor_bytes("a").unwrap(), &want[..]);
        assert_eq!(f.tensor_bytes("b").unwrap(), &[1, 2, 3]);
        std::fs::remove_file(&path).unwrap();
    }

    /// A tensor missing a part is refused, and so is the file; nothing appears at the target.
    #[test]
    fn a_missing_part_is_an_error_and_leaves_no_file() {
        let path = temp("missing.safetensors");
        let infos = vec![TensorInfo::new("a", DType::U8, vec![8])];
        let mut w = SafetensorsWriter::create(&path, infos, Default::default()).unwrap();
        let t = w.begin_tensor("a", 8).unwrap();
        t.write_at(0, &[1; 4]).unwrap();
        let e = t.finish().unwrap_err().to_string();
        assert!(e.contains("4 of its 8 bytes"), "{e}");
        assert!(w.begin_tensor("b", 8).is_err()); // `a` is still the next one
        assert!(w.finish().is_err());
        assert!(!path.exists());
        assert!(SafetensorsFile::open(&path).is_err());
    }
}
