//! Structural edits of a [`Sequential`] CNN: filter pruning with its dependencies, and folding
//! batch norm into the preceding convolution.
//!
//! Removing output channels (filters) of a convolution changes every tensor that reads them: the
//! matching entries of a following batch norm, the input channels of the next convolution (or, for a
//! depthwise one, its filters too, and onwards), or the matching columns of the first linear layer
//! after a flatten. The chain is derived from the layer order, as Torch-Pruning's dependency graph
//! does for a sequential model; the result is a physically smaller network.

use modelopt_tensor_core::{CoreError, Float};
use ndarray::{Array1, Array4, Axis};

use crate::{BatchNorm2d, Conv2d, Dense, Layer, NnError, Result, Sequential};

/// How filters are ranked for pruning (the lowest scores go).
///
/// ```
/// use modelopt_nn::FilterCriterion;
/// assert_ne!(FilterCriterion::L1, FilterCriterion::BnScale);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FilterCriterion {
    /// Sum of absolute weights of the filter (Li et al. 2017, "Pruning filters for efficient
    /// ConvNets").
    L1,
    /// Euclidean norm of the filter.
    L2,
    /// `|gamma|` of the batch norm right after the convolution (network slimming, Liu et al. 2017);
    /// an error for a convolution without one.
    BnScale,
}

/// Per-layer or global filter ranking.
///
/// ```
/// use modelopt_nn::PruneScope;
/// assert_eq!(PruneScope::default(), PruneScope::PerLayer);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PruneScope {
    /// Remove the same fraction of every convolution's filters.
    #[default]
    PerLayer,
    /// Rank all filters of all convolutions together (scores normalised by each layer's mean, so
    /// layers of different scale compete fairly) and remove the lowest fraction overall; each
    /// layer keeps at least one filter.
    Global,
}

fn conv_at<A: Float>(net: &Sequential<A>, layer: usize) -> Result<&Conv2d<A>> {
    match net.layers().get(layer) {
        Some(Layer::Conv2d(c)) => Ok(c),
        other => Err(CoreError::invalid(
            "layer",
            format!(
                "layer {layer} is {}, not a convolution",
                other.map_or("out of range", |l| l.kind())
            ),
        )
        .into()),
    }
}

/// Scores of the filters of the convolution at index `layer` (higher = more important).
///
/// ```
/// use modelopt_nn::{filter_scores, Conv2d, FilterCriterion, Layer, Sequential, Window};
/// use ndarray::Array4;
/// let mut w = Array4::<f32>::ones((2, 1, 1, 1));
/// w[[1, 0, 0, 0]] = -3.0;
/// let conv = Conv2d::from_parts(w, None, Window::square(1, 1, 0, 1)?, 1)?;
/// let net = Sequential::builder(&[1, 2, 2]).push(Layer::Conv2d(conv)).push(Layer::Flatten).build()?;
/// assert_eq!(filter_scores(&net, 0, FilterCriterion::L1)?, vec![1.0, 3.0]);
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
pub fn filter_scores<A: Float>(
    net: &Sequential<A>,
    layer: usize,
    criterion: FilterCriterion,
) -> Result<Vec<f64>> {
    let conv = conv_at(net, layer)?;
    Ok(match criterion {
        FilterCriterion::L1 => conv
            .weight()
            .outer_iter()
            .map(|f| f.iter().map(|v| v.to_f64_lossless().abs()).sum())
            .collect(),
        FilterCriterion::L2 => conv
            .weight()
            .outer_iter()
            .map(|f| {
                f.iter()
                    .map(|v| v.to_f64_lossless().powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect(),
        FilterCriterion::BnScale => match net.layers().get(layer + 1) {
            Some(Layer::BatchNorm2d(bn)) => bn
                .weight()
                .iter()
                .map(|g| g.to_f64_lossless().abs())
                .collect(),
            _ => {
                return Err(CoreError::invalid(
                    "criterion",
                    format!(
                        "BN-scale needs a batch norm right after convolution `{}`",
                        net.names()[layer]
                    ),
                )
                .into());
            }
        },
    })
}

/// A copy of `net` with only the filters `keep` (indices, any order; kept in ascending order) of
/// the convolution at index `layer`, and every dependent tensor cut to match.
///
/// ```
/// use modelopt_nn::{prune_filters, Conv2d, Dense, Init, Layer, MaxPool2d, Sequential, BatchNorm2d};
/// use rand::SeedableRng;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let net = Sequential::builder(&[1, 8, 8])
///     .push(Layer::Conv2d(Conv2d::<f32>::builder(1, 4, 3).padding(1).build(&mut rng)?))
///     .push(Layer::BatchNorm2d(BatchNorm2d::new(4)?))
///     .push(Layer::MaxPool2d(MaxPool2d::new(2, 2, 0)?))
///     .push(Layer::Conv2d(Conv2d::builder(4, 6, 3).build(&mut rng)?))
///     .push(Layer::Flatten)
///     .push(Layer::Linear(Dense::new(6 * 2 * 2, 10, Init::HeNormal, &mut rng)?))
///     .build()?;
/// let small = prune_filters(&net, 0, &[0, 3])?;
/// assert_eq!(small.shapes()[1], vec![2, 8, 8]);
/// let small = prune_filters(&small, 3, &[1, 2, 5])?; // the linear layer loses the matching columns
/// assert_eq!(small.parameter_count(), (2 * 9 + 2) + 2 * 2 + (3 * 2 * 9 + 3) + (12 * 10 + 10));
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
pub fn prune_filters<A: Float>(
    net: &Sequential<A>,
    layer: usize,
    keep: &[usize],
) -> Result<Sequential<A>> {
    let conv = conv_at(net, layer)?;
    let out = conv.out_channels();
    let mut keep = keep.to_vec();
    keep.sort_unstable();
    keep.dedup();
    if keep.is_empty() || keep.iter().any(|&k| k >= out) {
        return Err(CoreError::invalid(
            "keep",
            format!(
                "filters to keep of `{}` must be a non-empty subset of 0..{out}",
                net.names()[layer]
            ),
        )
        .into());
    }
    let mut layers = net.named_layers();
    if conv.groups() != 1 {
        return Err(CoreError::invalid(
            "layer",
            format!(
                "pruning the filters of grouped convolution `{}` is not supported",
                net.names()[layer]
            ),
        )
        .into());
    }
    let (name, _) = &layers[layer];
    let name = name.clone();
    layers[layer].1 = Layer::Conv2d(select_filters(conv, &keep)?);
    // Walk forward and cut whatever reads the removed channels.
    let channel_len = |i: usize| -> usize { net.shapes()[i + 1][1..].iter().product() };
    for i in layer + 1..layers.len() {
        let (lname, l) = &mut layers[i];
        let wrap = |e: NnError, kind: &'static str, lname: &str| NnError::Layer {
            layer: lname.to_string(),
            kind,
            source: Box::new(e),
        };
        match l {
            Layer::BatchNorm2d(bn) => {
                *bn = select_bn(bn, &keep).map_err(|e| wrap(e, "BatchNorm2d", lname))?
            }
            Layer::Conv2d(c) if c.groups() == 1 => {
                *c = select_inputs(c, &keep).map_err(|e| wrap(e, "Conv2d", lname))?;
                return net.with_layers(layers);
            }
            Layer::Conv2d(c) if c.groups() == c.in_channels() && c.groups() == c.out_channels() => {
                // Depthwise: its filter k reads channel k only, so it goes too, and the cut goes on.
                let d = select_filters_depthwise(c, &keep).map_err(|e| wrap(e, "Conv2d", lname))?;
                *c = d;
            }
            Layer::Conv2d(_) => {
                return Err(CoreError::invalid(
                    "layer",
                    format!("grouped convolution `{lname}` after pruned `{name}` is not supported"),
                )
                .into());
            }
            Layer::Flatten => {
                // Channel-major flattening: channel c owns columns c*len..(c+1)*len.
                let len = channel_len(i - 1);
                let cols: Vec<usize> = keep.iter().flat_map(|&k| k * len..(k + 1) * len).collect();
                for (lname2, l2) in layers.iter_mut().skip(i + 1) {
                    match l2 {
                        Layer::Linear(d) => {
                            let w = d.weight().select(Axis(1), &cols);
                            *d = Dense::from_parts(w, d.bias().clone())
                                .map_err(|e| wrap(e, "Linear", lname2))?;
                            return net.with_layers(layers);
                        }
                        Layer::Activation(_) | Layer::Dropout(_) => {}
                        other => {
                            return Err(CoreError::invalid(
                                "layer",
                                format!("`{lname2}` ({}) after a flatten is not supported by filter pruning", other.kind()),
                            )
                            .into());
                        }
                    }
                }
                break;
            }
            Layer::Linear(_) => {
                return Err(CoreError::invalid(
                    "layer",
                    format!("linear `{lname}` on images without a flatten"),
                )
                .into());
            }
            Layer::Activation(_)
            | Layer::Dropout(_)
            | Layer::MaxPool2d(_)
            | Layer::AvgPool2d(_)
            | Layer::GlobalAvgPool => {}
        }
    }
    Err(CoreError::invalid(
        "layer",
        format!("the filters of `{name}` reach the output: pruning them would remove classes"),
    )
    .into())
}

fn select_filters<A: Float>(c: &Conv2d<A>, keep: &[usize]) -> Result<Conv2d<A>> {
    Conv2d::from_parts(
        c.weight().select(Axis(0), keep),
        c.bias().map(|b| b.select(Axis(0), keep)),
        *c.window(),
        c.groups(),
    )
}

fn select_filters_depthwise<A: Float>(c: &Conv2d<A>, keep: &[usize]) -> Result<Conv2d<A>> {
    Conv2d::from_parts(
        c.weight().select(Axis(0), keep),
        c.bias().map(|b| b.select(Axis(0), keep)),
        *c.window(),
        keep.len(),
    )
}

fn select_inputs<A: Float>(c: &Conv2d<A>, keep: &[usize]) -> Result<Conv2d<A>> {
    Conv2d::from_parts(
        c.weight().select(Axis(1), keep),
        c.bias().cloned(),
        *c.window(),
        1,
    )
}

fn select_bn<A: Float>(bn: &BatchNorm2d<A>, keep: &[usize]) -> Result<BatchNorm2d<A>> {
    let pick = |a: &Array1<A>| a.select(Axis(0), keep);
    let mut b = BatchNorm2d::new(keep.len())?.with_eps_momentum(bn.eps(), bn.momentum())?;
    b.weight_mut().assign(&pick(bn.weight()));
    b.bias_mut().assign(&pick(bn.bias()));
    b.running_mean_mut().assign(&pick(bn.running_mean()));
    b.running_var_mut().assign(&pick(bn.running_var()));
    b.set_num_batches_tracked(bn.num_batches_tracked());
    Ok(b)
}

/// Prune every convolution whose filters feed another convolution or a flatten + linear (with
/// [`FilterCriterion::BnScale`]: every such convolution followed by a batch norm), removing
/// `round(ratio * filters)` (`ratio` in `[0, 1)`) by `criterion`, per layer or globally; each
/// layer keeps at least one filter. Returns the smaller network.
///
/// ```
/// use modelopt_nn::{prune_filters_by, Conv2d, Dense, FilterCriterion, Init, Layer, PruneScope, Sequential};
/// use rand::SeedableRng;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let net = Sequential::builder(&[1, 6, 6])
///     .push(Layer::Conv2d(Conv2d::<f32>::builder(1, 8, 3).build(&mut rng)?))
///     .push(Layer::Conv2d(Conv2d::builder(8, 8, 3).build(&mut rng)?))
///     .push(Layer::Flatten)
///     .push(Layer::Linear(Dense::new(8 * 2 * 2, 10, Init::HeNormal, &mut rng)?))
///     .build()?;
/// let half = prune_filters_by(&net, FilterCriterion::L2, 0.5, PruneScope::PerLayer)?;
/// assert_eq!((half.shapes()[1][0], half.shapes()[2][0]), (4, 4));
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
pub fn prune_filters_by<A: Float>(
    net: &Sequential<A>,
    criterion: FilterCriterion,
    ratio: f64,
    scope: PruneScope,
) -> Result<Sequential<A>> {
    if !(0.0..1.0).contains(&ratio) {
        return Err(CoreError::invalid("ratio", format!("must be in [0, 1), got {ratio}")).into());
    }
    // Prunable: convolutions (groups 1) whose output does not reach the logits unchanged.
    let prunable: Vec<usize> = (0..net.layers().len())
        .filter(|&i| matches!(&net.layers()[i], Layer::Conv2d(c) if c.groups() == 1))
        .filter(|&i| {
            net.layers()[i + 1..]
                .iter()
                .any(|l| matches!(l, Layer::Conv2d(_) | Layer::Flatten))
        })
        // Network slimming ranks by batch-norm scales: convolutions without one are left whole.
        .filter(|&i| {
            criterion != FilterCriterion::BnScale
                || matches!(net.layers().get(i + 1), Some(Layer::BatchNorm2d(_)))
        })
        .collect();
    let scores: Vec<Vec<f64>> = prunable
        .iter()
        .map(|&i| filter_scores(net, i, criterion))
        .collect::<Result<_>>()?;
    let keeps: Vec<Vec<usize>> = match scope {
        PruneScope::PerLayer => scores
            .iter()
            .map(|s| {
                let n_keep = s.len() - ((ratio * s.len() as f64).round() as usize).min(s.len() - 1);
                top(s, n_keep)
            })
            .collect(),
        PruneScope::Global => {
            let mut all: Vec<(f64, usize, usize)> = Vec::new();
            for (l, s) in scores.iter().enumerate() {
                let mean = s.iter().sum::<f64>() / s.len() as f64;
                let norm = if mean > 0.0 { mean } else { 1.0 };
                all.extend(s.iter().enumerate().map(|(f, &v)| (v / norm, l, f)));
            }
            all.sort_by(|a, b| a.0.total_cmp(&b.0));
            let n_remove = (ratio * all.len() as f64).round() as usize;
            let mut removed = vec![vec![false; 0]; scores.len()];
            for (l, s) in scores.iter().enumerate() {
                removed[l] = vec![false; s.len()];
            }
            let mut left: Vec<usize> = scores.iter().map(Vec::len).collect();
            let mut count = 0;
            for &(_, l, f) in &all {
                if count == n_remove {
                    break;
                }
                if left[l] > 1 {
                    removed[l][f] = true;
                    left[l] -= 1;
                    count += 1;
                }
            }
            removed
                .iter()
                .map(|r| (0..r.len()).filter(|&f| !r[f]).collect())
                .collect()
        }
    };
    let mut out = net.clone();
    for (&layer, keep) in prunable.iter().zip(&keeps) {
        out = prune_filters(&out, layer, keep)?;
    }
    Ok(out)
}

/// Indices of the `n` largest scores (ties: lower index first), ascending.
fn top(scores: &[f64], n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx.truncate(n);
    idx.sort_unstable();
    idx
}

/// Fold every batch norm that directly follows a convolution into it (eval-mode statistics:
/// `W' = W * gamma / sqrt(var + eps)` per filter, `b' = (b - mean) * gamma / sqrt(var + eps) +
/// beta`) and drop the batch norm: the same inference outputs with one layer less, the form to
/// quantize. The other layers keep their names.
///
/// ```
/// use modelopt_nn::{fold_batch_norm, BatchNorm2d, Conv2d, Layer, Sequential};
/// use ndarray::Array2;
/// use rand::SeedableRng;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let mut bn = BatchNorm2d::<f64>::new(2)?;
/// bn.running_mean_mut().fill(0.3);
/// bn.weight_mut().fill(1.5);
/// let net = Sequential::builder(&[1, 4, 4])
///     .push(Layer::Conv2d(Conv2d::builder(1, 2, 3).build(&mut rng)?))
///     .push(Layer::BatchNorm2d(bn))
///     .push(Layer::Flatten)
///     .build()?;
/// let folded = fold_batch_norm(&net)?;
/// assert_eq!(folded.layers().len(), 2);
/// let x = Array2::from_shape_fn((2, 16), |(i, j)| (i + j) as f64 / 10.0);
/// let diff = (&net.predict(&x)? - &folded.predict(&x)?).mapv(f64::abs).fold(0.0, |m: f64, &v| m.max(v));
/// assert!(diff < 1e-12);
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
pub fn fold_batch_norm<A: Float>(net: &Sequential<A>) -> Result<Sequential<A>> {
    let mut out: Vec<(String, Layer<A>)> = Vec::new();
    for (name, layer) in net.named_layers() {
        if let Layer::BatchNorm2d(bn) = &layer
            && let Some((_, Layer::Conv2d(conv))) = out.last_mut()
        {
            let (scale, shift) = bn.eval_affine();
            let mut w: Array4<A> = conv.weight().clone();
            for (mut f, &s) in w.outer_iter_mut().zip(&scale) {
                f.mapv_inplace(|v| v * s);
            }
            let b = match conv.bias() {
                Some(b) => b * &scale + &shift,
                None => shift,
            };
            *conv = Conv2d::from_parts(w, Some(b), *conv.window(), conv.groups())?;
            continue;
        }
        out.push((name, layer));
    }
    net.with_layers(out)
}
