use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{IoError, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file written under a temporary name in the target folder and renamed over the target only by
/// [`AtomicFile::commit`]: a failure (or a drop without commit) removes the temporary file, so no
/// partial output is ever left at the target path.
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
    writer: Option<BufWriter<File>>,
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
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
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
        let writer = self
            .writer
            .take()
            .ok_or_else(|| IoError::format(&self.temp, "file already closed"))?;
        let file = writer
            .into_inner()
            .map_err(|e| IoError::io(&self.temp, e.into_error()))?;
        file.sync_all().map_err(|e| IoError::io(&self.temp, e))?;
        drop(file);
        std::fs::rename(&self.temp, &self.target).map_err(|e| IoError::io(&self.target, e))?;
        // The rename succeeded: nothing to clean up on drop.
        self.temp = PathBuf::new();
        Ok(())
    }

    fn writer(&mut self) -> std::io::Result<&mut BufWriter<File>> {
        self.writer
            .as_mut()
            .ok_or_else(|| std::io::Error::other("file already closed"))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer()?.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.writer()?.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer()?.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            drop(self.writer.take());
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
