//! Physical shrinking: coupled structured pruning that removes channels from every tensor of a
//! coupling group and returns smaller dense tensors (as Torch-Pruning's dependency groups).
//!
//! A [`CouplingSpec`] names the tensor axes that index the same channels, e.g. for an MLP
//! `fc1.weight:0, fc1.bias:0, fc2.weight:1` (rows of the first layer = its bias entries = the
//! columns of the second). Groups are separated by `;` or new lines. A `*` in a name stands for
//! one dot-free part, matched consistently across a group, so one group written per layer
//! covers every layer ([`CouplingSpec::resolve`]).
//!
//! ```
//! use std::collections::BTreeMap;
//! use modelopt_prune::{shrink::{CouplingSpec, Shrinker}, Amount};
//! use ndarray::{array, ArrayD};
//!
//! let mut t: BTreeMap<String, ArrayD<f32>> = BTreeMap::new();
//! t.insert("fc1.weight".into(), array![[1.0f32, 1.0], [0.1, 0.1], [3.0, 3.0]].into_dyn());
//! t.insert("fc1.bias".into(), array![1.0f32, 0.0, 1.0].into_dyn());
//! t.insert("fc2.weight".into(), array![[1.0f32, 1.0, 1.0]].into_dyn());
//! let spec: CouplingSpec = "fc1.weight:0, fc1.bias:0, fc2.weight:1".parse()?;
//! let out = Shrinker::new(Amount::count(1)).shrink(t, &spec)?;
//! assert_eq!(out.kept[0], vec![0, 2]); // channel 1 had the lowest group norm
//! assert_eq!(out.tensors["fc1.weight"].shape(), &[2, 2]);
//! assert_eq!(out.tensors["fc2.weight"], array![[1.0f32, 1.0]].into_dyn());
//! # Ok::<(), modelopt_prune::PruneError>(())
//! ```

use std::collections::BTreeMap;
use std::str::FromStr;

use modelopt_tensor_core::{CoreError, stats::check_finite};
use ndarray::{ArrayD, Axis};

use crate::channels::channel_norms;
use crate::{Amount, L1Magnitude, Norm, PruneError, PruningCriterion, Result};

/// Tensor axes that move together, one group per set of coupled channels.
///
/// ```
/// let s: modelopt_prune::shrink::CouplingSpec = "a.w:0, a.b:0; b.w:1, c.w:0".parse()?;
/// assert_eq!(s.groups().len(), 2);
/// assert_eq!(s.groups()[0][1], ("a.b".to_string(), 0));
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouplingSpec {
    groups: Vec<Vec<(String, usize)>>,
}

impl CouplingSpec {
    /// The groups, each a list of `(tensor name, axis)`.
    ///
    /// ```
    /// let s: modelopt_prune::shrink::CouplingSpec = "w:0".parse()?;
    /// assert_eq!(s.groups().len(), 1);
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn groups(&self) -> &[Vec<(String, usize)>] {
        &self.groups
    }

    /// Expands the `*` wildcards of the spec against the tensor `names` (in their order), for
    /// specs written once per layer.
    ///
    /// In a member name, `*` stands for a run of one or more characters other than `.` (one
    /// dot-separated part of a name, or a piece of one, such as a layer number). Every member of
    /// a group must hold the same number of `*`. The group's first member is matched against
    /// `names`; for each match, what its `*`s matched is put, in order, into the `*`s of the
    /// other members, and that makes one concrete group. So
    /// `layer.*.fc1.weight:0, layer.*.fc1.bias:0, layer.*.fc2.weight:1` gives one group per layer,
    /// and a layer's `fc2` never pairs with another layer's `fc1`. Groups without `*` are kept
    /// as written.
    ///
    /// Errors: members with different numbers of `*`, a first member that matches no name, or
    /// a substituted member (or a member without `*`) that is not among `names`.
    ///
    /// ```
    /// use modelopt_prune::shrink::CouplingSpec;
    /// let names = ["l.0.a.w", "l.0.a.b", "l.0.c.w", "l.1.a.w", "l.1.a.b", "l.1.c.w", "head.w"];
    /// let spec: CouplingSpec = "l.*.a.w:0, l.*.a.b:0, l.*.c.w:1".parse()?;
    /// let groups = spec.resolve(&names)?;
    /// assert_eq!(groups.groups().len(), 2);
    /// assert_eq!(groups.groups()[1][2], ("l.1.c.w".to_string(), 1));
    /// assert!(spec.resolve(&["head.w"]).is_err());
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn resolve<S: AsRef<str>>(&self, names: &[S]) -> Result<CouplingSpec> {
        let mut groups = Vec::new();
        let known = |n: &str| names.iter().any(|x| x.as_ref() == n);
        for g in &self.groups {
            let stars = g[0].0.matches('*').count();
            if let Some((bad, _)) = g.iter().find(|(n, _)| n.matches('*').count() != stars) {
                return Err(PruneError::Coupling(format!(
                    "`{bad}` has not as many `*` as `{}` (a group's members need the same number)",
                    g[0].0
                )));
            }
            if stars == 0 {
                if let Some((missing, _)) = g.iter().find(|(n, _)| !known(n)) {
                    return Err(PruneError::MissingTensor(missing.clone()));
                }
                groups.push(g.clone());
                continue;
            }
            let before = groups.len();
            for name in names {
                let Some(caps) = capture(&g[0].0, name.as_ref()) else {
                    continue;
                };
                let mut concrete = Vec::with_capacity(g.len());
                for (pattern, axis) in g {
                    let n = substitute(pattern, &caps);
                    if !known(&n) {
                        return Err(PruneError::Coupling(format!(
                            "`{n}` (from `{pattern}`, to go with `{}`) not found",
                            name.as_ref()
                        )));
                    }
                    concrete.push((n, *axis));
                }
                groups.push(concrete);
            }
            if groups.len() == before {
                return Err(PruneError::Coupling(format!(
                    "`{}` matches no tensor",
                    g[0].0
                )));
            }
        }
        Ok(CouplingSpec { groups })
    }
}

/// What each `*` of `pattern` matched in `name` (a `*` matches 1+ characters other than `.`;
/// the first, shortest-first match is taken), or `None`.
fn capture(pattern: &str, name: &str) -> Option<Vec<String>> {
    fn go(p: &[u8], n: &[u8], caps: &mut Vec<(usize, usize)>, at: usize) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some(b'*') => {
                let max = n.iter().position(|&c| c == b'.').unwrap_or(n.len());
                for len in 1..=max {
                    caps.push((at, len));
                    if go(&p[1..], &n[len..], caps, at + len) {
                        return true;
                    }
                    caps.pop();
                }
                false
            }
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..], caps, at + 1),
        }
    }
    let mut caps = Vec::new();
    // Byte-wise. A capture ends where the pattern's next byte matches; that byte is ASCII or a
    // UTF-8 lead byte, never a continuation byte, so captures end on char boundaries (`get`).
    go(pattern.as_bytes(), name.as_bytes(), &mut caps, 0).then_some(())?;
    caps.into_iter()
        .map(|(at, len)| name.get(at..at + len).map(str::to_string))
        .collect()
}

/// `pattern` with its `*`s replaced by `caps` in order.
fn substitute(pattern: &str, caps: &[String]) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut it = caps.iter();
    for part in pattern.split('*').enumerate() {
        if part.0 > 0 {
            out.push_str(it.next().map_or("*", String::as_str));
        }
        out.push_str(part.1);
    }
    out
}

impl FromStr for CouplingSpec {
    type Err = PruneError;
    fn from_str(s: &str) -> Result<Self> {
        let mut groups = Vec::new();
        for g in s
            .split([';', '\n'])
            .map(str::trim)
            .filter(|g| !g.is_empty())
        {
            let mut members: Vec<(String, usize)> = Vec::new();
            for m in g.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                let (name, axis) = m
                    .rsplit_once(':')
                    .ok_or_else(|| PruneError::Coupling(format!("`{m}` is not NAME:AXIS")))?;
                let axis: usize = axis.trim().parse().map_err(|_| {
                    PruneError::Coupling(format!("axis `{axis}` of `{m}` is not an integer"))
                })?;
                let name = name.trim().to_string();
                if members.iter().any(|(n, _)| *n == name) {
                    return Err(PruneError::Coupling(format!(
                        "`{name}` appears twice in one group"
                    )));
                }
                members.push((name, axis));
            }
            groups.push(members);
        }
        if groups.is_empty() {
            return Err(PruneError::Coupling("no group given".into()));
        }
        Ok(CouplingSpec { groups })
    }
}

/// The result of [`Shrinker::shrink`]: all tensors (the coupled ones smaller) and, per group,
/// the indices of the channels kept (ascending, in the group's original numbering).
#[derive(Debug, Clone, PartialEq)]
pub struct Shrunk {
    /// Every tensor that was passed in, coupled ones with fewer channels.
    pub tensors: BTreeMap<String, ArrayD<f32>>,
    /// Per group, the kept channel indices.
    pub kept: Vec<Vec<usize>>,
    /// Per group, the channel count before shrinking.
    pub channels_before: Vec<usize>,
}

/// Removes the lowest-importance channels of each coupling group from all its tensors.
///
/// A channel's importance is the Ln norm of the criterion scores of all its elements in all
/// tensors of the group (as if concatenated). Defaults of [`Shrinker::new`]: [`L1Magnitude`]
/// scores, [`Norm::L2`], no rounding of the channel count. Never prunes a group to zero
/// channels; with [`Shrinker::multiple_of`] the kept count is rounded up to a multiple.
/// Groups are processed in order; a tensor in several groups is shrunk by each in turn.
///
/// ```
/// use modelopt_prune::{shrink::Shrinker, Amount, Norm};
/// let _ = Shrinker::new(Amount::fraction(0.5)?).norm(Norm::L1).multiple_of(8)?;
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
pub struct Shrinker {
    amount: Amount,
    norm: Norm,
    multiple: usize,
    criterion: Box<dyn PruningCriterion>,
}

impl std::fmt::Debug for Shrinker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shrinker")
            .field("amount", &self.amount)
            .field("norm", &self.norm)
            .field("multiple", &self.multiple)
            .finish_non_exhaustive()
    }
}

impl Shrinker {
    /// A shrinker removing `amount` of each group's channels.
    ///
    /// ```
    /// let _ = modelopt_prune::shrink::Shrinker::new(modelopt_prune::Amount::count(2));
    /// ```
    pub fn new(amount: Amount) -> Self {
        Shrinker {
            amount,
            norm: Norm::L2,
            multiple: 1,
            criterion: Box::new(L1Magnitude),
        }
    }

    /// The norm reducing a channel's scores.
    ///
    /// ```
    /// let _ = modelopt_prune::shrink::Shrinker::new(modelopt_prune::Amount::count(2)).norm(modelopt_prune::Norm::Inf);
    /// ```
    pub fn norm(mut self, norm: Norm) -> Self {
        self.norm = norm;
        self
    }

    /// The criterion scoring elements.
    ///
    /// ```
    /// use modelopt_prune::{shrink::Shrinker, Amount, L2Magnitude};
    /// let _ = Shrinker::new(Amount::count(1)).criterion(Box::new(L2Magnitude));
    /// ```
    pub fn criterion(mut self, criterion: Box<dyn PruningCriterion>) -> Self {
        self.criterion = criterion;
        self
    }

    /// Keep a multiple of `m` channels (rounded up; capped at the original count). Errors on 0.
    ///
    /// ```
    /// assert!(modelopt_prune::shrink::Shrinker::new(modelopt_prune::Amount::count(1)).multiple_of(0).is_err());
    /// ```
    pub fn multiple_of(mut self, m: usize) -> Result<Self> {
        if m == 0 {
            return Err(CoreError::invalid("multiple_of", "must be >= 1").into());
        }
        self.multiple = m;
        Ok(self)
    }

    /// The channels one coupling group keeps (ascending, in the group's numbering) and the
    /// channel count before: what [`Shrinker::shrink`] selects for `group`, without copying
    /// any tensor. Lets a caller holding only one group's tensors (e.g. streaming a checkpoint)
    /// shrink them itself.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use modelopt_prune::{shrink::Shrinker, Amount};
    /// use ndarray::array;
    /// let mut t = BTreeMap::new();
    /// t.insert("w".to_string(), array![[1.0f32], [0.1], [2.0]].into_dyn());
    /// let (kept, before) = Shrinker::new(Amount::count(1)).channels_to_keep(&t, &[("w".into(), 0)])?;
    /// assert_eq!((kept, before), (vec![0, 2], 3));
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn channels_to_keep(
        &self,
        tensors: &BTreeMap<String, ArrayD<f32>>,
        group: &[(String, usize)],
    ) -> Result<(Vec<usize>, usize)> {
        let mut channels: Option<usize> = None;
        let mut score: Vec<f64> = Vec::new();
        for (name, axis) in group {
            let t = tensors
                .get(name)
                .ok_or_else(|| PruneError::MissingTensor(name.clone()))?;
            let in_t = |e: PruneError| PruneError::InTensor {
                name: name.clone(),
                source: Box::new(e),
            };
            check_finite(t).map_err(|e| in_t(e.into()))?;
            if *axis >= t.ndim() {
                return Err(in_t(
                    CoreError::AxisOutOfRange {
                        axis: *axis,
                        ndim: t.ndim(),
                    }
                    .into(),
                ));
            }
            let c = t.shape()[*axis];
            match channels {
                None => {
                    channels = Some(c);
                    score = vec![0.0; c];
                }
                Some(prev) if prev != c => {
                    return Err(PruneError::Coupling(format!(
                        "`{name}` has {c} channels on axis {axis}, the group's first member has {prev}"
                    )));
                }
                Some(_) => {}
            }
            let s = match self.criterion.for_tensor(name) {
                Some(c) => c.scores(t),
                None => self.criterion.scores(t),
            }
            .map_err(in_t)?;
            check_finite(&s).map_err(|e| in_t(e.into()))?;
            let s = s.as_standard_layout();
            let norms = channel_norms(s.as_slice().unwrap_or(&[]), s.shape(), *axis, self.norm)
                .map_err(in_t)?;
            for (a, n) in score.iter_mut().zip(norms) {
                *a = if self.norm == Norm::Inf {
                    a.max(n)
                } else {
                    *a + n
                };
            }
        }
        let c = channels.unwrap_or(0);
        if c == 0 {
            return Err(PruneError::Coupling("a group with no channels".into()));
        }
        let k = self.amount.units_to_prune_of(c, c, "channels")?;
        let mut keep_n = (c - k).max(1);
        keep_n = keep_n
            .div_ceil(self.multiple)
            .saturating_mul(self.multiple)
            .min(c);
        let mut order: Vec<usize> = (0..c).collect();
        order.sort_unstable_by(|&a, &b| score[a].total_cmp(&score[b]).then(a.cmp(&b)));
        let mut kept: Vec<usize> = order[c - keep_n..].to_vec();
        kept.sort_unstable();
        Ok((kept, c))
    }

    /// Shrinks the tensors of every group of `spec`; tensors not named are returned unchanged.
    ///
    /// Errors: a missing tensor, a bad axis, members of one group with different channel
    /// counts, non-finite values, an amount above the channel count.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use modelopt_prune::{shrink::Shrinker, Amount};
    /// let t: BTreeMap<String, ndarray::ArrayD<f32>> = BTreeMap::new();
    /// assert!(Shrinker::new(Amount::count(1)).shrink(t, &"w:0".parse()?).is_err());
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn shrink(
        &self,
        mut tensors: BTreeMap<String, ArrayD<f32>>,
        spec: &CouplingSpec,
    ) -> Result<Shrunk> {
        let mut kept_all = Vec::new();
        let mut before = Vec::new();
        for group in spec.groups() {
            let (kept, c) = self.channels_to_keep(&tensors, group)?;
            for (name, axis) in group {
                if let Some(t) = tensors.get_mut(name) {
                    *t = t.select(Axis(*axis), &kept);
                }
            }
            kept_all.push(kept);
            before.push(c);
        }
        Ok(Shrunk {
            tensors,
            kept: kept_all,
            channels_before: before,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{capture, substitute};

    #[test]
    fn wildcards_match_one_dot_free_part() {
        let c = |p: &str, n: &str| capture(p, n);
        assert_eq!(c("l.*.w", "l.12.w"), Some(vec!["12".to_string()]));
        // `*` does not cross a dot: an attention block's `output.dense` is not a layer's.
        assert_eq!(
            c("enc.*.output.dense.w", "enc.0.attention.output.dense.w"),
            None
        );
        assert_eq!(
            c("enc.*.output.dense.w", "enc.3.output.dense.w").unwrap(),
            ["3"]
        );
        assert_eq!(c("b*.*.w", "blk7.ffn.w").unwrap(), ["lk7", "ffn"]);
        assert_eq!(c("l.*.w", "l..w"), None);
        assert_eq!(c("l.*é.w", "l.aé.w").unwrap(), ["a"]);
        assert_eq!(substitute("x.*.y.*", &["1".into(), "b".into()]), "x.1.y.b");
    }
}
