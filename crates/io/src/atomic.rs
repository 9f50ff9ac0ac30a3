use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{IoError, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file written under a temporary name in the target folder and renamed over the target only by
/// [`AtomicFile::commit`]: a failure (or a drop without commit) removes the temporary file, so no
/// partial output is ever left at the target path.
///
/// Writes go straight to the file: sequentially through [`Write`] (unbuffered, so hand it large
/// pieces), or at any offset through [`AtomicFile::write_at`], which takes `&self` so that
/// several threads can fill different parts of the file at once.
///
/// ```
/// use std::io::Write;
/// let dir = std::env::temp_dir().join(format!("modelopt-atomic-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let target = dir.join("out.bin");
/// let mut f = modelopt_io::AtomicFile::create(&target)?;
/// f.write_all(b"hello").unwrap();
/// assert!(!target.exists());
/// f.commit()?;
/// assert_eq!(std::fs::read(&target).unwrap(), b"hello");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), modelopt_io::IoError>(())
/// ```
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    /// Opens a new temporary file beside `target`.
    ///
    /// ```
    /// let e = modelopt_io::AtomicFile::create("/nonexistent-dir/x.gguf").unwrap_err();
    /// assert!(e.to_string().contains("/nonexistent-dir/"));
    /// ```
    pub fn create(target: impl AsRef<Path>) -> Result<Self> {
        let target = target.as_ref().to_path_buf();
        let file_name = target
            .file_name()
            .ok_or_else(|| IoError::format(&target, "output path has no file name"))?;
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(file_name);
        temp_name.push(format!(".{}-{n}.tmp", std::process::id()));
        let temp = dir.join(temp_name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| IoError::io(&temp, e))?;
        Ok(AtomicFile {
            target,
            temp,
            file: Some(file),
        })
    }

    /// The path the file will have after [`AtomicFile::commit`].
    ///
    /// ```
    /// # let dir = std::env::temp_dir();
    /// let f = modelopt_io::AtomicFile::create(dir.join("modelopt-doc-target.bin"))?;
    /// assert!(f.target().ends_with("modelopt-doc-target.bin"));
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flushes, syncs and renames the temporary file to the target.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("modelopt-commit-doc-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let f = modelopt_io::AtomicFile::create(dir.join("empty.bin"))?;
    /// f.commit()?;
    /// assert!(dir.join("empty.bin").exists());
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn commit(mut self) -> Result<()> {
        let file = self
            .file
            .take()
            .ok_or_else(|| IoError::format(&self.temp, "file already closed"))?;
        file.sync_all().map_err(|e| IoError::io(&self.temp, e))?;
        drop(file);
        std::fs::rename(&self.temp, &self.target).map_err(|e| IoError::io(&self.target, e))?;
        // The rename succeeded: nothing to clean up on drop.
        self.temp = PathBuf::new();
        Ok(())
    }

    /// Writes all of `buf` at byte `offset` of the file, leaving the sequential position alone.
    /// Safe to call from several threads at once on disjoint ranges; a gap left between writes
    /// reads as zeros.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("modelopt-write-at-doc-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let f = modelopt_io::AtomicFile::create(dir.join("parts.bin"))?;
    /// f.write_at(3, b"def")?;
    /// f.write_at(0, b"abc")?;
    /// f.commit()?;
    /// assert_eq!(std::fs::read(dir.join("parts.bin")).unwrap(), b"abcdef");
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn write_at(&self, offset: u64, buf: &[u8]) -> Result<()> {
        let file = self
            .file
            .as_ref()
            .ok_or_else(|| IoError::format(&self.temp, "file already closed"))?;
        write_all_at(file, offset, buf).map_err(|e| IoError::io(&self.temp, e))
    }

    /// Asks the kernel to start writing `len` bytes at `offset` to disk now, without waiting,
    /// so that [`AtomicFile::commit`]'s `fsync` finds little left to do. Best effort: a no-op
    /// where `posix_fadvise` is missing, errors ignored (the data is written at commit anyway).
    pub(crate) fn start_writeback(&self, offset: u64, len: u64) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let (Some(f), Some(len)) = (self.file.as_ref(), std::num::NonZeroU64::new(len)) {
            // POSIX_FADV_DONTNEED starts writeback of the dirty pages in the range (Linux
            // `generic_fadvise`) and drops only pages already clean.
            let _ = rustix::fs::fadvise(f, offset, Some(len), rustix::fs::Advice::DontNeed);
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = (offset, len);
    }

    fn file(&mut self) -> std::io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("file already closed"))
    }
}

#[cfg(unix)]
fn write_all_at(file: &File, offset: u64, buf: &[u8]) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(windows)]
fn write_all_at(file: &File, mut offset: u64, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, buf, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
        offset += n as u64;
    }
    Ok(())
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file()?.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.file()?.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file()?.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            drop(self.file.take());
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// True when `a` and `b` name the same existing file (same device and inode on Unix), so that a
/// command can refuse to write over its own input.
///
/// ```
/// let me = std::env::current_exe().unwrap();
/// assert!(modelopt_io::same_file(&me, &me));
/// assert!(!modelopt_io::same_file(&me, "/nonexistent/file"));
/// ```
pub fn same_file(a: impl AsRef<Path>, b: impl AsRef<Path>) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a.as_ref()), std::fs::metadata(b.as_ref())) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        ma.dev() == mb.dev() && ma.ino() == mb.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        match (a.as_ref().canonicalize(), b.as_ref().canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}
