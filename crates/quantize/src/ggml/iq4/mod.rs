//! The non-linear 4-bit types IQ4_NL and IQ4_XS (`quantize_row_iq4_nl_impl` of
//! `ggml-quants.c`): each 4-bit code indexes the 16-level table [`KVALUES_IQ4NL`], scaled per
//! 32-weight block.
//!
//! The scale of a block is searched among 16 candidates (the one from the block's largest
//! magnitude and `(k - 127) / max` for `k = -7..=7`), each scored by the weighted least-squares
//! fit of the block to its nearest levels; the best candidate's fitted scale wins. The
//! candidates do not depend on each other, so the search runs them as 16 lanes side by side
//! (one AVX-512 register, or a portable loop), each lane summing over the block in C's order;
//! the winner is then picked in C's order. The arithmetic is llama.cpp's with plain `*` and
//! `+` (no fused multiply-add), so the bytes match llama.cpp built without FMA contraction.

pub(crate) mod nl;
#[cfg(target_arch = "x86_64")]
mod search_avx512;
pub(crate) mod xs;

use super::k_quants::GROUP_MAX_EPS;
use super::simd::first_abs_max_index_32;

/// The 16 levels of IQ4_NL and IQ4_XS (`kvalues_iq4nl` of `ggml-common.h`), ascending.
pub const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// The levels as f32, for the search.
const KV: [f32; 16] = {
    let mut v = [0f32; 16];
    let mut i = 0;
    while i < 16 {
        v[i] = KVALUES_IQ4NL[i] as f32;
        i += 1;
    }
    v
};

/// `THRESHOLDS[i]`: the smallest f32 `a` for which [`best_index`] prefers level `i + 1` over
/// level `i`, i.e. `!(a - val[i] < val[i + 1] - a)` with both differences rounded (both sides
/// are monotone in `a`, so the preference switches once). Hence, for any non-NaN `a`,
/// `best_index(a)` is the number of thresholds `<= a` (unit-tested below).
pub(crate) const THRESHOLDS: [f32; 15] = {
    let mut t = [0f32; 15];
    let mut i = 0;
    while i < 15 {
        let (lo, hi) = (KV[i], KV[i + 1]);
        // Bisect over the ordered f32 values of [lo, hi]: false at lo, true at hi.
        let (mut a, mut c) = (ordered(lo), ordered(hi));
        while c - a > 1 {
            let m = a + (c - a) / 2;
            let v = unordered(m);
            if v - lo < hi - v {
                a = m;
            } else {
                c = m;
            }
        }
        t[i] = unordered(c);
        i += 1;
    }
    t
};

/// A key that orders finite f32 values as integers (`-0.0` and `+0.0` both 0).
const fn ordered(v: f32) -> i64 {
    let b = v.to_bits();
    if b >> 31 == 0 {
        b as i64
    } else {
        -((b & 0x7fff_ffff) as i64)
    }
}

/// The f32 of an [`ordered`] key.
const fn unordered(k: i64) -> f32 {
    if k >= 0 {
        f32::from_bits(k as u32)
    } else {
        f32::from_bits((-k) as u32 | 0x8000_0000)
    }
}

/// Candidate scales tried per block (`ntry = 7`: `2 * 7 + 1`, plus the first guess).
pub(crate) const LANES: usize = 16;

/// The level index nearest to `x` as `best_index_int8(16, kvalues_iq4nl, x)` computes it:
/// binary search for the bracketing pair `val[mu - 1] <= x < val[mu]`, then the lower one when
/// `x - val[mu - 1] < val[mu] - x` (both differences rounded to f32, ties to the upper).
/// Below the table gives 0, above it (and NaN) 15, as the C code's early returns do.
#[inline(always)]
pub(crate) fn best_index(x: f32) -> u8 {
    // idx = the largest i in 0..=15 with !(x < val[i]) (val[0] counts as passed): a
    // branch-free binary search over a monotone predicate; NaN passes every test.
    let mut idx = 0usize;
    for step in [8, 4, 2, 1] {
        // Not `x >= v`: NaN must pass, as it does in C's `if (x < val[mav]) ... else ...`.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        if !(x < KV[idx + step]) {
            idx += step;
        }
    }
    let lo = idx.min(14);
    let hi = (idx + 1).min(15);
    if x - KV[lo] < KV[hi] - x {
        lo as u8
    } else {
        hi as u8
    }
}

/// The 16 candidate inverse scales of a block whose first largest-magnitude weight is `max`
/// (non-zero): lane 0 is `1 / (max / 127)`, lane `1 + k` is `(k - 7 - 127) / max`.
#[inline(always)]
pub(crate) fn candidates(max: f32) -> [f32; LANES] {
    let mut id = [0f32; LANES];
    // ntry > 0: d = -max / values[0].
    let d = -max / KV[0];
    id[0] = 1.0 / d;
    for (k, v) in id[1..].iter_mut().enumerate() {
        *v = (k as i32 - 7 + KVALUES_IQ4NL[0] as i32) as f32 / max;
    }
    id
}

/// `KV[i + 1] - KV[i]`: the level is `KV[0]` plus these steps for each threshold passed.
const STEPS: [f32; 15] = {
    let mut s = [0f32; 15];
    let mut i = 0;
    while i < 15 {
        s[i] = KV[i + 1] - KV[i];
        i += 1;
    }
    s
};

/// For each candidate inverse scale `id[t]`: `sumqx = Σ w q x` and `sumq2 = Σ w q²` over the
/// block, with `q` the level nearest to `id[t] * x`, summed in element order.
///
/// The level is found by counting [`THRESHOLDS`] (exact integer sums, equal to
/// `KV[best_index(a)]` for finite `a`), branch-free over the 16 lanes so that the compiler
/// vectorises it (the AVX2 copy of the row kernels runs 8 lanes at a time).
#[inline(always)]
pub(crate) fn sums_portable(
    x: &[f32; 32],
    w: &[f32; 32],
    id: &[f32; LANES],
) -> ([f32; LANES], [f32; LANES]) {
    let mut sqx = [0f32; LANES];
    let mut sq2 = [0f32; LANES];
    for j in 0..32 {
        let (xj, wj) = (x[j], w[j]);
        for t in 0..LANES {
            let a = id[t] * xj;
            let mut q = KV[0];
            for i in 0..15 {
                q += if a >= THRESHOLDS[i] { STEPS[i] } else { 0.0 };
            }
            let wq = wj * q;
            sqx[t] += wq * xj;
            sq2[t] += wq * q;
        }
    }
    (sqx, sq2)
}

/// The winning scale from the lanes' sums, in C's order: the first guess's fitted scale, then
/// each candidate in turn if it fits better (`sumqx² / sumq2` larger).
#[inline(always)]
fn pick(sqx: &[f32; LANES], sq2: &[f32; LANES]) -> f32 {
    // Each lane's fitted scale and score, as C computes them once that lane wins (one vector
    // division instead of a scalar one per win); the scan below is then branch-free.
    let d: [f32; LANES] = std::array::from_fn(|t| sqx[t] / sq2[t]);
    let b: [f32; LANES] = std::array::from_fn(|t| d[t] * sqx[t]);
    let s: [f32; LANES] = std::array::from_fn(|t| sqx[t] * sqx[t]);
    // llama.cpp c392e509 writes 0/0 here when every weight is zero (possible only with
    // importance weights); newer llama.cpp guards it with `sumq2 > 0 ? ... : 0`, as done here.
    let (mut win, mut best) = if sq2[0] > 0.0 {
        (d[0], b[0])
    } else {
        (0.0, 0.0 * sqx[0])
    };
    for t in 1..LANES {
        let better = sq2[t] > 0.0 && s[t] > best * sq2[t];
        win = if better { d[t] } else { win };
        best = if better { b[t] } else { best };
    }
    win
}

/// Which implementation of the 16-lane sums a quantizer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// Plain Rust.
    Portable,
    /// AVX-512F/BW/DQ (only produced after run-time detection).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    #[inline(always)]
    fn sums(self, x: &[f32; 32], w: &[f32; 32], id: &[f32; LANES]) -> ([f32; LANES], [f32; LANES]) {
        match self {
            Kernel::Portable => sums_portable(x, w, id),
            // SAFETY: `Kernel::Avx512` is only made from `Isa::Avx512` (`kernel_for`), which
            // `Isa::detect` returns only after `simd_avx512::available()`.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { search_avx512::sums(x, w, id) },
        }
    }

    #[inline(always)]
    fn candidates(self, max: f32) -> [f32; LANES] {
        match self {
            Kernel::Portable => candidates(max),
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { search_avx512::candidates(max) },
        }
    }

    /// `best_index(id * x[j])` for each `j`.
    #[inline(always)]
    fn indices(self, x: &[f32; 32], id: f32) -> [u8; 32] {
        match self {
            Kernel::Portable => std::array::from_fn(|j| best_index(id * x[j])),
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { search_avx512::indices(x, id) },
        }
    }
}

/// Per-weight importance of a block: `x²` without importance weights, `qw * sqrt(sigma2 + x²)`
/// with them (`sigma2` = twice the mean square of the super-block).
#[inline(always)]
pub(crate) fn block_weights(x: &[f32; 32], qw: Option<&[f32; 32]>, sigma2: f32) -> [f32; 32] {
    match qw {
        None => std::array::from_fn(|j| x[j] * x[j]),
        Some(qw) => std::array::from_fn(|j| qw[j] * (sigma2 + x[j] * x[j]).sqrt()),
    }
}

/// `2 * mean(x²)` of a super-block, summed in element order as the C code does.
#[inline(always)]
pub(crate) fn sigma2(x: &[f32]) -> f32 {
    let mut s = 0f32;
    for v in x {
        s += v * v;
    }
    s * (2.0 / x.len() as f32)
}

/// The searched scale of one 32-weight block (0 when its largest magnitude is below
/// `GROUP_MAX_EPS`).
#[inline(always)]
pub(crate) fn block_scale(kernel: Kernel, x: &[f32; 32], w: &[f32; 32]) -> f32 {
    // The first weight of largest magnitude (C: `if (ax > amax)` in element order).
    let max = x[first_abs_max_index_32(x)];
    if max.abs() < GROUP_MAX_EPS {
        return 0.0;
    }
    let (sqx, sq2) = kernel.sums(x, w, &kernel.candidates(max));
    pick(&sqx, &sq2)
}

/// Packs 32 codes as GGML does: byte `j` holds element `j` (low nibble) and `j + 16` (high).
#[inline(always)]
pub(crate) fn pack(l: &[u8; 32]) -> [u8; 16] {
    std::array::from_fn(|j| l[j] | (l[j + 16] << 4))
}

/// The kernel for this CPU.
pub(crate) fn detect() -> Kernel {
    kernel_for(super::rows::Isa::detect())
}

/// The kernel that goes with the row kernels' CPU level (`Isa::Avx512` has been detected).
pub(crate) fn kernel_for(isa: super::rows::Isa) -> Kernel {
    match isa {
        #[cfg(target_arch = "x86_64")]
        super::rows::Isa::Avx512 => Kernel::Avx512,
        _ => Kernel::Portable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `best_index_int8` of ggml-quants.c, literally.
    fn best_index_c(x: f32) -> u8 {
        let val = &KV;
        if x <= val[0] {
            return 0;
        }
        if x >= val[15] {
            return 15;
        }
        let (mut ml, mut mu) = (0usize, 15usize);
        while mu - ml > 1 {
            let mav = (ml + mu) / 2;
            if x < val[mav] {
                mu = mav;
            } else {
                ml = mav;
            }
        }
        if x - val[mu - 1] < val[mu] - x {
            (mu - 1) as u8
        } else {
            mu as u8
        }
    }

    #[test]
    fn best_index_is_the_c_binary_search() {
        let mut xs = vec![
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            1e30,
            -1e30,
        ];
        for i in -14_000..14_000 {
            xs.push(i as f32 * 0.01 + 3e-3);
        }
        // Around every level and midpoint, bit by bit.
        for k in 0..16 {
            for c in [
                KV[k],
                if k < 15 {
                    (KV[k] + KV[k + 1]) / 2.0
                } else {
                    KV[k]
                },
            ] {
                let b = c.to_bits();
                for d in 0..64u32 {
                    xs.push(f32::from_bits(b.wrapping_add(d)));
                    xs.push(f32::from_bits(b.wrapping_sub(d)));
                }
            }
        }
        for x in xs {
            assert_eq!(best_index(x), best_index_c(x), "{x}");
        }
    }

    #[test]
    fn best_index_counts_thresholds() {
        for (i, &t) in THRESHOLDS.iter().enumerate() {
            let below = f32::from_bits(if t > 0.0 {
                t.to_bits() - 1
            } else {
                t.to_bits() + 1
            });
            assert_eq!(best_index(t) as usize, i + 1, "{t}");
            assert_eq!(best_index(below) as usize, i, "{below}");
            assert!((t - (KV[i] + KV[i + 1]) / 2.0).abs() < 1e-4);
        }
        for k in -140_000..140_000 {
            let a = k as f32 * 0.001 + 3e-4;
            let n = THRESHOLDS.iter().filter(|&&t| t <= a).count();
            assert_eq!(best_index(a) as usize, n, "{a}");
        }
    }

    /// The portable kernels on reference rows (the row functions run the detected kernel, which
    /// `ggml_reference.rs` checks on all 64): two noise rows and the edge-case rows (zeros,
    /// constants, outliers, ties, 1e-30, 6e5, ramp, one-signed, alternating, single spike).
    /// A subset, to keep the debug-build test time short.
    #[test]
    fn portable_kernel_matches_reference_bytes() {
        use crate::ggml::GgmlType;
        use crate::ggml::rows::encode_iq4;
        let read = |name: &str| {
            let path = format!("{}/tests/data/ggml/{name}", env!("CARGO_MANIFEST_DIR"));
            std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
        };
        let f32s = |b: Vec<u8>| -> Vec<f32> {
            b.as_chunks::<4>()
                .0
                .iter()
                .map(|c| f32::from_le_bytes(*c))
                .collect()
        };
        let x = f32s(read("input_f32.bin"));
        let imatrix = f32s(read("imatrix_f32.bin"));
        for ty in [GgmlType::IQ4_NL, GgmlType::IQ4_XS] {
            for (suffix, qw) in [("", None), ("_imatrix", Some(&imatrix[..]))] {
                let want = read(&format!("{}{suffix}.bin", ty.name()));
                let row_bytes = want.len() / 64;
                for r in [0, 47, 48, 49, 51, 52, 53, 54, 55, 56, 57, 59, 60, 63] {
                    let mut got = vec![0u8; row_bytes];
                    let row = &x[r * 1024..(r + 1) * 1024];
                    assert!(encode_iq4(Kernel::Portable, ty, row, qw, &mut got).is_ok());
                    let want = &want[r * row_bytes..(r + 1) * row_bytes];
                    assert!(got == want, "{}{suffix} row {r}", ty.name());
                }
            }
        }
    }

    #[test]
    fn kernels_agree_on_sums_and_indices() {
        let k = detect();
        if k == Kernel::Portable {
            return;
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for case in 0..2000 {
            let x: [f32; 32] = std::array::from_fn(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let u = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                match (case + i) % 9 {
                    0 => 0.0,
                    1 => (u * 256.0).round() / 2.0,
                    _ => u * (1 + case % 13) as f32,
                }
            });
            // Every other case with importance weights (lognormal-ish, some large).
            let qw: [f32; 32] = std::array::from_fn(|i| ((i * 7 + case) % 11) as f32 * 0.3 + 0.01);
            let w = if case % 2 == 0 {
                block_weights(&x, None, 0.0)
            } else {
                block_weights(&x, Some(&qw), sigma2(&x))
            };
            let mut max = 0f32;
            for &v in &x {
                if v.abs() > max.abs() {
                    max = v;
                }
            }
            if max == 0.0 {
                continue;
            }
            let id = candidates(max);
            assert_eq!(id.map(f32::to_bits), k.candidates(max).map(f32::to_bits));
            let (a, b) = sums_portable(&x, &w, &id);
            let (c, d) = k.sums(&x, &w, &id);
            assert_eq!(a.map(f32::to_bits), c.map(f32::to_bits), "case {case}");
            assert_eq!(b.map(f32::to_bits), d.map(f32::to_bits), "case {case}");
            for s in [id[0], id[5], 1e30, f32::NAN, 0.0] {
                assert_eq!(
                    Kernel::Portable.indices(&x, s),
                    k.indices(&x, s),
                    "case {case}"
                );
            }
        }
    }
}
