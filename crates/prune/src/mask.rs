//! The binary mask of a pruned tensor: `true` keeps a weight, `false` prunes it.

use modelopt_tensor_core::CoreError;
use ndarray::{ArrayD, ArrayRef, Dimension, IxDyn, Zip};

use crate::Result;

/// A keep/prune mask with the shape of its tensor (`true` = keep), as torch's `weight_mask`.
///
/// ```
/// use modelopt_prune::Mask;
/// use ndarray::array;
/// let m = Mask::from_nonzero(&array![[1.0f32, 0.0], [0.0, 2.0]].into_dyn());
/// assert_eq!(m.sparsity(), 0.5);
/// let w = m.apply(&array![[5.0f32, 6.0], [7.0, 8.0]].into_dyn())?;
/// assert_eq!(w, array![[5.0f32, 0.0], [0.0, 8.0]].into_dyn());
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    keep: ArrayD<bool>,
}

fn same_shape(expected: &[usize], found: &[usize]) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(CoreError::ShapeMismatch {
            expected: expected.to_vec(),
            found: found.to_vec(),
        }
        .into())
    }
}

impl Mask {
    /// A mask that keeps everything.
    ///
    /// ```
    /// assert_eq!(modelopt_prune::Mask::ones(&[2, 3]).num_kept(), 6);
    /// ```
    pub fn ones(shape: &[usize]) -> Self {
        Mask {
            keep: ArrayD::from_elem(IxDyn(shape), true),
        }
    }

    /// Wraps a boolean array (`true` = keep).
    ///
    /// ```
    /// use ndarray::array;
    /// let m = modelopt_prune::Mask::from_keep(array![true, false].into_dyn());
    /// assert_eq!(m.num_pruned(), 1);
    /// ```
    pub fn from_keep(keep: ArrayD<bool>) -> Self {
        Mask { keep }
    }

    /// The mask of a tensor whose exact zeros count as pruned (how a pruned checkpoint is read
    /// back, so that pruning it again composes as torch does).
    ///
    /// ```
    /// use ndarray::array;
    /// let m = modelopt_prune::Mask::from_nonzero(&array![0.0f32, -0.0, 3.0].into_dyn());
    /// assert_eq!(m.num_kept(), 1);
    /// ```
    pub fn from_nonzero<D: Dimension>(weights: &ArrayRef<f32, D>) -> Self {
        Mask {
            keep: weights.map(|&x| x != 0.0).into_dyn(),
        }
    }

    /// The boolean array (`true` = keep).
    ///
    /// ```
    /// assert!(modelopt_prune::Mask::ones(&[1]).keep()[[0]]);
    /// ```
    pub fn keep(&self) -> &ArrayD<bool> {
        &self.keep
    }

    /// The mask as 1 (keep) / 0 (pruned) bytes, torch's `weight_mask` convention.
    ///
    /// ```
    /// assert_eq!(modelopt_prune::Mask::ones(&[2]).to_u8().sum(), 2);
    /// ```
    pub fn to_u8(&self) -> ArrayD<u8> {
        self.keep.mapv(u8::from)
    }

    /// Shape of the masked tensor.
    ///
    /// ```
    /// assert_eq!(modelopt_prune::Mask::ones(&[2, 3]).shape(), &[2, 3]);
    /// ```
    pub fn shape(&self) -> &[usize] {
        self.keep.shape()
    }

    /// Number of elements.
    ///
    /// ```
    /// assert_eq!(modelopt_prune::Mask::ones(&[2, 3]).len(), 6);
    /// ```
    pub fn len(&self) -> usize {
        self.keep.len()
    }

    /// True for a mask over no elements.
    ///
    /// ```
    /// assert!(modelopt_prune::Mask::ones(&[0]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.keep.is_empty()
    }

    /// Number of kept elements.
    ///
    /// ```
    /// assert_eq!(modelopt_prune::Mask::ones(&[4]).num_kept(), 4);
    /// ```
    pub fn num_kept(&self) -> usize {
        match self.keep.as_slice_memory_order() {
            Some(s) => s.iter().map(|&k| usize::from(k)).sum(),
            None => self.keep.iter().filter(|&&k| k).count(),
        }
    }

    /// Number of pruned elements.
    ///
    /// ```
    /// assert_eq!(modelopt_prune::Mask::ones(&[4]).num_pruned(), 0);
    /// ```
    pub fn num_pruned(&self) -> usize {
        self.len() - self.num_kept()
    }

    /// Fraction of pruned elements (0 for an empty mask).
    ///
    /// ```
    /// assert_eq!(modelopt_prune::Mask::ones(&[4]).sparsity(), 0.0);
    /// ```
    pub fn sparsity(&self) -> f64 {
        if self.is_empty() {
            0.0
        } else {
            self.num_pruned() as f64 / self.len() as f64
        }
    }

    /// The masked copy of `weights` (pruned elements set to zero). Errors on a shape mismatch.
    ///
    /// ```
    /// use ndarray::array;
    /// let m = modelopt_prune::Mask::from_keep(array![true, false].into_dyn());
    /// assert_eq!(m.apply(&array![3.0f32, 4.0].into_dyn())?, array![3.0f32, 0.0].into_dyn());
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn apply<D: Dimension>(&self, weights: &ArrayRef<f32, D>) -> Result<ArrayD<f32>> {
        let mut out = weights.to_owned().into_dyn();
        self.apply_inplace(&mut out)?;
        Ok(out)
    }

    /// Sets the pruned elements of `weights` to zero in place. Errors on a shape mismatch.
    ///
    /// ```
    /// use ndarray::array;
    /// let m = modelopt_prune::Mask::from_keep(array![false, true].into_dyn());
    /// let mut w = array![3.0f32, 4.0].into_dyn();
    /// m.apply_inplace(&mut w)?;
    /// assert_eq!(w, array![0.0f32, 4.0].into_dyn());
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn apply_inplace(&self, weights: &mut ArrayRef<f32, IxDyn>) -> Result<()> {
        same_shape(self.shape(), weights.shape())?;
        Zip::from(weights).and(&self.keep).for_each(|w, &k| {
            if !k {
                *w = 0.0;
            }
        });
        Ok(())
    }

    /// The intersection (logical AND): kept only where both masks keep.
    ///
    /// ```
    /// use modelopt_prune::Mask;
    /// use ndarray::array;
    /// let a = Mask::from_keep(array![true, true, false].into_dyn());
    /// let b = Mask::from_keep(array![true, false, true].into_dyn());
    /// assert_eq!(a.combine(&b)?.keep(), &array![true, false, false].into_dyn());
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn combine(&self, other: &Mask) -> Result<Mask> {
        same_shape(self.shape(), other.shape())?;
        let mut keep = self.keep.clone();
        Zip::from(&mut keep)
            .and(&other.keep)
            .for_each(|a, &b| *a = *a && b);
        Ok(Mask { keep })
    }
}
