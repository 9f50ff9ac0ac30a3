//! Structured pruning along an axis: channel scores by an Ln norm (torch's `ln_structured`).

use modelopt_tensor_core::CoreError;

use crate::{Amount, Norm, Result};

/// `(outer, channels, inner)` of a row-major shape split at `axis`.
pub(crate) fn split_at_axis(shape: &[usize], axis: usize) -> Result<(usize, usize, usize)> {
    if axis >= shape.len() {
        return Err(CoreError::AxisOutOfRange {
            axis,
            ndim: shape.len(),
        }
        .into());
    }
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    Ok((outer, shape[axis], inner))
}

/// One score per channel: the Ln norm of `|values|` over all other dims (for L2 the sum of
/// squares: the square root does not change the ranking). `values` is row-major.
pub(crate) fn channel_norms(
    values: &[f32],
    shape: &[usize],
    axis: usize,
    norm: Norm,
) -> Result<Vec<f64>> {
    let (outer, c, inner) = split_at_axis(shape, axis)?;
    let mut acc = vec![0f64; c];
    if inner == 1 {
        let rows = values.chunks_exact(c.max(1)).take(outer);
        match norm {
            Norm::L1 => rows.for_each(|r| {
                acc.iter_mut()
                    .zip(r)
                    .for_each(|(a, &x)| *a += f64::from(x.abs()))
            }),
            Norm::L2 => rows.for_each(|r| {
                acc.iter_mut()
                    .zip(r)
                    .for_each(|(a, &x)| *a += f64::from(x) * f64::from(x))
            }),
            Norm::Inf => rows.for_each(|r| {
                acc.iter_mut()
                    .zip(r)
                    .for_each(|(a, &x)| *a = a.max(f64::from(x.abs())))
            }),
        }
        return Ok(acc);
    }
    for (idx, slice) in values.chunks_exact(inner).enumerate() {
        let a = &mut acc[idx % c];
        *a = match norm {
            Norm::L1 => *a + lanes_sum(slice, f64::abs),
            Norm::L2 => *a + lanes_sum(slice, |x| x * x),
            Norm::Inf => a.max(f64::from(slice.iter().fold(0f32, |m, x| m.max(x.abs())))),
        };
    }
    Ok(acc)
}

/// Sum of `f(x)` with 16 independent f32 lanes (vectorisable), reduced in f64.
#[inline]
fn lanes_sum(s: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    // f64 lanes: a square of any finite f32 fits, so only NaN/Inf inputs give a non-finite sum.
    let mut lanes = [0f64; 16];
    let chunks = s.chunks_exact(16);
    let tail = chunks.remainder();
    for ch in chunks {
        for (l, &x) in lanes.iter_mut().zip(ch) {
            *l += f(f64::from(x));
        }
    }
    let mut sum: f64 = lanes.iter().sum();
    sum += tail.iter().map(|&x| f(f64::from(x))).sum::<f64>();
    sum
}

/// Which channels to keep: the `k` lowest-scoring of the channels still alive are pruned
/// (ties: lower score, then lower channel index, first).
pub(crate) fn keep_channels(scores: &[f64], alive: &[bool], amount: &Amount) -> Result<Vec<bool>> {
    let remaining = alive.iter().filter(|&&a| a).count();
    let k = amount.units_to_prune_of(scores.len(), remaining, "channels")?;
    let mut order: Vec<usize> = (0..scores.len()).filter(|&i| alive[i]).collect();
    order.sort_unstable_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    let mut keep = alive.to_vec();
    order[..k].iter().for_each(|&i| keep[i] = false);
    Ok(keep)
}

/// Channels that still have at least one kept element (torch's `PruningContainer` rule).
pub(crate) fn alive_channels(
    keep: Option<&[bool]>,
    shape: &[usize],
    axis: usize,
) -> Result<Vec<bool>> {
    let (_, c, inner) = split_at_axis(shape, axis)?;
    let Some(keep) = keep else {
        return Ok(vec![true; c]);
    };
    let mut alive = vec![false; c];
    for (idx, slice) in keep.chunks_exact(inner.max(1)).enumerate() {
        if slice.iter().any(|&k| k) {
            alive[idx % c] = true;
        }
    }
    Ok(alive)
}

/// Expands a per-channel keep into an element keep, ANDed with the prior element keep.
pub(crate) fn expand(
    channel_keep: &[bool],
    prior: Option<&[bool]>,
    shape: &[usize],
    axis: usize,
) -> Result<Vec<bool>> {
    let (outer, c, inner) = split_at_axis(shape, axis)?;
    let mut out = Vec::with_capacity(outer * c * inner);
    for _ in 0..outer {
        if inner == 1 {
            out.extend_from_slice(channel_keep);
        } else {
            for &k in channel_keep {
                out.extend(std::iter::repeat_n(k, inner));
            }
        }
    }
    if let Some(p) = prior {
        out.iter_mut().zip(p).for_each(|(o, &p)| *o = *o && p);
    }
    Ok(out)
}
