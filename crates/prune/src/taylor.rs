//! First-order Taylor importance: `|w * g|` (Molchanov et al. 2019).

use modelopt_tensor_core::{CoreError, stats::check_finite};
use ndarray::{ArrayD, ArrayRef, Dimension, IxDyn, Zip};

use crate::{PruningCriterion, Result};

/// First-order Taylor criterion: score = `|w * g|`, the estimated change of the loss when the
/// weight is removed, with the loss gradient `g` supplied (same shape as the weights).
///
/// ```
/// use modelopt_prune::{PruningCriterion, Taylor};
/// use ndarray::array;
/// let t = Taylor::new(&array![0.5f32, -4.0])?;
/// assert_eq!(t.scores(&array![2.0f32, 0.5].into_dyn())?, array![1.0f32, 2.0].into_dyn());
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Taylor {
    grad: ArrayD<f32>,
}

impl Taylor {
    /// A Taylor criterion with this gradient. Errors on a non-finite gradient entry.
    ///
    /// ```
    /// assert!(modelopt_prune::Taylor::new(&ndarray::array![f32::NAN]).is_err());
    /// ```
    pub fn new<D: Dimension>(grad: &ArrayRef<f32, D>) -> Result<Self> {
        check_finite(grad)?;
        Ok(Taylor {
            grad: grad.to_owned().into_dyn(),
        })
    }
}

impl PruningCriterion for Taylor {
    fn scores(&self, weights: &ArrayRef<f32, IxDyn>) -> Result<ArrayD<f32>> {
        if weights.shape() != self.grad.shape() {
            return Err(CoreError::ShapeMismatch {
                expected: self.grad.shape().to_vec(),
                found: weights.shape().to_vec(),
            }
            .into());
        }
        Ok(Zip::from(weights)
            .and(&self.grad)
            .map_collect(|&w, &g| (w * g).abs()))
    }
}
