//! Magnitude pruning of stored values in place: the selection of [`Pruner`](crate::Pruner) with
//! an L1 or L2 criterion, unstructured, one tensor, exact zeros counted as pruned, computed on
//! the values themselves with no score array and no mask, so that a tensor read from a file is
//! pruned in the buffer it was read into and written back from it.
//!
//! Three passes over the values, each split into contiguous ranges run in parallel: a radix
//! histogram of the top 16 bits of an order-preserving key of `|x|` (finiteness checked on the
//! way), the keys of the one bucket that holds the threshold, then zeroing. Ties are broken as
//! everywhere in this crate: among equal magnitudes the lowest index is pruned first. The result
//! is the mask `Pruner::new(L1Magnitude).amount(a).prune_composed(&w)` gives, applied.

use modelopt_tensor_core::{CoreError, Par};

use crate::{Amount, Result};

/// What [`prune_magnitude_in_place`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InPlaceReport {
    /// Elements of the tensor.
    pub elements: usize,
    /// Exact zeros before pruning (counted as already pruned).
    pub zeros_before: usize,
    /// Zeros after pruning (the zeros before plus the newly pruned).
    pub zeros_after: usize,
}

/// The 16-bit float formats stored as raw bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HalfFormat {
    /// IEEE binary16.
    F16,
    /// bfloat16.
    BF16,
}

const BUCKET_SHIFT: u32 = 16;
const BUCKETS: usize = 1 << (32 - BUCKET_SHIFT);

/// Prunes the `amount` of the non-zero values of `values` with the lowest magnitude, in place:
/// pruned values (and `-0.0`) become `+0.0`. As torch's `l1_unstructured` composed with a prior
/// mask of the non-zeros (and as [`crate::Pruner`] with `L1Magnitude` or `L2Magnitude`,
/// unstructured): a fraction is of the non-zeros, rounded half to even. Errors on an empty
/// tensor, a NaN or infinite value (naming its index), or a count above the non-zeros; `values`
/// is then unchanged.
///
/// ```
/// use modelopt_prune::{Amount, prune_magnitude_in_place};
/// use modelopt_tensor_core::Par;
/// let mut w = [0.5f32, -0.1, 0.0, 2.0, -0.3];
/// let r = prune_magnitude_in_place(&mut w, Amount::fraction(0.5)?, Par::Seq)?;
/// assert_eq!(w, [0.5, 0.0, 0.0, 2.0, 0.0]); // 2 of the 4 non-zeros: -0.1 and -0.3
/// assert_eq!((r.zeros_before, r.zeros_after), (1, 3));
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
pub fn prune_magnitude_in_place(
    values: &mut [f32],
    amount: Amount,
    par: Par,
) -> Result<InPlaceReport> {
    // Finite magnitudes have bit patterns below infinity's: keys at or above the limit are
    // NaN or infinite.
    let key = |x: f32| (x.to_bits() & 0x7FFF_FFFF) | 0x8000_0000;
    prune_keys(values, amount, par, key, 0xFF80_0000, 0.0)
}

/// [`prune_magnitude_in_place`] on 16-bit floats stored as their raw bits (little-endian `u16`
/// as read from a file); pruned values become `0x0000`.
///
/// ```
/// use modelopt_prune::{Amount, HalfFormat, prune_magnitude_in_place_half};
/// use modelopt_tensor_core::Par;
/// // bf16 bits of 1.0, -0.5, 0.25, -2.0
/// let mut w = [0x3F80u16, 0xBF00, 0x3E80, 0xC000];
/// prune_magnitude_in_place_half(&mut w, HalfFormat::BF16, Amount::count(2), Par::Seq)?;
/// assert_eq!(w, [0x3F80, 0, 0, 0xC000]);
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
pub fn prune_magnitude_in_place_half(
    bits: &mut [u16],
    format: HalfFormat,
    amount: Amount,
    par: Par,
) -> Result<InPlaceReport> {
    // All-ones exponent: infinity or NaN.
    let exponent = match format {
        HalfFormat::F16 => 0x7C00u32,
        HalfFormat::BF16 => 0x7F80,
    };
    // The magnitude bits order as the magnitudes do; shifted up so that the histogram's
    // buckets (top 16 bits) separate every value.
    let key = |b: u16| (u32::from(b & 0x7FFF) << 16) | 0x8000_0000;
    prune_keys(bits, amount, par, key, (exponent << 16) | 0x8000_0000, 0)
}

/// Contiguous ranges the passes split the values into (a few per thread, for balance).
fn ranges(n: usize, par: Par) -> usize {
    (par.degree() * 4).clamp(1, n.div_ceil(1 << 16).max(1))
}

/// The selection on keys: `key(x)` orders values by magnitude, and a key at or above `limit`
/// marks a NaN or infinity.
fn prune_keys<T, K>(
    values: &mut [T],
    amount: Amount,
    par: Par,
    key: K,
    limit: u32,
    zero: T,
) -> Result<InPlaceReport>
where
    T: Copy + Send + Sync,
    K: Fn(T) -> u32 + Sync + Send + Copy,
{
    let n = values.len();
    if n == 0 {
        return Err(CoreError::Empty { what: "weights" }.into());
    }
    let parts = ranges(n, par);
    let len = n.div_ceil(parts);
    let part = |i: usize| i * len..((i + 1) * len).min(n);
    let zero_key = key(zero);
    // Pass 1: histogram of the top 16 bits per range, in four interleaved copies so that runs
    // of equal buckets do not wait on each other's increments; the largest key, for the
    // finiteness check.
    let view: &[T] = values;
    let hists = par.map_range(parts, |i| {
        let mut h = vec![0u32; 4 * BUCKETS];
        let (mut top, xs) = (0u32, &view[part(i)]);
        let (quads, rest) = xs.as_chunks::<4>();
        for q in quads {
            let k = q.map(key);
            top = top.max(k[0].max(k[1]).max(k[2].max(k[3])));
            for (c, kk) in k.into_iter().enumerate() {
                h[c * BUCKETS + (kk >> BUCKET_SHIFT) as usize] += 1;
            }
        }
        for &x in rest {
            let kk = key(x);
            top = top.max(kk);
            h[(kk >> BUCKET_SHIFT) as usize] += 1;
        }
        let (a, b) = h.split_at_mut(2 * BUCKETS);
        let (a0, a1) = a.split_at_mut(BUCKETS);
        let (b0, b1) = b.split_at_mut(BUCKETS);
        for (((x, y), z), w) in a0.iter_mut().zip(a1.iter()).zip(b0.iter()).zip(b1.iter()) {
            *x += y + z + w;
        }
        h.truncate(BUCKETS);
        (h, top)
    });
    if hists.iter().any(|(_, top)| *top >= limit) {
        let index = view.iter().position(|&x| key(x) >= limit).unwrap_or(0);
        return Err(CoreError::NonFinite {
            value: f64::NAN,
            index,
            position: vec![index],
        }
        .into());
    }
    let mut hist = vec![0usize; BUCKETS];
    for (h, _) in hists {
        hist.iter_mut().zip(h).for_each(|(a, b)| *a += b as usize);
    }
    let zeros = hist[(zero_key >> BUCKET_SHIFT) as usize];
    let k = zeros + amount.units_to_prune_of(n, n - zeros, "weights")?;
    if k == 0 {
        return Ok(InPlaceReport {
            elements: n,
            zeros_before: 0,
            zeros_after: 0,
        });
    }
    let (mut below, mut bucket) = (0usize, BUCKETS - 1);
    for (b, &c) in hist.iter().enumerate() {
        if below + c >= k {
            bucket = b;
            break;
        }
        below += c;
    }
    // Pass 2: the keys of that bucket, per range and in order.
    let cands = par.map_range(parts, |i| {
        view[part(i)]
            .iter()
            .map(|&x| key(x))
            .filter(|&kk| (kk >> BUCKET_SHIFT) as usize == bucket)
            .collect::<Vec<u32>>()
    });
    let mut all: Vec<u32> = cands.iter().flatten().copied().collect();
    let r = k - below; // >= 1 and <= all.len() by the choice of bucket
    let (lt, &mut threshold, _) = all.select_nth_unstable(r - 1);
    let strictly_below = below + lt.iter().filter(|&&c| c < threshold).count();
    // Equal keys: the first `ties` of them (in index order) are pruned, the rest kept.
    let mut ties = k - strictly_below;
    let budgets: Vec<usize> = cands
        .iter()
        .map(|c| {
            let equal = c.iter().filter(|&&kk| kk == threshold).count();
            let take = equal.min(ties);
            ties -= take;
            take
        })
        .collect();
    // Pass 3: zero what is below the threshold and each range's share of the ties.
    par.for_each_chunk_mut(values, len, |i, chunk| {
        let mut budget = budgets[i];
        if budget == 0 {
            // The common case, written as a select so that it vectorises (no branch on data).
            for x in chunk.iter_mut() {
                *x = if key(*x) < threshold { zero } else { *x };
            }
            return;
        }
        for x in chunk.iter_mut() {
            let kk = key(*x);
            if kk < threshold || (kk == threshold && budget > 0) {
                budget -= usize::from(kk == threshold);
                *x = zero;
            }
        }
    });
    Ok(InPlaceReport {
        elements: n,
        zeros_before: zeros,
        zeros_after: k,
    })
}

#[cfg(test)]
mod tests {
    use ndarray::ArrayD;
    use proptest::prelude::*;

    use super::*;
    use crate::{L1Magnitude, Pruner};

    /// The mask path's answer: `Pruner` with zeros counted as pruned, the mask applied.
    fn by_mask(w: &[f32], amount: Amount) -> Vec<f32> {
        let a = ArrayD::from_shape_vec(vec![w.len()], w.to_vec()).unwrap();
        let mask = Pruner::new(L1Magnitude)
            .amount(amount)
            .prune_composed(&a)
            .unwrap();
        w.iter()
            .zip(mask.keep().iter())
            .map(|(&x, &k)| if k { x } else { 0.0 })
            .collect()
    }

    proptest! {
        #[test]
        fn equals_the_mask_path(
            // Few distinct values, so ties and zeros are common.
            w in prop::collection::vec(prop::sample::select(vec![0.0f32, -0.0, 1.0, -1.0, 0.5, 2.0, -3.0, 1e-30]), 1..300),
            frac in 0.0f64..=1.0,
            threads in 1usize..4,
        ) {
            let amount = Amount::fraction(frac).unwrap();
            let mut got = w.clone();
            let par = if threads == 1 { Par::Seq } else { Par::Rayon(threads) };
            let r = prune_magnitude_in_place(&mut got, amount, par).unwrap();
            let want = by_mask(&w, amount);
            prop_assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                            want.iter().map(|x| (x + 0.0).to_bits()).collect::<Vec<_>>());
            prop_assert_eq!(r.zeros_after, want.iter().filter(|&&x| x == 0.0).count());
        }
    }

    #[test]
    fn large_random_tensor_equals_the_mask_path() {
        let mut s = 7u64;
        let w: Vec<f32> = (0..300_000)
            .map(|i| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if i % 97 == 0 {
                    0.0
                } else {
                    ((s >> 40) as f32 / 16_777_216.0 - 0.5) * 3.0
                }
            })
            .collect();
        for amount in [
            Amount::fraction(0.5).unwrap(),
            Amount::count(1234),
            Amount::fraction(1.0).unwrap(),
        ] {
            let mut got = w.clone();
            prune_magnitude_in_place(&mut got, amount, Par::Rayon(3)).unwrap();
            assert_eq!(got, by_mask(&w, amount), "{amount:?}");
        }
    }

    #[test]
    fn halves_prune_like_their_f32_values() {
        // bf16 = the top half of f32 bits; f16 via known encodings.
        let f32s = [1.0f32, -0.5, 0.25, -2.0, 0.0, 0.75, -0.25];
        let mut bf: Vec<u16> = f32s.iter().map(|x| (x.to_bits() >> 16) as u16).collect();
        let r = prune_magnitude_in_place_half(
            &mut bf,
            HalfFormat::BF16,
            Amount::fraction(0.5).unwrap(),
            Par::Seq,
        )
        .unwrap();
        let want = by_mask(&f32s, Amount::fraction(0.5).unwrap());
        let back: Vec<f32> = bf
            .iter()
            .map(|&b| f32::from_bits(u32::from(b) << 16))
            .collect();
        assert_eq!(back, want);
        assert_eq!((r.zeros_before, r.zeros_after), (1, 4));
        // f16: 1.0 = 0x3C00, -0.5 = 0xB800, 0.25 = 0x3400, -2.0 = 0xC000.
        let mut h = [0x3C00u16, 0xB800, 0x3400, 0xC000];
        prune_magnitude_in_place_half(&mut h, HalfFormat::F16, Amount::count(2), Par::Seq).unwrap();
        assert_eq!(h, [0x3C00, 0, 0, 0xC000]);
    }

    #[test]
    fn bad_input_is_an_error_and_leaves_values_alone() {
        let mut w = [1.0f32, f32::NAN, 2.0];
        let err = prune_magnitude_in_place(&mut w, Amount::count(1), Par::Seq).unwrap_err();
        assert!(err.to_string().contains('1'), "{err}"); // the index
        assert_eq!(w[0], 1.0);
        let mut inf = [0x7C00u16, 0x3C00]; // f16 +inf
        assert!(
            prune_magnitude_in_place_half(&mut inf, HalfFormat::F16, Amount::count(1), Par::Seq)
                .is_err()
        );
        assert!(prune_magnitude_in_place(&mut [], Amount::count(0), Par::Seq).is_err());
        let mut w = [0.0f32, 1.0, 2.0];
        assert!(prune_magnitude_in_place(&mut w, Amount::count(3), Par::Seq).is_err()); // 2 non-zeros
        assert_eq!(w, [0.0, 1.0, 2.0]);
    }
}
