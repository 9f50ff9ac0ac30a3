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
///
/// With `abs`, the scores are the absolute values of `scores` (L1 magnitude without
/// materialising it). Standard-layout `scores` and `keep` (what the pruner passes) take a fast
/// path over the flat slices, ranking each group without sorting; other layouts take the
/// lane-by-lane path. Both give the same mask bit for bit (tested against a sorting reference).
pub(crate) fn nm_keep(
    scores: ArrayViewD<'_, f32>,
    keep: ArrayViewMutD<'_, bool>,
    n: usize,
    m: usize,
    abs: bool,
) -> Result<()> {
    if abs {
        nm_keep_by(scores, keep, n, m, |x: f32| total_key(x.abs()))
    } else {
        nm_keep_by(scores, keep, n, m, total_key)
    }
}

/// [`nm_keep`] ranking by `key` (an order-preserving integer image of the score).
fn nm_keep_by<K: Fn(f32) -> i32 + Copy>(
    scores: ArrayViewD<'_, f32>,
    mut keep: ArrayViewMutD<'_, bool>,
    n: usize,
    m: usize,
    key: K,
) -> Result<()> {
    if m == 0 || n > m {
        return Err(
            CoreError::invalid("n:m", format!("need n <= m and m >= 1, got {n}:{m}")).into(),
        );
    }
    if scores.shape() != keep.shape() {
        return Err(CoreError::ShapeMismatch {
            expected: scores.shape().to_vec(),
            found: keep.shape().to_vec(),
        }
        .into());
    }
    let axis = nm_axis(scores.ndim());
    let len = scores.shape().get(axis).copied().unwrap_or(1);
    if !len.is_multiple_of(m) {
        return Err(PruneError::NotMultiple {
            axis,
            len,
            multiple: m,
            what: "N:M group length",
        });
    }
    let drop = m - n;
    if drop == 0 {
        return Ok(());
    }
    // Elements between two consecutive ones of a lane in row-major order.
    let inner: usize = scores
        .shape()
        .get(axis + 1..)
        .map_or(1, |s| s.iter().product());
    if let (Some(s), Some(k)) = (scores.as_slice(), keep.as_slice_mut()) {
        nm_keep_slice(s, k, inner, drop, m, key);
        return Ok(());
    }
    nm_keep_lanes(scores, keep, axis, drop, m, key);
    Ok(())
}

/// [`nm_keep`] on row-major data whose N:M lanes have stride `inner`; `drop = m - n >= 1`.
fn nm_keep_slice<K: Fn(f32) -> i32 + Copy>(
    s: &[f32],
    k: &mut [bool],
    inner: usize,
    drop: usize,
    m: usize,
    key: K,
) {
    if inner == 1 {
        // Lanes are rows, and a row's length is a multiple of m: the groups are the
        // consecutive chunks of m of the whole slice.
        match m {
            2 => groups_const::<2, K>(s, k, drop, key),
            4 => groups_const::<4, K>(s, k, drop, key),
            8 => groups_const::<8, K>(s, k, drop, key),
            16 => groups_const::<16, K>(s, k, drop, key),
            _ => {
                let mut scratch = Scratch::new(m);
                for (sg, kg) in s.chunks_exact(m).zip(k.chunks_exact_mut(m)) {
                    scratch.group(sg, kg, drop, key);
                }
            }
        }
        return;
    }
    // Lanes have stride `inner` (e.g. [out, in, kh, kw]): gather each group, rank, scatter.
    let mut scratch = Scratch::new(m);
    let mut sg = vec![0f32; m];
    let mut kg = vec![false; m];
    let block = m * inner;
    for (sb, kb) in s.chunks_exact(block).zip(k.chunks_exact_mut(block)) {
        for j in 0..inner {
            for t in 0..m {
                sg[t] = sb[t * inner + j];
                kg[t] = kb[t * inner + j];
            }
            scratch.group(&sg, &mut kg, drop, key);
            for t in 0..m {
                kb[t * inner + j] = kg[t];
            }
        }
    }
}

/// The lane-by-lane path for any layout.
fn nm_keep_lanes<K: Fn(f32) -> i32 + Copy>(
    scores: ArrayViewD<'_, f32>,
    mut keep: ArrayViewMutD<'_, bool>,
    axis: usize,
    drop: usize,
    m: usize,
    key: K,
) {
    let mut scratch = Scratch::new(m);
    let mut sg = vec![0f32; m];
    let mut kg = vec![false; m];
    for (s_lane, mut k_lane) in scores
        .lanes(Axis(axis))
        .into_iter()
        .zip(keep.lanes_mut(Axis(axis)))
    {
        for (s_chunk, mut k_chunk) in s_lane
            .exact_chunks(m)
            .into_iter()
            .zip(k_lane.exact_chunks_mut(m))
        {
            sg.iter_mut().zip(s_chunk).for_each(|(d, &v)| *d = v);
            kg.iter_mut().zip(k_chunk.iter()).for_each(|(d, &v)| *d = v);
            scratch.group(&sg, &mut kg, drop, key);
            k_chunk.iter_mut().zip(&kg).for_each(|(d, &v)| *d = v);
        }
    }
}

/// An integer whose order is `f32::total_cmp`'s.
#[inline(always)]
fn total_key(x: f32) -> i32 {
    let b = x.to_bits() as i32;
    b ^ (((b >> 31) as u32) >> 1) as i32
}

/// Prunes `drop` minus the already pruned of one group (`keys.len() <= 64`): the kept elements
/// whose rank in the order (score by `total_cmp`, then index) is below that. Ranks are counted
/// pairwise without branches or sorting; the keys are distinct, so exactly that many are pruned.
#[inline(always)]
fn rank_group(keys: &[i32], k: &mut [bool], drop: usize) {
    let m = keys.len();
    let kept = k.iter().map(|&x| u32::from(x)).sum::<u32>();
    // drop - (m - kept), saturating at 0 (m - drop <= m and kept <= m: no overflow).
    let to_prune = (drop as u32 + kept).saturating_sub(m as u32);
    // Bit i: element i is pruned now (decided on the unmodified `k`).
    let mut prune = 0u64;
    for i in 0..m {
        let ki = keys[i];
        let mut rank = 0u32;
        for j in 0..m {
            let kj = keys[j];
            // j precedes i: lower key, or equal key and lower index.
            let before = (kj < ki) | ((kj == ki) & (j < i));
            rank += u32::from(k[j] & before);
        }
        prune |= u64::from(k[i] & (rank < to_prune)) << i;
    }
    for (i, x) in k.iter_mut().enumerate() {
        *x &= (prune >> i) & 1 == 0;
    }
}

/// Every group of `M` consecutive elements of `s` and `k`.
fn groups_const<const M: usize, K: Fn(f32) -> i32>(s: &[f32], k: &mut [bool], drop: usize, key: K) {
    let (sc, _) = s.as_chunks::<M>();
    let (kc, _) = k.as_chunks_mut::<M>();
    for (sg, kg) in sc.iter().zip(kc) {
        let keys: [i32; M] = std::array::from_fn(|i| key(sg[i]));
        rank_group(&keys, kg, drop);
    }
}

/// Working space for groups of any `m`: pairwise ranks up to 64, sorting above.
struct Scratch {
    keys: Vec<i32>,
    order: Vec<usize>,
}

impl Scratch {
    fn new(m: usize) -> Self {
        Scratch {
            keys: Vec::with_capacity(m),
            order: Vec::with_capacity(m),
        }
    }

    fn group(&mut self, s: &[f32], k: &mut [bool], drop: usize, key: impl Fn(f32) -> i32) {
        self.keys.clear();
        self.keys.extend(s.iter().map(|&x| key(x)));
        if s.len() <= 64 {
            rank_group(&self.keys, k, drop);
            return;
        }
        let m = s.len();
        let kept = k.iter().filter(|&&x| x).count();
        let to_prune = (drop + kept).saturating_sub(m);
        let keys = &self.keys;
        self.order.clear();
        self.order.extend((0..m).filter(|&i| k[i]));
        self.order
            .sort_unstable_by(|&a, &b| keys[a].cmp(&keys[b]).then(a.cmp(&b)));
        self.order[..to_prune].iter().for_each(|&i| k[i] = false);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn, Slice};
    use proptest::prelude::*;

    /// The sorting reference (the lane-indexing code nm_keep had before its fast path).
    fn reference(scores: &ArrayD<f32>, keep: &ArrayD<bool>, n: usize, m: usize) -> ArrayD<bool> {
        let mut keep = keep.clone();
        let axis = nm_axis(scores.ndim());
        let len = scores.shape()[axis];
        for (s_lane, mut k_lane) in scores
            .lanes(Axis(axis))
            .into_iter()
            .zip(keep.lanes_mut(Axis(axis)))
        {
            for g in 0..len / m {
                let base = g * m;
                let already = (base..base + m).filter(|&i| !k_lane[i]).count();
                let to_prune = (m - n).saturating_sub(already);
                let mut order: Vec<usize> = (base..base + m).filter(|&i| k_lane[i]).collect();
                order.sort_by(|&a, &b| s_lane[a].total_cmp(&s_lane[b]).then(a.cmp(&b)));
                order[..to_prune].iter().for_each(|&i| k_lane[i] = false);
            }
        }
        keep
    }

    /// SplitMix64.
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Few distinct values (many ties), both zeros, infinities and a subnormal; no NaN.
    const VALUES: [f32; 12] = [
        f32::NEG_INFINITY,
        -2.0,
        -1.0,
        -0.0,
        0.0,
        1e-40,
        0.5,
        1.0,
        1.0,
        2.0,
        3.0,
        f32::INFINITY,
    ];

    /// `shape`'s data in the layout `layout` (0 standard, 1 axes reversed, 2 every other
    /// index of axis 0 of a twice larger array, 3 both), with values from `f`.
    fn laid_out<T: Clone + Default>(
        shape: &[usize],
        layout: u8,
        mut f: impl FnMut() -> T,
    ) -> ArrayD<T> {
        let mut outer = shape.to_vec();
        if layout & 2 != 0 {
            outer[0] *= 2;
        }
        let mut a = if layout & 1 != 0 {
            let rev: Vec<usize> = outer.iter().rev().copied().collect();
            ArrayD::from_shape_simple_fn(IxDyn(&rev), &mut f).reversed_axes()
        } else {
            ArrayD::from_shape_simple_fn(IxDyn(&outer), &mut f)
        };
        if layout & 2 != 0 {
            a.slice_axis_inplace(Axis(0), Slice::new(0, None, 2));
        }
        assert_eq!(a.shape(), shape);
        a
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// The fast (standard-layout) path and the lane path equal the sorting reference, for
        /// 1-4 dims (strided lanes in 3-4 dims), ties, prior masks, transposed and sliced views.
        #[test]
        fn nm_keep_equals_sort_reference(
            nm in prop::sample::select(vec![
                (1usize, 4usize), (2, 4), (4, 8), (3, 3), (1, 2), (0, 4), (3, 5), (7, 16),
                (20, 66),
            ]),
            ndim in 1usize..=4,
            groups in 1usize..=3,
            others in prop::collection::vec(1usize..=3, 4),
            pruned_in_16 in 0u64..=16,
            score_layout in 0u8..4,
            keep_layout in 0u8..4,
            seed in any::<u64>(),
        ) {
            let (n, m) = nm;
            let axis = nm_axis(ndim);
            let mut shape: Vec<usize> = others[..ndim].to_vec();
            shape[axis] = groups * m;
            let mut state = seed;
            let scores = laid_out(&shape, score_layout, || {
                VALUES[(next(&mut state) % VALUES.len() as u64) as usize]
            });
            let prior = laid_out(&shape, keep_layout, || next(&mut state) % 16 >= pruned_in_16);
            let want = reference(
                &scores.as_standard_layout().into_owned(),
                &prior.as_standard_layout().into_owned(),
                n,
                m,
            );
            // `abs`: as ranking the materialised |scores|.
            let abs = scores.mapv(f32::abs).as_standard_layout().into_owned();
            let want_abs = reference(&abs, &prior.as_standard_layout().into_owned(), n, m);
            for (use_abs, want) in [(false, &want), (true, &want_abs)] {
                // In this layout, then standard layout both (the fast path).
                let mut got = prior.clone();
                nm_keep(scores.view(), got.view_mut(), n, m, use_abs).unwrap();
                prop_assert_eq!(&got, want);
                let mut fast = prior.as_standard_layout().into_owned();
                nm_keep(scores.as_standard_layout().view(), fast.view_mut(), n, m, use_abs)
                    .unwrap();
                prop_assert_eq!(&fast, want);
            }
            // Every group keeps at most n, and exactly n where fewer than m - n were pruned.
            let k_lanes = want.lanes(Axis(axis));
            let p_lanes = prior.lanes(Axis(axis));
            for (kl, pl) in k_lanes.into_iter().zip(p_lanes) {
                for g in 0..groups {
                    let kept = (g * m..(g + 1) * m).filter(|&i| kl[i]).count();
                    let had = (g * m..(g + 1) * m).filter(|&i| pl[i]).count();
                    prop_assert_eq!(kept, had.min(n));
                }
            }
        }
    }

    #[test]
    fn bad_n_m_and_shapes_are_errors() {
        let s = ArrayD::<f32>::zeros(IxDyn(&[2, 8]));
        let mut k = ArrayD::from_elem(IxDyn(&[2, 8]), true);
        assert!(nm_keep(s.view(), k.view_mut(), 5, 4, false).is_err());
        assert!(nm_keep(s.view(), k.view_mut(), 0, 0, false).is_err());
        assert!(nm_keep(s.view(), k.view_mut(), 2, 3, true).is_err());
        let mut k2 = ArrayD::from_elem(IxDyn(&[2, 4]), true);
        assert!(nm_keep(s.view(), k2.view_mut(), 2, 4, false).is_err());
        assert!(k.iter().all(|&x| x) && k2.iter().all(|&x| x));
    }
}
