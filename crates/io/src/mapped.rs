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
        Ok(Mapped { map })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
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
