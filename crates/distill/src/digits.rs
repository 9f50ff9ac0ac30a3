//! The bundled handwritten-digits data set (UCI optical digits, 8x8, as in scikit-learn; see
//! `data/README.md` for attribution) with a stratified, seeded train/validation/test split.

use std::path::{Path, PathBuf};

use modelopt_tensor_core::CoreError;
use ndarray::{Array2, Axis};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::{DistillError, Result};

/// Images of handwritten digits: `inputs` `[samples, 64]` with pixels scaled to `[0, 1]` (the
/// raw 0..16 values divided by 16) and `labels` in `0..10`.
///
/// ```
/// use modelopt_distill::Digits;
/// let digits = Digits::load_bundled()?;
/// assert_eq!(digits.inputs.dim(), (1797, 64));
/// let split = digits.split(0.15, 0.2, 42)?;
/// assert_eq!(split.train.len() + split.validation.len() + split.test.len(), 1797);
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Digits {
    /// Pixels, `[samples, 64]`, in `[0, 1]`.
    pub inputs: Array2<f32>,
    /// Class of each sample, `0..10`.
    pub labels: Vec<usize>,
}

/// One part of a [`DigitsSplit`].
#[derive(Debug, Clone, PartialEq)]
pub struct DigitsPart {
    /// Pixels, `[samples, 64]`.
    pub inputs: Array2<f32>,
    /// Labels.
    pub labels: Vec<usize>,
}

impl DigitsPart {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// Whether the part has no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// A stratified train/validation/test split.
#[derive(Debug, Clone, PartialEq)]
pub struct DigitsSplit {
    /// Training samples.
    pub train: DigitsPart,
    /// Validation samples (for early stopping and tuning).
    pub validation: DigitsPart,
    /// Held-out test samples.
    pub test: DigitsPart,
}

/// Number of pixels per image.
const PIXELS: usize = 64;
/// Number of classes.
const CLASSES: usize = 10;

impl Digits {
    /// Path of the CSV shipped in this crate's `data/` folder.
    pub fn bundled_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data")
            .join("digits.csv")
    }

    /// Load the CSV shipped with this crate.
    pub fn load_bundled() -> Result<Self> {
        Self::load(Self::bundled_path())
    }

    /// Load a digits CSV (64 pixels in 0..=16, then the label, per line).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| DistillError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&text).map_err(|e| match e {
            DistillError::File { reason, .. } => DistillError::File {
                path: path.display().to_string(),
                reason,
            },
            other => other,
        })
    }

    /// Parse digits CSV text.
    ///
    /// ```
    /// use modelopt_distill::Digits;
    /// let row = format!("{}16,3\n", "0,".repeat(63));
    /// let d = Digits::parse(&row)?;
    /// assert_eq!((d.inputs[[0, 63]], d.labels[0]), (1.0, 3));
    /// assert!(Digits::parse("1,2,3\n").is_err());
    /// # Ok::<(), modelopt_distill::DistillError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for (line_no, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let bad = |reason: String| DistillError::File {
                path: "<digits csv>".into(),
                reason: format!("line {}: {reason}", line_no + 1),
            };
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if fields.len() != PIXELS + 1 {
                return Err(bad(format!(
                    "expected {} fields, found {}",
                    PIXELS + 1,
                    fields.len()
                )));
            }
            for f in &fields[..PIXELS] {
                let v: f32 = f
                    .parse()
                    .map_err(|_| bad(format!("pixel '{f}' is not a number")))?;
                if !(0.0..=16.0).contains(&v) {
                    return Err(bad(format!("pixel {v} outside 0..=16")));
                }
                pixels.push(v / 16.0);
            }
            let label: f32 = fields[PIXELS]
                .parse()
                .map_err(|_| bad(format!("label '{}' is not a number", fields[PIXELS])))?;
            if !(label >= 0.0 && label < CLASSES as f32 && label.fract() == 0.0) {
                return Err(bad(format!(
                    "label {label} is not an integer in 0..{CLASSES}"
                )));
            }
            labels.push(label as usize);
        }
        if labels.is_empty() {
            return Err(CoreError::Empty { what: "digits csv" }.into());
        }
        let inputs = Array2::from_shape_vec((labels.len(), PIXELS), pixels)
            .map_err(|e| CoreError::invalid("digits", e.to_string()))?;
        Ok(Digits { inputs, labels })
    }

    /// Split stratified by class: within each class the samples are shuffled with `seed`, and
    /// `round(validation * n_class)` go to validation, `round(test * n_class)` to test, the rest to
    /// training; each part is then shuffled. Fractions must be in `[0, 1)` with a sum below 1.
    pub fn split(&self, validation: f64, test: f64, seed: u64) -> Result<DigitsSplit> {
        stratified_split(&self.inputs, &self.labels, validation, test, seed)
    }
}

/// The split behind [`Digits::split`] and [`crate::Mnist::split`]: per class, shuffle with `seed`
/// and cut `round(validation * n_class)` for validation, `round(test * n_class)` for test, the rest
/// for training; then shuffle each part. The fractions must be in `[0, 1)` with a sum below 1.
pub(crate) fn stratified_split(
    inputs: &Array2<f32>,
    labels: &[usize],
    validation: f64,
    test: f64,
    seed: u64,
) -> Result<DigitsSplit> {
    if !(0.0..1.0).contains(&validation) || !(0.0..1.0).contains(&test) || validation + test >= 1.0
    {
        return Err(CoreError::invalid(
            "split",
            format!(
                "fractions must be in [0, 1) with sum < 1, got validation {validation}, test {test}"
            ),
        )
        .into());
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut tr, mut va, mut te) = (Vec::new(), Vec::new(), Vec::new());
    for class in 0..CLASSES {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        idx.shuffle(&mut rng);
        let n = idx.len() as f64;
        let (nv, nt) = (
            (validation * n).round() as usize,
            (test * n).round() as usize,
        );
        va.extend_from_slice(&idx[..nv.min(idx.len())]);
        te.extend_from_slice(&idx[nv.min(idx.len())..(nv + nt).min(idx.len())]);
        tr.extend_from_slice(&idx[(nv + nt).min(idx.len())..]);
    }
    let mut part = |mut idx: Vec<usize>| {
        idx.shuffle(&mut rng);
        DigitsPart {
            inputs: inputs.select(Axis(0), &idx),
            labels: idx.iter().map(|&i| labels[i]).collect(),
        }
    };
    Ok(DigitsSplit {
        train: part(tr),
        validation: part(va),
        test: part(te),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_digits_load_and_split_stratified() {
        let d = Digits::load_bundled().unwrap();
        assert_eq!(d.inputs.dim(), (1797, 64));
        assert!(d.inputs.iter().all(|&v| (0.0..=1.0).contains(&v)));
        let counts = |labels: &[usize]| {
            let mut c = [0usize; 10];
            labels.iter().for_each(|&l| c[l] += 1);
            c
        };
        // scikit-learn's digits: 178, 182, 177, 183, 181, 182, 181, 179, 174, 180 per class.
        assert_eq!(
            counts(&d.labels),
            [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
        );
        let s = d.split(0.15, 0.2, 1).unwrap();
        let (tr, te) = (counts(&s.train.labels), counts(&s.test.labels));
        for c in 0..10 {
            let n = counts(&d.labels)[c] as f64;
            assert_eq!(te[c], (0.2 * n).round() as usize, "class {c} is stratified");
            assert!(tr[c] > 0);
        }
        assert_eq!(s, d.split(0.15, 0.2, 1).unwrap(), "seeded");
        assert_ne!(s.train.labels, d.split(0.15, 0.2, 2).unwrap().train.labels);
        assert!(d.split(0.5, 0.5, 0).is_err());
    }
}
