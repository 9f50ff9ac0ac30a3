//! Dense packing of b-bit indices (b = 1..=8), most significant bit first.
//!
//! The indices form one big-endian bit stream: index `i` occupies bits `[i*b, (i+1)*b)` counted
//! from the most significant bit of byte 0, and the last byte is padded with zero bits. So for
//! b = 4 element `2i` is the **high** nibble of byte `i` (bitsandbytes' NF4/FP4 order), for b = 8
//! it is byte `i`, and numpy decodes any b with `np.unpackbits` (which is MSB first):
//!
//! ```text
//! bits = np.unpackbits(packed)[: n * b].reshape(n, b)
//! idx = bits @ (1 << np.arange(b - 1, -1, -1))
//! ```

use crate::{QuantError, Result};

/// Bytes needed for `n` indices of `bits` bits.
///
/// ```
/// use modelopt_quantize::codebook::packed_len;
/// assert_eq!((packed_len(5, 3), packed_len(4, 4), packed_len(3, 8)), (2, 2, 3));
/// ```
pub fn packed_len(n: usize, bits: u8) -> usize {
    (n * usize::from(bits)).div_ceil(8)
}

/// Packs indices (each `< 2^bits`; higher bits are dropped) into a dense MSB-first stream.
///
/// ```
/// use modelopt_quantize::codebook::{pack_indices, unpack_indices};
/// assert_eq!(pack_indices(&[1, 2, 3], 4), vec![0x12, 0x30]);
/// assert_eq!(pack_indices(&[1, 0, 1, 1, 0, 0, 0, 0, 1], 1), vec![0b1011_0000, 0b1000_0000]);
/// let idx = [5u8, 0, 7, 2, 1];
/// assert_eq!(unpack_indices(&pack_indices(&idx, 3), 5, 3)?, idx);
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
pub fn pack_indices(indices: &[u8], bits: u8) -> Vec<u8> {
    let b = u32::from(bits.clamp(1, 8));
    let mut out = vec![0u8; packed_len(indices.len(), b as u8)];
    match b {
        8 => out.copy_from_slice(indices),
        4 => {
            for (o, p) in out.iter_mut().zip(indices.chunks(2)) {
                *o = (p[0] << 4) | p.get(1).map_or(0, |v| v & 0x0F);
            }
        }
        _ => {
            let mask = (1u32 << b) - 1;
            let (mut acc, mut fill, mut j) = (0u32, 0u32, 0usize);
            for &v in indices {
                acc = (acc << b) | (u32::from(v) & mask);
                fill += b;
                if fill >= 8 {
                    fill -= 8;
                    out[j] = (acc >> fill) as u8;
                    j += 1;
                }
            }
            if fill > 0 {
                out[j] = (acc << (8 - fill)) as u8;
            }
        }
    }
    out
}

/// Unpacks `n` indices of `bits` bits; errors unless `packed` holds exactly
/// [`packed_len`]`(n, bits)` bytes or `bits` is outside 1..=8.
///
/// ```
/// use modelopt_quantize::codebook::unpack_indices;
/// assert_eq!(unpack_indices(&[0xAB], 2, 4)?, vec![0xA, 0xB]);
/// assert!(unpack_indices(&[0xAB], 3, 4).is_err());
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
pub fn unpack_indices(packed: &[u8], n: usize, bits: u8) -> Result<Vec<u8>> {
    if !(1..=8).contains(&bits) {
        return Err(modelopt_tensor_core::CoreError::invalid(
            "bits",
            format!("must be in 1..=8, got {bits}"),
        )
        .into());
    }
    if packed.len() != packed_len(n, bits) {
        return Err(QuantError::Length {
            what: "packed indices",
            expected: packed_len(n, bits),
            found: packed.len(),
            unit: "bytes",
        });
    }
    let b = u32::from(bits);
    let mut out = Vec::with_capacity(n);
    match b {
        8 => out.extend_from_slice(packed),
        4 => {
            for &p in packed {
                out.push(p >> 4);
                out.push(p & 0x0F);
            }
            out.truncate(n);
        }
        _ => {
            let mask = (1u32 << b) - 1;
            let (mut acc, mut fill) = (0u32, 0u32);
            let mut bytes = packed.iter();
            while out.len() < n {
                while fill < b {
                    acc = (acc << 8) | u32::from(*bytes.next().unwrap_or(&0));
                    fill += 8;
                }
                fill -= b;
                out.push(((acc >> fill) & mask) as u8);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn round_trips_for_every_width(bits in 1u8..=8, raw in prop::collection::vec(any::<u8>(), 0..67)) {
            let idx: Vec<u8> = raw.iter().map(|&v| (u32::from(v) & ((1u32 << bits) - 1)) as u8).collect();
            let packed = pack_indices(&idx, bits);
            prop_assert_eq!(packed.len(), packed_len(idx.len(), bits));
            prop_assert_eq!(unpack_indices(&packed, idx.len(), bits)?, idx);
        }
    }

    #[test]
    fn msb_first_layout() {
        // 3-bit: 101 011 111 -> 1010 1111 1000 0000
        assert_eq!(pack_indices(&[5, 3, 7], 3), vec![0b1010_1111, 0b1000_0000]);
        assert_eq!(pack_indices(&[0xFF, 1], 8), vec![0xFF, 1]);
    }
}
