//! N:M groups and blocks.

use modelopt_tensor_core::CoreError;
use ndarray::{ArrayViewD, ArrayViewMutD, Axis};

use crate::select::{Segment, ordered_key, prune_lowest};
use crate::{Amount, PruneError, Result};

/// The input axis N:M runs along: 1 for tensors of 2+ dims, 0 for vectors.
pub(crate) fn nm_axis(ndim: usize) -> usize {
    usize::from(ndim >= 2)
}

/// N:M: in each group of `m` consecutive elements along the input axis keep the `n` best;
/// elements already pruned count toward the `m - n` pruned. Ties: lower score, then lower index.
pub(crate) fn nm_keep(
    scores: ArrayViewD<'_, f32>,
    mut keep: ArrayViewMutD<'_, bool>,
    n: usize,
    m: usize,
) -> Result<()> {
    let axis = nm_axis(scores.ndim());
    let len = scores.shape()[axis];
    if !len.is_multiple_of(m) {
        return Err(PruneError::NotMultiple {
            axis,
            len,
            multiple: m,
            what: "N:M group length",
        });
    }
    let mut order: Vec<usize> = Vec::with_capacity(m);
    for (s_lane, mut k_lane) in scores
        .lanes(Axis(axis))
        .into_iter()
        .zip(keep.lanes_mut(Axis(axis)))
    {
        for g in 0..len / m {
            let base = g * m;
            let already = (base..base + m).filter(|&i| !k_lane[i]).count();
            let to_prune = (m - n).saturating_sub(already);
            order.clear();
            order.extend((base..base + m).filter(|&i| k_lane[i]));
            order.sort_unstable_by(|&a, &b| s_lane[a].total_cmp(&s_lane[b]).then(a.cmp(&b)));
            order[..to_prune].iter().for_each(|&i| k_lane[i] = false);
        }
    }
    Ok(())
}

/// Blocks of `br x bc` over a 2-D tensor, scored by the sum of element scores, pruned like
/// unstructured units (a block is alive while any of its elements is kept).
pub(crate) fn block_keep(
    scores: ArrayViewD<'_, f32>,
    mut keep: ArrayViewMutD<'_, bool>,
    br: usize,
    bc: usize,
    amount: &Amount,
) -> Result<()> {
    if scores.ndim() != 2 {
        return Err(CoreError::invalid(
            "block",
            format!(
                "block pruning needs a 2-D tensor, got {} dims",
                scores.ndim()
            ),
        )
        .into());
    }
    let (r, c) = (scores.shape()[0], scores.shape()[1]);
    for (axis, len, multiple) in [(0, r, br), (1, c, bc)] {
        if !len.is_multiple_of(multiple) {
            return Err(PruneError::NotMultiple {
                axis,
                len,
                multiple,
                what: "block side",
            });
        }
    }
    let (nr, nc) = (r / br, c / bc);
    let mut block_scores = vec![0f32; nr * nc];
    let mut alive = vec![false; nr * nc];
    for i in 0..r {
        for j in 0..c {
            let b = (i / br) * nc + j / bc;
            block_scores[b] += scores[[i, j]];
            alive[b] |= keep[[i, j]];
        }
    }
    let remaining = alive.iter().filter(|&&a| a).count();
    let k = amount.units_to_prune_of(nr * nc, remaining, "blocks")?;
    let out = prune_lowest(
        &[Segment {
            scores: &block_scores,
            keep: Some(&alive),
        }],
        k,
        ordered_key,
    )
    .ok_or_else(|| CoreError::invalid("scores", "a block's score sum overflows to infinity"))?;
    for i in 0..r {
        for j in 0..c {
            if !out[0][(i / br) * nc + j / bc] {
                keep[[i, j]] = false;
            }
        }
    }
    Ok(())
}
