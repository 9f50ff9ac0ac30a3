//! Wanda: weights times input-activation norms (Sun et al. 2023).

use modelopt_tensor_core::{CoreError, stats::check_finite};
use ndarray::{Array1, ArrayD, ArrayRef, ArrayRef2, Axis, IxDyn};

use crate::{PruningCriterion, Result};

/// Wanda criterion: score of `W[i, j]` = `|W[i, j]| * ||X_j||_2`, where `X_j` is input feature
/// `j` over all calibration tokens. Weights are `[out, in]` (the input axis is the last axis).
///
/// Wanda's paper compares weights within each output row; use `Structure::NM` or a row-wise
/// loop for that; with `Unstructured` the whole tensor is ranked together.
///
/// ```
/// use modelopt_prune::{PruningCriterion, Wanda};
/// use ndarray::array;
/// // Two tokens of two features: ||X_0|| = 5, ||X_1|| = 0.
/// let wanda = Wanda::from_activations(&array![[3.0f32, 0.0], [4.0, 0.0]])?;
/// let s = wanda.scores(&array![[1.0f32, 9.0]].into_dyn())?;
/// assert_eq!(s, array![[5.0f32, 0.0]].into_dyn());
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Wanda {
    norms: Array1<f32>,
}

impl Wanda {
    /// Wanda with per-input-feature L2 norms supplied. Errors on a negative or non-finite norm.
    ///
    /// ```
    /// assert!(modelopt_prune::Wanda::from_norms(ndarray::array![1.0f32, -1.0]).is_err());
    /// ```
    pub fn from_norms(norms: Array1<f32>) -> Result<Self> {
        check_finite(&norms)?;
        if let Some(j) = norms.iter().position(|&n| n < 0.0) {
            return Err(
                CoreError::invalid("norms", format!("norm of feature {j} is negative")).into(),
            );
        }
        Ok(Wanda { norms })
    }

    /// Wanda from one batch of activations `[tokens, in]`.
    ///
    /// ```
    /// let w = modelopt_prune::Wanda::from_activations(&ndarray::array![[3.0f32], [4.0]])?;
    /// assert_eq!(w.norms()[0], 5.0);
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn from_activations(x: &ArrayRef2<f32>) -> Result<Self> {
        let mut acc = WandaAccumulator::new(x.ncols());
        acc.add_batch(x)?;
        acc.finish()
    }

    /// The per-input-feature norms `||X_j||_2`.
    ///
    /// ```
    /// let w = modelopt_prune::Wanda::from_norms(ndarray::array![2.0f32])?;
    /// assert_eq!(w.norms().len(), 1);
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn norms(&self) -> &Array1<f32> {
        &self.norms
    }
}

impl PruningCriterion for Wanda {
    fn scores(&self, weights: &ArrayRef<f32, IxDyn>) -> Result<ArrayD<f32>> {
        let last = weights.ndim().checked_sub(1).ok_or(CoreError::Empty {
            what: "Wanda weights (0-d)",
        })?;
        if weights.shape()[last] != self.norms.len() {
            let mut expected = weights.shape().to_vec();
            expected[last] = self.norms.len();
            return Err(CoreError::ShapeMismatch {
                expected,
                found: weights.shape().to_vec(),
            }
            .into());
        }
        let mut s = weights.mapv(f32::abs);
        for mut lane in s.lanes_mut(Axis(last)) {
            lane.iter_mut().zip(&self.norms).for_each(|(x, n)| *x *= n);
        }
        Ok(s)
    }
}

/// Accumulates `sum_t X[t, j]^2` over activation batches (f64), for [`Wanda`].
///
/// ```
/// use modelopt_prune::WandaAccumulator;
/// use ndarray::array;
/// let mut acc = WandaAccumulator::new(1);
/// acc.add_batch(&array![[3.0f32]])?;
/// acc.add_batch(&array![[4.0f32]])?;
/// assert_eq!(acc.finish()?.norms()[0], 5.0);
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct WandaAccumulator {
    sum_sq: Vec<f64>,
    tokens: usize,
}

impl WandaAccumulator {
    /// An accumulator for `in_features` input features.
    ///
    /// ```
    /// let _ = modelopt_prune::WandaAccumulator::new(768);
    /// ```
    pub fn new(in_features: usize) -> Self {
        WandaAccumulator {
            sum_sq: vec![0.0; in_features],
            tokens: 0,
        }
    }

    /// Adds a batch `[tokens, in_features]`. Errors on a width mismatch or a non-finite value.
    ///
    /// ```
    /// let mut acc = modelopt_prune::WandaAccumulator::new(2);
    /// assert!(acc.add_batch(&ndarray::array![[1.0f32]]).is_err());
    /// ```
    pub fn add_batch(&mut self, x: &ArrayRef2<f32>) -> Result<()> {
        if x.ncols() != self.sum_sq.len() {
            return Err(CoreError::ShapeMismatch {
                expected: vec![x.nrows(), self.sum_sq.len()],
                found: x.shape().to_vec(),
            }
            .into());
        }
        check_finite(x)?;
        for row in x.rows() {
            self.sum_sq
                .iter_mut()
                .zip(row)
                .for_each(|(a, &v)| *a += f64::from(v) * f64::from(v));
        }
        self.tokens += x.nrows();
        Ok(())
    }

    /// The criterion from the norms seen so far. Errors if no token was added.
    ///
    /// ```
    /// assert!(modelopt_prune::WandaAccumulator::new(3).finish().is_err());
    /// ```
    pub fn finish(&self) -> Result<Wanda> {
        if self.tokens == 0 {
            return Err(CoreError::Empty {
                what: "Wanda activations",
            }
            .into());
        }
        Wanda::from_norms(self.sum_sq.iter().map(|&s| s.sqrt() as f32).collect())
    }
}

/// Wanda for a whole model: one [`Wanda`] per weight, by the weight's name (e.g. the inputs of
/// every linear layer of a BERT collected with an activation hook). Through
/// [`Pruner::prune_named`](crate::Pruner::prune_named) each tensor is scored with its own
/// norms; a tensor without norms is an error (leave it out of the pruned set).
///
/// ```
/// use modelopt_prune::{PruningCriterion, Wanda, WandaByName};
/// let c = WandaByName::new([("fc.weight".to_string(), Wanda::from_norms(ndarray::array![1.0f32, 2.0])?)].into());
/// assert!(c.for_tensor("fc.weight").is_some());
/// assert!(c.scores(&ndarray::array![[1.0f32, 1.0]].into_dyn()).is_err()); // which tensor?
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WandaByName {
    by_name: std::collections::BTreeMap<String, Wanda>,
}

impl WandaByName {
    /// From per-weight criteria.
    pub fn new(by_name: std::collections::BTreeMap<String, Wanda>) -> Self {
        WandaByName { by_name }
    }

    /// Whether `name` has norms.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }
}

impl PruningCriterion for WandaByName {
    fn scores(&self, _weights: &ArrayRef<f32, IxDyn>) -> Result<ArrayD<f32>> {
        Err(CoreError::invalid(
            "criterion",
            "Wanda needs the tensor's name to find its input norms (use prune_named)",
        )
        .into())
    }

    fn for_tensor(&self, name: &str) -> Option<Box<dyn PruningCriterion>> {
        self.by_name
            .get(name)
            .map(|w| Box::new(w.clone()) as Box<dyn PruningCriterion>)
    }
}
