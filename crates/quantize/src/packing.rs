//! Two codes per byte for bit widths of 4 or fewer.
//!
//! Nibble order: element `2i` goes in the **low** nibble of byte `i`, element `2i + 1` in the high
//! nibble (the order of GGML's Q4 formats within a pair, and of numpy
//! `lo | (hi << 4)`). Signed codes are stored as 4-bit two's complement; an odd element count
//! leaves the last high nibble 0.

/// Packs one code per byte (only the low 4 bits of each are kept) into two codes per byte.
///
/// ```
/// use modelopt_quantize::packing::{pack_nibbles, unpack_nibbles};
/// let codes: Vec<u8> = [-7i8, 3, 7, -1, 5].iter().map(|&c| c as u8).collect();
/// let packed = pack_nibbles(&codes);
/// assert_eq!(packed, vec![0x39, 0xF7, 0x05]);
/// assert_eq!(unpack_nibbles(&packed, 5, true)?, vec![-7, 3, 7, -1, 5]);
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
pub fn pack_nibbles(codes: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; codes.len().div_ceil(2)];
    let mut pairs = codes.chunks_exact(2);
    for (o, p) in out.iter_mut().zip(&mut pairs) {
        *o = (p[0] & 0x0F) | (p[1] << 4);
    }
    if let (Some(&last), Some(o)) = (pairs.remainder().first(), out.last_mut()) {
        *o = last & 0x0F;
    }
    out
}

/// Unpacks `n` codes from two-per-byte storage, sign-extending the nibbles when `signed`.
/// Errors if `packed` does not hold exactly `ceil(n / 2)` bytes.
///
/// ```
/// use modelopt_quantize::packing::unpack_nibbles;
/// assert_eq!(unpack_nibbles(&[0xF1], 2, false)?, vec![1, 15]);
/// assert!(unpack_nibbles(&[0xF1], 3, false).is_err());
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
pub fn unpack_nibbles(packed: &[u8], n: usize, signed: bool) -> crate::Result<Vec<i32>> {
    if packed.len() != n.div_ceil(2) {
        return Err(crate::QuantError::Length {
            what: "packed 4-bit codes",
            expected: n.div_ceil(2),
            found: packed.len(),
            unit: "bytes",
        });
    }
    let nibble = |v: u8| -> i32 {
        if signed {
            i32::from(((v << 4) as i8) >> 4)
        } else {
            i32::from(v & 0x0F)
        }
    };
    let mut out = Vec::with_capacity(n);
    for &b in packed {
        out.push(nibble(b));
        out.push(nibble(b >> 4));
    }
    out.truncate(n);
    Ok(out)
}

/// Widens one-per-byte codes (two's complement when `signed`) to `i32`.
pub(crate) fn widen_bytes(bytes: &[u8], signed: bool) -> Vec<i32> {
    if signed {
        bytes.iter().map(|&b| i32::from(b as i8)).collect()
    } else {
        bytes.iter().map(|&b| i32::from(b)).collect()
    }
}
