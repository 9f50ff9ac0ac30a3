//! The [`PruningCriterion`] trait and the magnitude and random criteria.

use ndarray::{ArrayD, ArrayRef, IxDyn};

use crate::Result;

/// Maps a weight tensor to same-shape importance scores: low scores are pruned first.
///
/// One required method; object-safe, so `Box<dyn PruningCriterion>` works and a [`crate::Pruner`]
/// takes any criterion, built in or your own. Scores must be finite (the pruner checks and names
/// the first bad index) and have the weights' shape.
///
/// ```
/// use modelopt_prune::{Amount, PruningCriterion, Pruner, Result};
/// use ndarray::{array, ArrayD, ArrayRef, IxDyn};
///
/// /// |w| scaled by a per-row factor (rows = axis 0).
/// struct RowScaled(Vec<f32>);
/// impl PruningCriterion for RowScaled {
///     fn scores(&self, w: &ArrayRef<f32, IxDyn>) -> Result<ArrayD<f32>> {
///         let mut s = w.mapv(f32::abs);
///         for (mut row, f) in s.outer_iter_mut().zip(&self.0) {
///             row *= *f;
///         }
///         Ok(s)
///     }
/// }
///
/// let crit: Box<dyn PruningCriterion> = Box::new(RowScaled(vec![1.0, 10.0]));
/// let w = array![[1.0f32, 2.0], [0.5, 0.6]].into_dyn();
/// let mask = Pruner::boxed(crit).amount(Amount::count(2)).prune(&w)?;
/// // Row 1 is worth 10x: its 0.5 (score 5) outranks row 0's 1.0 and 2.0.
/// assert_eq!(mask.to_u8(), array![[0u8, 0], [1, 1]].into_dyn());
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
pub trait PruningCriterion: Send + Sync {
    /// The importance of each weight (same shape as `weights`).
    fn scores(&self, weights: &ArrayRef<f32, IxDyn>) -> Result<ArrayD<f32>>;

    /// True only if `scores(w)` is exactly `|w|`. The pruner then ranks the weights' bit
    /// patterns directly instead of materialising scores (a speed hint; the default is `false`).
    fn is_abs_magnitude(&self) -> bool {
        false
    }

    /// The criterion to score the tensor called `name` with, when
    /// [`crate::Pruner::prune_named`] prunes a named set (either scope); `None` (the default)
    /// means `self`. [`RandomScores`] answers with a seed derived from its own and the name
    /// ([`RandomScores::seed_for`]), so tensors of the same shape get different scores.
    ///
    /// ```
    /// use modelopt_prune::{L1Magnitude, PruningCriterion, RandomScores};
    /// use ndarray::Array2;
    /// assert!(L1Magnitude.for_tensor("fc.weight").is_none());
    /// let w = Array2::<f32>::zeros((2, 3)).into_dyn();
    /// let r = RandomScores::new(1);
    /// let a = r.for_tensor("a.weight").unwrap().scores(&w)?;
    /// let b = r.for_tensor("b.weight").unwrap().scores(&w)?;
    /// assert_ne!(a, b);
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    fn for_tensor(&self, name: &str) -> Option<Box<dyn PruningCriterion>> {
        let _ = name;
        None
    }
}

impl<C: PruningCriterion + ?Sized> PruningCriterion for Box<C> {
    fn scores(&self, weights: &ArrayRef<f32, IxDyn>) -> Result<ArrayD<f32>> {
        (**self).scores(weights)
    }
    fn is_abs_magnitude(&self) -> bool {
        (**self).is_abs_magnitude()
    }
    fn for_tensor(&self, name: &str) -> Option<Box<dyn PruningCriterion>> {
        (**self).for_tensor(name)
    }
}

/// L1 magnitude: score = `|w|` (torch's `l1_unstructured`; with channels, `ln_structured`).
///
/// ```
/// use modelopt_prune::{L1Magnitude, PruningCriterion};
/// use ndarray::array;
/// let s = L1Magnitude.scores(&array![-2.0f32, 1.0].into_dyn())?;
/// assert_eq!(s, array![2.0f32, 1.0].into_dyn());
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct L1Magnitude;

impl PruningCriterion for L1Magnitude {
    fn scores(&self, weights: &ArrayRef<f32, IxDyn>) -> Result<ArrayD<f32>> {
        Ok(weights.mapv(f32::abs))
    }
    fn is_abs_magnitude(&self) -> bool {
        true
    }
}

/// L2 (squared) magnitude: score = `w * w`.
///
/// ```
/// use modelopt_prune::{L2Magnitude, PruningCriterion};
/// use ndarray::array;
/// let s = L2Magnitude.scores(&array![-2.0f32, 1.0].into_dyn())?;
/// assert_eq!(s, array![4.0f32, 1.0].into_dyn());
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct L2Magnitude;

impl PruningCriterion for L2Magnitude {
    fn scores(&self, weights: &ArrayRef<f32, IxDyn>) -> Result<ArrayD<f32>> {
        Ok(weights.mapv(|x| x * x))
    }
}

/// Random scores in `[0, 1)` from a seeded SplitMix64 stream in row-major order: the same seed
/// and shape give the same scores on every platform and version (torch's `random_unstructured`
/// draws from its global generator instead). Through [`crate::Pruner::prune_named`] or a
/// [`crate::shrink::Shrinker`], each tensor uses its own seed, [`RandomScores::seed_for`] its name.
///
/// ```
/// use modelopt_prune::{PruningCriterion, RandomScores};
/// use ndarray::Array2;
/// let w = Array2::<f32>::zeros((3, 4)).into_dyn();
/// assert_eq!(RandomScores::new(7).scores(&w)?, RandomScores::new(7).scores(&w)?);
/// assert_ne!(RandomScores::new(7).scores(&w)?, RandomScores::new(8).scores(&w)?);
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomScores {
    seed: u64,
}

impl RandomScores {
    /// Random scores from `seed`.
    ///
    /// ```
    /// let _ = modelopt_prune::RandomScores::new(42);
    /// ```
    pub fn new(seed: u64) -> Self {
        RandomScores { seed }
    }

    /// The seed of the tensor called `name` under `seed` (what
    /// [`PruningCriterion::for_tensor`] uses): FNV-1a 64 over the 8 little-endian bytes of
    /// `seed` followed by the UTF-8 bytes of `name`. Written out here, not `std`'s hasher, so
    /// it stays the same on every platform and Rust version.
    ///
    /// ```
    /// use modelopt_prune::RandomScores;
    /// assert_eq!(RandomScores::seed_for(3, "fc.weight"), RandomScores::seed_for(3, "fc.weight"));
    /// assert_ne!(RandomScores::seed_for(3, "fc.weight"), RandomScores::seed_for(3, "fc.bias"));
    /// assert_ne!(RandomScores::seed_for(3, "fc.weight"), RandomScores::seed_for(4, "fc.weight"));
    /// ```
    pub fn seed_for(seed: u64, name: &str) -> u64 {
        fnv1a64(seed.to_le_bytes().iter().chain(name.as_bytes()))
    }
}

/// FNV-1a, 64 bits (Fowler, Noll, Vo).
fn fnv1a64<'a>(bytes: impl IntoIterator<Item = &'a u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl PruningCriterion for RandomScores {
    fn scores(&self, weights: &ArrayRef<f32, IxDyn>) -> Result<ArrayD<f32>> {
        let mut state = self.seed;
        let mut out = ArrayD::zeros(weights.raw_dim());
        for s in out.iter_mut() {
            // SplitMix64 (Steele, Lea & Flood 2014); 24 high bits -> uniform f32 in [0, 1).
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            *s = (z >> 40) as f32 / (1u64 << 24) as f32;
        }
        Ok(out)
    }

    fn for_tensor(&self, name: &str) -> Option<Box<dyn PruningCriterion>> {
        Some(Box::new(RandomScores::new(Self::seed_for(self.seed, name))))
    }
}

/// Builds a built-in criterion by its command-line name: `l1`, `l2` or `random` (seeded).
///
/// ```
/// let c = modelopt_prune::criterion_by_name("l1", 0)?;
/// assert!(c.is_abs_magnitude());
/// assert!(modelopt_prune::criterion_by_name("l3", 0).is_err());
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
pub fn criterion_by_name(name: &str, seed: u64) -> Result<Box<dyn PruningCriterion>> {
    match name {
        "l1" => Ok(Box::new(L1Magnitude)),
        "l2" => Ok(Box::new(L2Magnitude)),
        "random" => Ok(Box::new(RandomScores::new(seed))),
        other => Err(modelopt_tensor_core::CoreError::invalid(
            "criterion",
            format!("expected l1, l2 or random, got `{other}`"),
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::fnv1a64;

    #[test]
    fn fnv1a64_matches_the_published_test_vectors() {
        // From the FNV reference test suite (isthe.com/chongo/tech/comp/fnv).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
