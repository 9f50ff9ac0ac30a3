//! A parameter under a pruning mask, for fine-tuning (torch's `weight_orig` + `weight_mask`).

use modelopt_tensor_core::{CoreError, stats::check_finite};
use ndarray::{ArrayD, ArrayRef, Dimension, IxDyn};

use crate::{Mask, Pruner, Result};

/// A weight tensor kept with its mask: every update is followed by re-applying the mask, so
/// pruned weights stay zero during fine-tuning; [`MaskedParameter::remove`] bakes the zeros in
/// and returns a plain tensor (torch's `prune.remove`).
///
/// ```
/// use modelopt_prune::{Amount, L1Magnitude, MaskedParameter, Pruner};
/// use ndarray::array;
/// let mut p = MaskedParameter::new(&array![1.0f32, -3.0, 0.5, 2.0])?;
/// p.prune(&Pruner::new(L1Magnitude).amount(Amount::count(2)))?;
/// p.update(|w| w.mapv_inplace(|x| x + 1.0))?; // an optimizer step
/// assert_eq!(p.weight(), &array![0.0f32, -2.0, 0.0, 3.0].into_dyn());
/// let baked = p.remove();
/// assert_eq!(baked[2], 0.0);
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MaskedParameter {
    weight: ArrayD<f32>,
    mask: Mask,
}

impl MaskedParameter {
    /// Wraps a tensor with an all-keep mask. Errors on non-finite values.
    ///
    /// ```
    /// assert!(modelopt_prune::MaskedParameter::new(&ndarray::array![f32::INFINITY]).is_err());
    /// ```
    pub fn new<D: Dimension>(weight: &ArrayRef<f32, D>) -> Result<Self> {
        check_finite(weight)?;
        Ok(MaskedParameter {
            weight: weight.to_owned().into_dyn(),
            mask: Mask::ones(weight.shape()),
        })
    }

    /// Wraps a tensor with a given mask (applied at once). Errors on a shape mismatch.
    ///
    /// ```
    /// use modelopt_prune::{Mask, MaskedParameter};
    /// use ndarray::array;
    /// let p = MaskedParameter::with_mask(&array![1.0f32, 2.0], Mask::from_keep(array![true, false].into_dyn()))?;
    /// assert_eq!(p.weight()[1], 0.0);
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn with_mask<D: Dimension>(weight: &ArrayRef<f32, D>, mask: Mask) -> Result<Self> {
        let mut p = Self::new(weight)?;
        p.set_mask(mask)?;
        Ok(p)
    }

    /// The masked weight.
    ///
    /// ```
    /// let p = modelopt_prune::MaskedParameter::new(&ndarray::array![1.0f32])?;
    /// assert_eq!(p.weight()[0], 1.0);
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn weight(&self) -> &ArrayD<f32> {
        &self.weight
    }

    /// The current mask.
    ///
    /// ```
    /// let p = modelopt_prune::MaskedParameter::new(&ndarray::array![1.0f32])?;
    /// assert_eq!(p.mask().sparsity(), 0.0);
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn mask(&self) -> &Mask {
        &self.mask
    }

    /// Replaces the mask by `mask` AND the current one, and applies it.
    ///
    /// ```
    /// use modelopt_prune::{Mask, MaskedParameter};
    /// use ndarray::array;
    /// let mut p = MaskedParameter::new(&array![1.0f32, 2.0])?;
    /// p.set_mask(Mask::from_keep(array![false, true].into_dyn()))?;
    /// assert_eq!(p.mask().num_pruned(), 1);
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn set_mask(&mut self, mask: Mask) -> Result<()> {
        self.mask = self.mask.combine(&mask)?;
        self.mask.apply_inplace(&mut self.weight)
    }

    /// Prunes again with `pruner`, composing with the current mask (torch's `PruningContainer`).
    ///
    /// ```
    /// use modelopt_prune::{Amount, L1Magnitude, MaskedParameter, Pruner};
    /// let mut p = MaskedParameter::new(&ndarray::array![1.0f32, 2.0, 3.0, 4.0])?;
    /// let half = Pruner::new(L1Magnitude).amount(Amount::fraction(0.5)?);
    /// p.prune(&half)?;
    /// p.prune(&half)?;
    /// assert_eq!(p.mask().num_kept(), 1);
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn prune(&mut self, pruner: &Pruner) -> Result<()> {
        let m = pruner.prune_again(&self.weight, &self.mask)?;
        self.set_mask(m)
    }

    /// Runs an update on the weight (e.g. an optimizer step), then re-applies the mask.
    /// Errors if the update changed the shape or produced a non-finite value.
    ///
    /// ```
    /// use modelopt_prune::{Mask, MaskedParameter};
    /// use ndarray::array;
    /// let mut p = MaskedParameter::with_mask(&array![1.0f32, 2.0], Mask::from_keep(array![false, true].into_dyn()))?;
    /// p.update(|w| w.fill(9.0))?;
    /// assert_eq!(p.weight(), &array![0.0f32, 9.0].into_dyn());
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn update(&mut self, f: impl FnOnce(&mut ArrayD<f32>)) -> Result<()> {
        f(&mut self.weight);
        if self.weight.shape() != self.mask.shape() {
            return Err(CoreError::ShapeMismatch {
                expected: self.mask.shape().to_vec(),
                found: self.weight.shape().to_vec(),
            }
            .into());
        }
        check_finite(&self.weight)?;
        self.mask.apply_inplace(&mut self.weight)
    }

    /// Bakes the zeros in: the masked weight as a plain tensor.
    ///
    /// ```
    /// let p = modelopt_prune::MaskedParameter::new(&ndarray::array![1.0f32])?;
    /// assert_eq!(p.remove()[0], 1.0);
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn remove(self) -> ArrayD<f32> {
        self.weight
    }

    /// The masked weight as a view of type `IxDyn` (for kernels that read it).
    ///
    /// ```
    /// let p = modelopt_prune::MaskedParameter::new(&ndarray::array![1.0f32])?;
    /// assert_eq!(p.view().len(), 1);
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn view(&self) -> ndarray::ArrayViewD<'_, f32> {
        self.weight.view()
    }
}

impl AsRef<ArrayRef<f32, IxDyn>> for MaskedParameter {
    fn as_ref(&self) -> &ArrayRef<f32, IxDyn> {
        &self.weight
    }
}
