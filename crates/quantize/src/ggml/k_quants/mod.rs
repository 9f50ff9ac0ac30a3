//! The K-quants: 256-weight super-blocks with quantized sub-block scales (`ggml-quants.c`).
//!
//! Ported from `quantize_row_q*_K_ref` with plain `*` and `+` in the C evaluation order (no
//! fused multiply-add), so the bytes match llama.cpp built without FMA contraction. For speed
//! the scale searches run several independent groups side by side: `make_qkx2_quants` over
//! the sub-blocks of a super-block (one lane per sub-block, each lane following C's exact
//! sequence of candidates), `make_qx_quants` over its candidate scales (they do not depend on
//! each other; the winner is then picked in C's order).

pub(crate) mod q2_k;
pub(crate) mod q3_k;
pub(crate) mod q4_k;
pub(crate) mod q5_k;
pub(crate) mod q6_k;
pub(crate) mod search;
#[cfg(target_arch = "x86_64")]
mod search_avx2;
#[cfg(target_arch = "x86_64")]
mod search_avx512;

pub(crate) use search::make_qx_quants;

/// Weights per super-block (`QK_K`).
pub const QK_K: usize = 256;

/// Blocks whose largest magnitude is below this are all-zero (`GROUP_MAX_EPS`).
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// `nearest_int` of ggml: round half to even by the `+ 1.5 * 2^23` trick (exact for
/// `|x| <= 4194303`; for larger inputs it returns the same wrapped bits as the C code).
#[inline(always)]
pub(crate) fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0;
    (val.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// Reads the 6-bit scale and min of sub-block `j` (`get_scale_min_k4`).
#[inline(always)]
pub(crate) fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Packs eight 6-bit scales and mins into 12 bytes (inverse of [`get_scale_min_k4`]).
#[inline(always)]
pub(crate) fn pack_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0x0f) | ((lm[j] & 0x0f) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}

/// One 16-weight sub-block of `x` as a fixed array.
#[inline(always)]
pub(crate) fn sub16(x: &[f32; QK_K], j: usize) -> &[f32; 16] {
    let (chunks, _) = x.as_chunks::<16>();
    &chunks[j]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-0.5), 0);
        assert_eq!(nearest_int(-1.5), -2);
        assert_eq!(nearest_int(-3.49), -3);
    }

    #[test]
    fn scale_min_packing_round_trips() {
        let ls = [0, 1, 17, 63, 32, 45, 5, 62];
        let lm = [63, 2, 33, 0, 60, 7, 41, 16];
        let s = pack_scale_min_k4(&ls, &lm);
        for j in 0..8 {
            assert_eq!(get_scale_min_k4(j, &s), (ls[j], lm[j]));
        }
    }
}
