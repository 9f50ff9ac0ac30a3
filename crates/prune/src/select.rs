//! Selection of the `k` lowest scores in O(n): a radix histogram on the top 16 bits of an
//! order-preserving `u32` key, then `select_nth_unstable` on the one bucket that holds the
//! threshold. No sort. Several tensors (global scope) are one sequence in order, so the
//! ranking over all of them is still O(total).
//!
//! Ties: the lowest score is pruned first; among equal scores the lowest position (tensor order,
//! then row-major flat index) is pruned first.

/// A key whose unsigned order equals the float order of a finite `f32` (`-0.0` equals `+0.0`).
#[inline]
pub(crate) fn ordered_key(x: f32) -> u32 {
    let b = (x + 0.0).to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// `ordered_key(|x|)` straight from the bits: the bit patterns of non-negative floats order as
/// the floats do.
#[inline]
pub(crate) fn abs_key(x: f32) -> u32 {
    (x.to_bits() & 0x7FFF_FFFF) | 0x8000_0000
}

/// One tensor's scores in row-major order, with the units still unpruned (`None`: all).
pub(crate) struct Segment<'a> {
    pub scores: &'a [f32],
    pub keep: Option<&'a [bool]>,
}

const BUCKET_SHIFT: u32 = 16;

/// Prunes the `k` lowest-key units among those still kept, over all segments together.
/// Returns one keep vector per segment (the prior keep AND not pruned now), or `None` if a kept
/// key lies at or above `abs_key(inf)` (a non-finite input under `abs_key`) while `k > 0`.
/// `k` must not exceed the number of kept units (callers check).
pub(crate) fn prune_lowest<K: Fn(f32) -> u32 + Copy>(
    segs: &[Segment<'_>],
    k: usize,
    key: K,
) -> Option<Vec<Vec<bool>>> {
    if k == 0 {
        return Some(
            segs.iter()
                .map(|s| match s.keep {
                    Some(m) => m.to_vec(),
                    None => vec![true; s.scores.len()],
                })
                .collect(),
        );
    }
    if segs.iter().map(|s| s.scores.len()).sum::<usize>() > u32::MAX as usize {
        return Some(prune_lowest_large(segs, k, key));
    }
    // Pass 1: histogram of the top 16 bits of the key over kept units.
    let mut hist = vec![0u32; 1 << (32 - BUCKET_SHIFT)];
    for s in segs {
        match s.keep {
            None => {
                for &x in s.scores {
                    hist[(key(x) >> BUCKET_SHIFT) as usize] += 1;
                }
            }
            Some(m) => {
                for (&x, &kp) in s.scores.iter().zip(m) {
                    hist[(key(x) >> BUCKET_SHIFT) as usize] += u32::from(kp);
                }
            }
        }
    }
    // Keys from `abs_key` of NaN/Inf fall in these top buckets: callers that skipped the
    // finiteness pre-check learn of one here at no extra pass.
    if hist[(0xFF80_0000u32 >> BUCKET_SHIFT) as usize..]
        .iter()
        .any(|&c| c != 0)
    {
        return None;
    }
    let mut below = 0usize;
    let mut bucket = hist.len() - 1;
    for (b, &c) in hist.iter().enumerate() {
        let c = c as usize;
        if below + c >= k {
            bucket = b;
            break;
        }
        below += c;
    }
    // Pass 2: the keys of that bucket, then select the (k - below)-th smallest among them.
    let mut cand = Vec::new();
    for s in segs {
        match s.keep {
            None => cand.extend(
                s.scores
                    .iter()
                    .map(|&x| key(x))
                    .filter(|&kk| (kk >> BUCKET_SHIFT) as usize == bucket),
            ),
            Some(m) => cand.extend(
                s.scores
                    .iter()
                    .zip(m)
                    .filter(|&(_, &kp)| kp)
                    .map(|(&x, _)| key(x))
                    .filter(|&kk| (kk >> BUCKET_SHIFT) as usize == bucket),
            ),
        }
    }
    let r = k - below; // >= 1 and <= cand.len() by the choice of bucket
    let (lt, &mut threshold, _) = cand.select_nth_unstable(r - 1);
    let strictly_below = below + lt.iter().filter(|&&c| c < threshold).count();
    let mut ties = k - strictly_below;
    let equal = cand.iter().filter(|&&c| c == threshold).count();
    // Pass 3: prune everything below the threshold and the first `ties` equal to it.
    let out = segs
        .iter()
        .map(|s| {
            let mut out: Vec<bool> = match s.keep {
                None => s.scores.iter().map(|&x| key(x) > threshold).collect(),
                Some(m) => s
                    .scores
                    .iter()
                    .zip(m)
                    .map(|(&x, &kp)| kp & (key(x) > threshold))
                    .collect(),
            };
            // Equal keys: unless all of them go, a second pass prunes only the first `ties`.
            if equal == ties {
                return out;
            }
            for (i, (&x, o)) in s.scores.iter().zip(out.iter_mut()).enumerate() {
                if key(x) == threshold && s.keep.is_none_or(|m| m[i]) {
                    if ties > 0 {
                        ties -= 1;
                    } else {
                        *o = true;
                    }
                }
            }
            out
        })
        .collect();
    Some(out)
}

/// Fallback for more than 2^32 units (bucket counts would overflow u32): one selection on
/// (key, position) pairs.
fn prune_lowest_large<K: Fn(f32) -> u32 + Copy>(
    segs: &[Segment<'_>],
    k: usize,
    key: K,
) -> Vec<Vec<bool>> {
    let mut all: Vec<(u32, usize, usize)> = Vec::new();
    for (si, s) in segs.iter().enumerate() {
        for (i, &x) in s.scores.iter().enumerate() {
            if s.keep.is_none_or(|m| m[i]) {
                all.push((key(x), si, i));
            }
        }
    }
    let mut out: Vec<Vec<bool>> = segs
        .iter()
        .map(|s| {
            s.keep
                .map_or_else(|| vec![true; s.scores.len()], <[bool]>::to_vec)
        })
        .collect();
    if k > 0 {
        all.select_nth_unstable(k - 1);
        all[..k].iter().for_each(|&(_, si, i)| out[si][i] = false);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_like_floats() {
        let xs = [-3.0f32, -1.0, -0.0, 0.0, 1e-40, 0.5, 2.0, 1e30];
        for w in xs.windows(2) {
            assert!(ordered_key(w[0]) <= ordered_key(w[1]), "{w:?}");
        }
        assert_eq!(ordered_key(-0.0), ordered_key(0.0));
        assert_eq!(abs_key(-2.0), ordered_key(2.0));
    }

    #[test]
    fn ties_prune_lowest_index_first() {
        let s = [1.0f32, 0.0, 1.0, 1.0, 2.0];
        let out = prune_lowest(
            &[Segment {
                scores: &s,
                keep: None,
            }],
            3,
            ordered_key,
        )
        .unwrap();
        assert_eq!(out[0], [false, false, false, true, true]);
    }

    #[test]
    fn matches_sorting_reference() {
        let mut x = 12345u64;
        let s: Vec<f32> = (0..1000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) % 50) as f32 - 25.0
            })
            .collect();
        for k in [0, 1, 7, 500, 999, 1000] {
            let out = prune_lowest(
                &[Segment {
                    scores: &s,
                    keep: None,
                }],
                k,
                ordered_key,
            )
            .unwrap();
            let mut idx: Vec<usize> = (0..s.len()).collect();
            idx.sort_by(|&a, &b| s[a].total_cmp(&s[b]).then(a.cmp(&b)));
            let mut want = vec![true; s.len()];
            idx[..k].iter().for_each(|&i| want[i] = false);
            assert_eq!(out[0], want, "k={k}");
        }
    }
}
