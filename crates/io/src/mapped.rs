//! A read-only memory map of a model file, with page release after each tensor.

use std::fs::File;
use std::ops::Range;
use std::path::Path;

use memmap2::{Mmap, UncheckedAdvice};

use crate::{IoError, Result};

/// The bytes of a file, memory-mapped read-only.
#[derive(Debug)]
pub(crate) struct Mapped {
    map: Mmap,
    file: File,
}

impl Mapped {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| IoError::io(path, e))?;
        let len = file.metadata().map_err(|e| IoError::io(path, e))?.len();
        if len == 0 {
            return Err(IoError::format(path, "file is empty"));
        }
        // SAFETY: the map is read-only; like every mmap reader (safetensors' own example) we rely
        // on the file not being truncated by another process while it is open.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| IoError::io(path, e))?;
        Ok(Mapped { map, file })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Reads bytes `offset..offset + buf.len()` of tensor `name`, stored at `range` of the file
    /// `path`, with `pread`, not through the map: for streaming a large tensor through small
    /// buffers, this costs one copy and no page faults, and leaves nothing mapped to release.
    pub(crate) fn read_tensor_at(
        &self,
        path: &Path,
        name: &str,
        range: Range<usize>,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<()> {
        if offset
            .checked_add(buf.len())
            .is_none_or(|end| end > range.len())
        {
            return Err(IoError::format(
                path,
                format!(
                    "tensor `{name}`: bytes {offset}..+{} are outside its {} bytes",
                    buf.len(),
                    range.len()
                ),
            ));
        }
        read_exact_at(&self.file, (range.start + offset) as u64, buf)
            .map_err(|e| IoError::io(path, e))
    }

    /// Drops the resident pages of `range` so that memory follows the tensor being processed,
    /// not the file. Best effort: errors are ignored (the pages then stay cached).
    pub(crate) fn release(&self, range: Range<usize>) {
        let page = 4096;
        let start = range.start.div_ceil(page) * page;
        let end = range.end.min(self.map.len()) / page * page;
        if end > start {
            // SAFETY: MADV_DONTNEED on a read-only shared file mapping only drops page-cache
            // mappings; later reads fault the same bytes back in from the file. No slice into
            // the map can observe a change.
            let _ = unsafe {
                self.map
                    .unchecked_advise_range(UncheckedAdvice::DontNeed, start, end - start)
            };
        }
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut offset: u64, mut buf: &mut [u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_read(file, buf, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
        offset += n as u64;
    }
    Ok(())
}
