//! Pruning applied to tensors as a file stores them: row-major elements of 1-8 bytes in any
//! dtype. A pruned element becomes all-zero bytes (`+0.0` in every float format, `0` in every
//! integer one), and removing channels keeps the bytes of the others, so no value is decoded.

use modelopt_tensor_core::{CoreError, Par};

use crate::Result;

/// Elements per parallel work item.
const CHUNK: usize = 1 << 16;

/// `out = raw` with every element whose `keep` is false set to zero bytes; `raw` holds
/// `keep.len()` elements of `element_bytes` bytes (2, 4 or 8). `out` is resized and reused
/// (no allocation when its capacity suffices), the work split over threads as `par` allows.
///
/// ```
/// use modelopt_prune::zero_pruned_bytes;
/// use modelopt_tensor_core::Par;
/// let raw: Vec<u8> = [1.5f32, -2.0, 3.0].iter().flat_map(|x| x.to_le_bytes()).collect();
/// let mut out = Vec::new();
/// zero_pruned_bytes(&raw, 4, &[true, false, true], &mut out, Par::Seq)?;
/// assert_eq!(&out[4..8], &[0, 0, 0, 0]);
/// assert_eq!(&out[..4], &raw[..4]);
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
pub fn zero_pruned_bytes(
    raw: &[u8],
    element_bytes: usize,
    keep: &[bool],
    out: &mut Vec<u8>,
    par: Par,
) -> Result<()> {
    if !matches!(element_bytes, 2 | 4 | 8) {
        return Err(CoreError::invalid(
            "element_bytes",
            format!("{element_bytes}: stored elements of 2, 4 or 8 bytes are pruned"),
        )
        .into());
    }
    if keep.len().checked_mul(element_bytes) != Some(raw.len()) {
        return Err(CoreError::ShapeMismatch {
            expected: vec![keep.len() * element_bytes],
            found: vec![raw.len()],
        }
        .into());
    }
    out.clear();
    out.resize(raw.len(), 0);
    match element_bytes {
        2 => zero_elements::<2>(raw, keep, out, par),
        4 => zero_elements::<4>(raw, keep, out, par),
        _ => zero_elements::<8>(raw, keep, out, par),
    }
    Ok(())
}

/// `out = raw` with the elements of `N` bytes whose `keep` is false set to zero (branch-free).
fn zero_elements<const N: usize>(raw: &[u8], keep: &[bool], out: &mut [u8], par: Par) {
    par.for_each_chunk_mut(out, CHUNK * N, |i, o| {
        let r = &raw[i * CHUNK * N..i * CHUNK * N + o.len()];
        let k = &keep[i * CHUNK..i * CHUNK + o.len() / N];
        let (o, _) = o.as_chunks_mut::<N>();
        let (r, _) = r.as_chunks::<N>();
        for ((o, r), &k) in o.iter_mut().zip(r).zip(k) {
            let m = u8::from(k).wrapping_neg();
            for j in 0..N {
                o[j] = r[j] & m;
            }
        }
    });
}

/// The bytes of a row-major tensor of `shape` (`element_bytes` per element) keeping only the
/// indices `kept` of `axis`, in the order given: what removing channels does to a stored
/// tensor. Errors on a bad axis, an index out of range or a byte length that is not the shape's.
///
/// ```
/// use modelopt_prune::select_channel_bytes;
/// // A 2x3 tensor of 1-byte elements; keep columns 0 and 2.
/// let out = select_channel_bytes(&[1, 2, 3, 4, 5, 6], &[2, 3], 1, &[0, 2], 1)?;
/// assert_eq!(out, [1, 3, 4, 6]);
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
pub fn select_channel_bytes(
    bytes: &[u8],
    shape: &[usize],
    axis: usize,
    kept: &[usize],
    element_bytes: usize,
) -> Result<Vec<u8>> {
    let Some(&c) = shape.get(axis) else {
        return Err(
            CoreError::invalid("axis", format!("{axis} of a {}-D tensor", shape.len())).into(),
        );
    };
    if let Some(&k) = kept.iter().find(|&&k| k >= c) {
        return Err(CoreError::invalid(
            "kept channels",
            format!("index {k} of an axis of length {c}"),
        )
        .into());
    }
    let elements = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if elements.and_then(|e| e.checked_mul(element_bytes)) != Some(bytes.len()) {
        return Err(CoreError::ShapeMismatch {
            expected: shape.to_vec(),
            found: vec![bytes.len() / element_bytes.max(1)],
        }
        .into());
    }
    let outer: usize = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product::<usize>() * element_bytes;
    let mut out = Vec::with_capacity(outer * kept.len() * inner);
    for o in 0..outer {
        for &k in kept {
            let at = (o * c + k) * inner;
            out.extend_from_slice(&bytes[at..at + inner]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroing_keeps_bytes_of_kept_elements_for_every_width_and_thread_count() {
        let n = 3 * CHUNK + 5; // several chunks and a tail
        let keep: Vec<bool> = (0..n).map(|i| i % 3 != 1).collect();
        for eb in [2usize, 4, 8] {
            let raw: Vec<u8> = (0..n * eb).map(|i| (i % 251) as u8 | 1).collect();
            for par in [Par::Seq, Par::Rayon(3)] {
                let mut out = vec![9u8; 7]; // reused: its old contents must not leak
                zero_pruned_bytes(&raw, eb, &keep, &mut out, par).unwrap();
                for (i, &k) in keep.iter().enumerate() {
                    let (got, src) = (&out[i * eb..(i + 1) * eb], &raw[i * eb..(i + 1) * eb]);
                    if k {
                        assert_eq!(got, src, "eb {eb} element {i}");
                    } else {
                        assert!(got.iter().all(|&b| b == 0), "eb {eb} element {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn bad_zeroing_input_is_an_error() {
        let mut out = Vec::new();
        assert!(zero_pruned_bytes(&[0; 8], 3, &[true; 2], &mut out, Par::Seq).is_err());
        assert!(zero_pruned_bytes(&[0; 8], 4, &[true; 3], &mut out, Par::Seq).is_err());
    }

    #[test]
    fn channel_selection_along_each_axis() {
        // 2x3x2 tensor of 2-byte elements: element value = its flat index.
        let bytes: Vec<u8> = (0u16..12).flat_map(u16::to_le_bytes).collect();
        let vals = |b: Vec<u8>| -> Vec<u16> {
            b.chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect()
        };
        let shape = [2, 3, 2];
        assert_eq!(
            vals(select_channel_bytes(&bytes, &shape, 0, &[1], 2).unwrap()),
            (6..12).collect::<Vec<_>>()
        );
        assert_eq!(
            vals(select_channel_bytes(&bytes, &shape, 1, &[2, 0], 2).unwrap()),
            [4, 5, 0, 1, 10, 11, 6, 7]
        );
        assert_eq!(
            vals(select_channel_bytes(&bytes, &shape, 2, &[1], 2).unwrap()),
            [1, 3, 5, 7, 9, 11]
        );
        assert!(select_channel_bytes(&bytes, &shape, 3, &[0], 2).is_err()); // no axis 3
        assert!(select_channel_bytes(&bytes, &shape, 1, &[3], 2).is_err()); // index past 3
        assert!(select_channel_bytes(&bytes[2..], &shape, 1, &[0], 2).is_err()); // short
    }
}
