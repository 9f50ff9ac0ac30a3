//! [`Pruner`]: a criterion, an amount and a structure, applied to one tensor or many.

use modelopt_tensor_core::{CoreError, stats::check_finite};
use ndarray::{ArrayD, ArrayRef, ArrayViewD, CowArray, Dimension, IxDyn};

use crate::channels::{alive_channels, channel_norms, expand, keep_channels};
use crate::groups::{block_keep, nm_keep};
use crate::select::{Segment, abs_key, ordered_key, prune_lowest};
use crate::{Amount, Mask, Norm, PruneError, PruningCriterion, Result, Structure};

/// Whether tensors are ranked one by one or all together.
///
/// ```
/// assert_eq!(modelopt_prune::Scope::default(), modelopt_prune::Scope::Local);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// Each tensor pruned by the amount on its own.
    #[default]
    Local,
    /// All tensors' weights ranked together (torch's `global_unstructured`; unstructured only).
    Global,
}

/// Prunes tensors: a [`PruningCriterion`] scores the weights, the [`Structure`] groups them into
/// units, and the [`Amount`] says how many of the units still unpruned to remove.
///
/// Defaults of [`Pruner::new`]: amount `Fraction(0.5)`, `Structure::Unstructured`.
///
/// Ties between equal scores are broken deterministically: the lower score is pruned first,
/// then the lower position (row-major flat index; for global scope, tensor order then flat
/// index; for channels and blocks, the lower unit index).
///
/// ```
/// use modelopt_prune::{Amount, L1Magnitude, Pruner};
/// use ndarray::array;
/// let w = array![[0.1f32, -2.0], [0.3, 4.0]];
/// let mask = Pruner::new(L1Magnitude).amount(Amount::fraction(0.5)?).prune(&w)?;
/// assert_eq!(mask.to_u8(), array![[0u8, 1], [0, 1]].into_dyn());
/// // Pruning again takes half of what remains, as torch's PruningContainer.
/// let again = Pruner::new(L1Magnitude).amount(Amount::fraction(0.5)?).prune_again(&w, &mask)?;
/// assert_eq!(again.num_kept(), 1);
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
pub struct Pruner {
    criterion: Box<dyn PruningCriterion>,
    amount: Amount,
    structure: Structure,
}

impl std::fmt::Debug for Pruner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pruner")
            .field("amount", &self.amount)
            .field("structure", &self.structure)
            .finish_non_exhaustive()
    }
}

impl Pruner {
    /// A pruner with this criterion (amount 0.5, unstructured).
    ///
    /// ```
    /// let _ = modelopt_prune::Pruner::new(modelopt_prune::L2Magnitude);
    /// ```
    pub fn new(criterion: impl PruningCriterion + 'static) -> Self {
        Self::boxed(Box::new(criterion))
    }

    /// A pruner with a boxed criterion (e.g. chosen at run time).
    ///
    /// ```
    /// let c = modelopt_prune::criterion_by_name("random", 3)?;
    /// let _ = modelopt_prune::Pruner::boxed(c);
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn boxed(criterion: Box<dyn PruningCriterion>) -> Self {
        Pruner {
            criterion,
            amount: Amount::Fraction(0.5),
            structure: Structure::Unstructured,
        }
    }

    /// Sets the amount (already validated by its constructor).
    ///
    /// ```
    /// use modelopt_prune::{Amount, L1Magnitude, Pruner};
    /// let _ = Pruner::new(L1Magnitude).amount(Amount::count(10));
    /// ```
    pub fn amount(mut self, amount: Amount) -> Self {
        self.amount = amount;
        self
    }

    /// Sets the structure (already validated by its constructor).
    ///
    /// ```
    /// use modelopt_prune::{L1Magnitude, Norm, Pruner, Structure};
    /// let _ = Pruner::new(L1Magnitude).structure(Structure::channels(0, Norm::L2));
    /// ```
    pub fn structure(mut self, structure: Structure) -> Self {
        self.structure = structure;
        self
    }

    /// The mask that prunes `weights` from scratch.
    ///
    /// Errors: non-finite weight or score (naming the index), empty tensor, bad axis, a count
    /// above the number of units, N:M or block sides that do not divide the dims.
    ///
    /// ```
    /// use modelopt_prune::{L1Magnitude, Pruner};
    /// let e = Pruner::new(L1Magnitude).prune(&ndarray::array![1.0f32, f32::NAN]).unwrap_err();
    /// assert!(e.to_string().contains("flat index 1"));
    /// ```
    pub fn prune<D: Dimension>(&self, weights: &ArrayRef<f32, D>) -> Result<Mask> {
        self.prune_impl(weights.view().into_dyn(), None)
    }

    /// Prunes again on top of `prior`: the amount applies to the units `prior` left (torch's
    /// `PruningContainer`); the result is `prior` AND the new mask. Scores are computed on the
    /// masked weights, as torch does on a pruned module.
    ///
    /// ```
    /// use modelopt_prune::{Amount, L1Magnitude, Mask, Pruner};
    /// use ndarray::array;
    /// let w = array![1.0f32, 2.0, 3.0, 4.0];
    /// let prior = Mask::from_keep(array![false, true, true, true].into_dyn());
    /// let m = Pruner::new(L1Magnitude).amount(Amount::count(1)).prune_again(&w, &prior)?;
    /// assert_eq!(m.to_u8(), array![0u8, 0, 1, 1].into_dyn());
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn prune_again<D: Dimension>(
        &self,
        weights: &ArrayRef<f32, D>,
        prior: &Mask,
    ) -> Result<Mask> {
        self.prune_impl(weights.view().into_dyn(), Some(prior))
    }

    /// Prunes `weights` whose exact zeros count as already pruned (a checkpoint read back from
    /// disk): the same mask as [`Pruner::prune_again`] with [`Mask::from_nonzero`] as the prior,
    /// so a second run on a pruned file composes as torch's `PruningContainer`. For `|w|`
    /// criteria on unstructured weights the zeros are the lowest scores anyway, so this prunes
    /// `zeros + k` from scratch in the fast path, without building the prior mask.
    ///
    /// ```
    /// use modelopt_prune::{Amount, L1Magnitude, Mask, Pruner};
    /// use ndarray::array;
    /// let w = array![0.0f32, 4.0, -1.0, 0.0, 3.0, 2.0];
    /// let p = Pruner::new(L1Magnitude).amount(Amount::fraction(0.5)?);
    /// let m = p.prune_composed(&w)?;
    /// assert_eq!(m.to_u8(), array![0u8, 1, 0, 0, 1, 0].into_dyn()); // 4 left, 2 more pruned
    /// assert_eq!(m, p.prune_again(&w, &Mask::from_nonzero(&w))?);
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn prune_composed<D: Dimension>(&self, weights: &ArrayRef<f32, D>) -> Result<Mask> {
        let w = weights.view().into_dyn();
        let zeros = count_zeros(&w);
        if zeros == 0 {
            return self.prune_impl(w, None);
        }
        if self.structure == Structure::Unstructured && self.criterion.is_abs_magnitude() {
            let n = w.len();
            let k = self.amount.units_to_prune_of(n, n - zeros, "weights")?;
            // Zeros have the lowest key of all (ties among them go first in any case): pruning
            // `zeros + k` from scratch prunes all of them and the same k others.
            return self.prune_impl_amount(w, None, Amount::Count(zeros + k));
        }
        self.prune_impl(w.view(), Some(&Mask::from_nonzero(&w)))
    }

    fn prune_impl(&self, weights: ArrayViewD<'_, f32>, prior: Option<&Mask>) -> Result<Mask> {
        self.prune_impl_amount(weights, prior, self.amount)
    }

    fn prune_impl_amount(
        &self,
        weights: ArrayViewD<'_, f32>,
        prior: Option<&Mask>,
        amount: Amount,
    ) -> Result<Mask> {
        if weights.is_empty() {
            return Err(CoreError::Empty { what: "weights" }.into());
        }
        // L1 unstructured from scratch checks finiteness inside its histogram pass (no extra
        // pass over the weights); every other path checks first.
        let fused_check = matches!(
            self.structure,
            Structure::Unstructured
                | Structure::Channels {
                    norm: Norm::L1 | Norm::L2,
                    ..
                }
        ) && self.criterion.is_abs_magnitude()
            && prior.is_none();
        if !fused_check {
            check_finite(&weights)?;
        }
        if let Some(p) = prior
            && p.shape() != weights.shape()
        {
            return Err(CoreError::ShapeMismatch {
                expected: weights.shape().to_vec(),
                found: p.shape().to_vec(),
            }
            .into());
        }
        let shape = weights.shape().to_vec();
        let w = weights.as_standard_layout();
        let prior_keep = prior.map(|p| p.keep().as_standard_layout());
        let prior_slice = prior_keep.as_ref().and_then(|k| k.as_slice());
        let w_slice = w.as_slice().ok_or(CoreError::Empty { what: "weights" })?; // ok: standard layout
        let keep = match self.structure {
            Structure::Unstructured => {
                let remaining = prior.map_or(w_slice.len(), Mask::num_kept);
                let k = amount.units_to_prune_of(w_slice.len(), remaining, "weights")?;
                let seg_scores;
                if fused_check && k == 0 {
                    check_finite(&w)?;
                }
                let out = if self.criterion.is_abs_magnitude() {
                    prune_lowest(
                        &[Segment {
                            scores: w_slice,
                            keep: prior_slice,
                        }],
                        k,
                        abs_key,
                    )
                } else {
                    seg_scores = self.scores(&w, prior)?;
                    let s = seg_scores
                        .as_slice()
                        .ok_or(CoreError::Empty { what: "scores" })?;
                    prune_lowest(
                        &[Segment {
                            scores: s,
                            keep: prior_slice,
                        }],
                        k,
                        ordered_key,
                    )
                };
                match out {
                    Some(out) => out.into_iter().next().unwrap_or_default(),
                    None => {
                        check_finite(&w)?;
                        return Err(CoreError::invalid("weights", "non-finite value").into());
                    }
                }
            }
            Structure::Channels { axis, norm } => {
                let norms = if fused_check {
                    let norms = channel_norms(w_slice, &shape, axis, norm)?;
                    // L1/L2 sums (f64) of finite f32 are finite: a non-finite norm means a
                    // non-finite weight, located by the full check.
                    if norms.iter().any(|n| !n.is_finite()) {
                        check_finite(&w)?;
                    }
                    norms
                } else {
                    let s = self.scores(&w, prior)?;
                    let s = s.as_slice().ok_or(CoreError::Empty { what: "scores" })?;
                    channel_norms(s, &shape, axis, norm)?
                };
                let alive = alive_channels(prior_slice, &shape, axis)?;
                let ch = keep_channels(&norms, &alive, &amount)?;
                expand(&ch, prior_slice, &shape, axis)?
            }
            Structure::NM { n, m } => {
                let mut keep = prior.map_or_else(
                    || ArrayD::from_elem(IxDyn(&shape), true),
                    |p| p.keep().clone(),
                );
                if self.criterion.is_abs_magnitude() {
                    // |w| ranked directly (the weights were checked finite above); pruned
                    // elements, zeroed in the scores otherwise, are never ranked.
                    nm_keep(w.view(), keep.view_mut(), n, m, true)?;
                } else {
                    let s = self.scores(&w, prior)?;
                    nm_keep(s.view(), keep.view_mut(), n, m, false)?;
                }
                return Ok(Mask::from_keep(keep));
            }
            Structure::Block { rows, cols } => {
                let s = self.scores(&w, prior)?;
                let mut keep = prior.map_or_else(
                    || ArrayD::from_elem(IxDyn(&shape), true),
                    |p| p.keep().clone(),
                );
                block_keep(s.view(), keep.view_mut(), rows, cols, &amount)?;
                return Ok(Mask::from_keep(keep));
            }
        };
        let keep =
            ArrayD::from_shape_vec(IxDyn(&shape), keep).map_err(|_| CoreError::ShapeMismatch {
                expected: shape.clone(),
                found: vec![],
            })?;
        Ok(Mask::from_keep(keep))
    }

    /// Criterion scores of the (masked) weights, in standard layout, checked for shape and NaN.
    fn scores(&self, w: &CowArray<'_, f32, IxDyn>, prior: Option<&Mask>) -> Result<ArrayD<f32>> {
        self.scores_with(&*self.criterion, w, prior)
    }

    /// [`Self::scores`] by `criterion` instead of the pruner's own.
    fn scores_with(
        &self,
        criterion: &dyn PruningCriterion,
        w: &CowArray<'_, f32, IxDyn>,
        prior: Option<&Mask>,
    ) -> Result<ArrayD<f32>> {
        let s = match prior {
            Some(p) => criterion.scores(&p.apply(w)?)?,
            None => criterion.scores(w)?,
        };
        if s.shape() != w.shape() {
            return Err(CoreError::ShapeMismatch {
                expected: w.shape().to_vec(),
                found: s.shape().to_vec(),
            }
            .into());
        }
        check_finite(&s)?;
        Ok(if s.is_standard_layout() {
            s
        } else {
            s.as_standard_layout().into_owned()
        })
    }

    /// Prunes several tensors ranked together (torch's `global_unstructured`): one selection over
    /// all weights, O(total). `priors`, if given, holds one mask per tensor; the amount applies
    /// to what they left. Errors unless the structure is unstructured.
    ///
    /// ```
    /// use modelopt_prune::{Amount, L1Magnitude, Pruner};
    /// use ndarray::array;
    /// let a = array![[1.0f32, 5.0]].into_dyn();
    /// let b = array![2.0f32, 0.5, 6.0].into_dyn();
    /// let masks = Pruner::new(L1Magnitude).amount(Amount::count(2)).prune_global(&[a.view(), b.view()], None)?;
    /// assert_eq!(masks[0].num_pruned() + masks[1].num_pruned(), 2);
    /// assert_eq!(masks[1].to_u8(), array![1u8, 0, 1].into_dyn());
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn prune_global(
        &self,
        tensors: &[ArrayViewD<'_, f32>],
        priors: Option<&[Mask]>,
    ) -> Result<Vec<Mask>> {
        self.prune_global_amount(tensors, priors, self.amount, true, &[])
    }

    /// `per_tensor[i]`, when given, scores tensor `i` instead of the pruner's criterion.
    fn prune_global_amount(
        &self,
        tensors: &[ArrayViewD<'_, f32>],
        priors: Option<&[Mask]>,
        amount: Amount,
        check: bool,
        per_tensor: &[Option<Box<dyn PruningCriterion>>],
    ) -> Result<Vec<Mask>> {
        if self.structure != Structure::Unstructured {
            return Err(CoreError::invalid(
                "scope",
                "global scope ranks single weights only (structure must be unstructured, as in torch)",
            )
            .into());
        }
        if let Some(p) = priors
            && p.len() != tensors.len()
        {
            return Err(CoreError::invalid(
                "priors",
                format!("{} masks for {} tensors", p.len(), tensors.len()),
            )
            .into());
        }
        let mut scores = Vec::with_capacity(tensors.len());
        let mut keeps = Vec::with_capacity(tensors.len());
        for (i, t) in tensors.iter().enumerate() {
            if check {
                check_finite(t)?;
            }
            let prior = priors.map(|p| &p[i]);
            if let Some(p) = prior
                && p.shape() != t.shape()
            {
                return Err(CoreError::ShapeMismatch {
                    expected: t.shape().to_vec(),
                    found: p.shape().to_vec(),
                }
                .into());
            }
            let w = t.as_standard_layout();
            scores.push(if self.criterion.is_abs_magnitude() {
                w
            } else {
                let crit = per_tensor
                    .get(i)
                    .and_then(|c| c.as_deref())
                    .unwrap_or(&*self.criterion);
                CowArray::from(self.scores_with(crit, &w, prior)?)
            });
            keeps.push(prior.map(|p| p.keep().as_standard_layout().into_owned()));
        }
        let total: usize = tensors.iter().map(|t| t.len()).sum();
        if total == 0 {
            return Err(CoreError::Empty { what: "tensors" }.into());
        }
        let remaining: usize = keeps
            .iter()
            .zip(tensors)
            .map(|(k, t)| {
                k.as_ref()
                    .map_or(t.len(), |k| k.iter().filter(|&&x| x).count())
            })
            .sum();
        let k = amount.units_to_prune_of(total, remaining, "weights")?;
        let segs: Vec<Segment<'_>> = scores
            .iter()
            .zip(&keeps)
            .map(|(s, kp)| Segment {
                scores: s.as_slice().unwrap_or(&[]),
                keep: kp.as_ref().and_then(|k| k.as_slice()),
            })
            .collect();
        let out = if self.criterion.is_abs_magnitude() {
            prune_lowest(&segs, k, abs_key)
        } else {
            prune_lowest(&segs, k, ordered_key)
        };
        // Inputs were checked above: a `None` can only come from an infinite score.
        let out =
            out.ok_or_else(|| CoreError::invalid("scores", "an importance score is infinite"))?;
        out.into_iter()
            .zip(tensors)
            .map(|(keep, t)| {
                ArrayD::from_shape_vec(t.raw_dim(), keep)
                    .map(Mask::from_keep)
                    .map_err(|_| {
                        CoreError::ShapeMismatch {
                            expected: t.shape().to_vec(),
                            found: vec![],
                        }
                        .into()
                    })
            })
            .collect()
    }

    /// Prunes a named set of tensors, locally or globally; the entry point for whole checkpoints.
    /// With `zeros_are_pruned`, exact zeros already in a tensor count as pruned (so a second run
    /// on a pruned checkpoint composes as torch does). Errors name the tensor. Each tensor is
    /// scored by the criterion's [`PruningCriterion::for_tensor`] for its name when that gives
    /// one ([`crate::RandomScores`]: a seed per name, so equal shapes get different scores).
    ///
    /// ```
    /// use modelopt_prune::{Amount, L1Magnitude, Pruner, Scope};
    /// use ndarray::array;
    /// let a = array![[0.0f32, 1.0], [2.0, 3.0]].into_dyn();
    /// let masks = Pruner::new(L1Magnitude)
    ///     .amount(Amount::fraction(0.5)?)
    ///     .prune_named(&[("fc.weight", a.view())], Scope::Local, true)?;
    /// // 3 weights remain; round(1.5) = 2 more are pruned.
    /// assert_eq!(masks[0].1.num_kept(), 1);
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn prune_named(
        &self,
        tensors: &[(&str, ArrayViewD<'_, f32>)],
        scope: Scope,
        zeros_are_pruned: bool,
    ) -> Result<Vec<(String, Mask)>> {
        let in_tensor = |name: &str, e: PruneError| PruneError::InTensor {
            name: name.to_string(),
            source: Box::new(e),
        };
        match scope {
            Scope::Local => tensors
                .iter()
                .map(|(name, t)| {
                    let own;
                    let p = match self.criterion.for_tensor(name) {
                        Some(criterion) => {
                            own = Pruner {
                                criterion,
                                amount: self.amount,
                                structure: self.structure,
                            };
                            &own
                        }
                        None => self,
                    };
                    let r = if zeros_are_pruned {
                        p.prune_composed(t)
                    } else {
                        p.prune_impl(t.view(), None)
                    };
                    r.map(|m| (name.to_string(), m))
                        .map_err(|e| in_tensor(name, e))
                })
                .collect(),
            Scope::Global => {
                let views: Vec<ArrayViewD<'_, f32>> =
                    tensors.iter().map(|(_, t)| t.view()).collect();
                let per_tensor: Vec<Option<Box<dyn PruningCriterion>>> = tensors
                    .iter()
                    .map(|(name, _)| self.criterion.for_tensor(name))
                    .collect();
                for (name, t) in tensors {
                    check_finite(t).map_err(|e| in_tensor(name, e.into()))?;
                }
                let zeros: Option<Vec<usize>> =
                    zeros_are_pruned.then(|| views.iter().map(count_zeros).collect());
                let masks = match zeros {
                    Some(z) if z.iter().any(|&z| z > 0) => {
                        if self.structure == Structure::Unstructured
                            && self.criterion.is_abs_magnitude()
                        {
                            // As in `prune_composed`: the zeros are the lowest keys overall.
                            let total: usize = views.iter().map(|v| v.len()).sum();
                            let zeros: usize = z.iter().sum();
                            let k =
                                self.amount
                                    .units_to_prune_of(total, total - zeros, "weights")?;
                            self.prune_global_amount(
                                &views,
                                None,
                                Amount::Count(zeros + k),
                                false,
                                &per_tensor,
                            )?
                        } else {
                            let priors: Vec<Mask> =
                                views.iter().map(|t| Mask::from_nonzero(t)).collect();
                            self.prune_global_amount(
                                &views,
                                Some(&priors),
                                self.amount,
                                false,
                                &per_tensor,
                            )?
                        }
                    }
                    _ => self.prune_global_amount(&views, None, self.amount, false, &per_tensor)?,
                };
                Ok(tensors
                    .iter()
                    .map(|(n, _)| n.to_string())
                    .zip(masks)
                    .collect())
            }
        }
    }
}

/// Exact zeros (`0.0` and `-0.0`) in `w`.
fn count_zeros(w: &ArrayViewD<'_, f32>) -> usize {
    match w.as_slice_memory_order() {
        Some(s) => s.iter().map(|&x| usize::from(x == 0.0)).sum(),
        None => w.iter().filter(|&&x| x == 0.0).count(),
    }
}
