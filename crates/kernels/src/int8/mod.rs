//! int8 x int8 -> int32 matrix products: weights packed once into 64-row panels, activations as
//! u8 codes with a zero point (the form `vpdpbusd` wants), exact integer results.
//!
//! Exactness and overflow: the K loop runs in chunks of [`K_CHUNK`] (65536) inputs. Within a
//! chunk every partial sum of u8 x s8 products is below `65536 * 255 * 128 < 2^31`, so the `i32`
//! lanes never wrap; chunks, and the zero-point compensation `zp * sum(w_row)` (precomputed per
//! weight row and chunk), are combined in `i64`. So [`gemm_i8_i64`] is exact for any K, and
//! [`gemm_i8`] (`i32` output) is exact whenever the result fits, which is guaranteed for
//! `K <= 131071` (`|sum| <= K * 128 * 128`); a larger K is an [`KernelError::Overflow`] error.

#[cfg(target_arch = "x86_64")]
pub(crate) mod amx;
mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;

use modelopt_tensor_core::Par;

use crate::aligned::Aligned;
use crate::error::{invalid, shape};
use crate::{Isa, KernelError, Result};

/// Rows (output channels) per weight panel.
pub(crate) const NR: usize = 64;
/// Inputs per exact `i32` chunk of the K loop.
pub const K_CHUNK: usize = 65536;
/// The largest K for which an int8 x int8 dot product always fits in `i32`.
pub const MAX_K_I32: usize = 131_071;
/// Activation rows per register block of the VNNI kernel.
const MR: usize = 6;
/// k-groups (4 inputs each) per cache block: 64 rows x 512 inputs = 32 KiB of weights.
const KB: usize = 128;
/// Activation rows per block of a panel's work (a multiple of the AMX kernel's 16).
const MB: usize = 256;

/// An int8 weight matrix `[n, k]` (row `r` = output channel `r`) packed for the kernels: rows in
/// panels of 64, inputs in groups of 4 (`[n/64][k/4][64][4]`, zero padded), plus each row's sum
/// per K chunk for the zero-point compensation.
///
/// ```
/// use modelopt_kernels::{gemm_i8, Isa, PackedI8};
/// use modelopt_kernels::Par;
/// let w = PackedI8::new(&[1, -2, 3, 4, 5, -6], 2, 3)?; // [[1, -2, 3], [4, 5, -6]]
/// let mut y = [0i32; 2];
/// gemm_i8(Par::Seq, &[-128, 127, 2], 1, &w, &mut y)?;
/// assert_eq!(y, [-128 - 254 + 6, -512 + 635 - 12]);
/// assert_eq!(w.to_rows(), vec![1, -2, 3, 4, 5, -6]);
/// # Ok::<(), modelopt_kernels::KernelError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PackedI8 {
    n: usize,
    k: usize,
    groups: usize,
    data: Aligned<i8>,
    /// `[chunks][panels * 64]`: row sums of each K chunk.
    row_sums: Vec<i32>,
}

impl PackedI8 {
    /// Packs a row-major `[n, k]` matrix of int8 codes.
    pub fn new(w: &[i8], n: usize, k: usize) -> Result<Self> {
        if n == 0 || k == 0 {
            return Err(invalid(
                "shape",
                format!("an int8 weight needs rows and columns, got [{n}, {k}]"),
            ));
        }
        if n.checked_mul(k) != Some(w.len()) {
            return Err(shape(vec![n, k], vec![w.len()]));
        }
        let groups = k.div_ceil(4);
        let panels = n.div_ceil(NR);
        let mut packed = Aligned::zeroed(panels * groups * 4 * NR);
        let data = packed.as_mut_slice();
        for (r, row) in w.chunks_exact(k).enumerate() {
            let (p, rr) = (r / NR, r % NR);
            for (c, &v) in row.iter().enumerate() {
                data[(p * groups + c / 4) * 4 * NR + rr * 4 + c % 4] = v;
            }
        }
        let chunks = k.div_ceil(K_CHUNK);
        let mut row_sums = vec![0i32; chunks * panels * NR];
        for (r, row) in w.chunks_exact(k).enumerate() {
            for (c, part) in row.chunks(K_CHUNK).enumerate() {
                row_sums[c * panels * NR + r] = part.iter().map(|&v| v as i32).sum();
            }
        }
        Ok(PackedI8 {
            n,
            k,
            groups,
            data: packed,
            row_sums,
        })
    }

    /// Output channels (rows).
    pub fn rows(&self) -> usize {
        self.n
    }

    /// Inputs (columns).
    pub fn cols(&self) -> usize {
        self.k
    }

    /// Bytes of weight data the kernels read (padding included).
    pub fn packed_bytes(&self) -> usize {
        self.data.len()
    }

    /// The codes back as a row-major `[n, k]` matrix.
    pub fn to_rows(&self) -> Vec<i8> {
        let mut out = Vec::with_capacity(self.n * self.k);
        for r in 0..self.n {
            let (p, rr) = (r / NR, r % NR);
            out.extend((0..self.k).map(|c| {
                self.data.as_slice()[(p * self.groups + c / 4) * 4 * NR + rr * 4 + c % 4]
            }));
        }
        out
    }

    fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    fn panel(&self, p: usize) -> &[i8] {
        let len = self.groups * 4 * NR;
        &self.data.as_slice()[p * len..(p + 1) * len]
    }
}

/// u8 activation rows `[m][stride]` (`stride >= 4 * groups`, zero padded) with one zero point
/// per row: what the kernels multiply.
pub(crate) struct U8Rows<'a> {
    pub codes: &'a [u8],
    pub m: usize,
    pub stride: usize,
    pub zero_points: &'a [i32],
}

/// Exact `sum_k (x[i][k] - zp[i]) * w[r][k]` for one panel: `acc` is `[m][64]`, overwritten.
fn panel_acc(isa: Isa, x: &U8Rows<'_>, w: &PackedI8, p: usize, acc: &mut [i64], tile: &mut [i32]) {
    let (m, stride) = (x.m, x.stride);
    let chunk_groups = K_CHUNK / 4;
    let wp = w.panel(p);
    for (c, g0) in (0..w.groups).step_by(chunk_groups).enumerate() {
        let g1 = (g0 + chunk_groups).min(w.groups);
        tile.fill(0);
        for kb in (g0..g1).step_by(KB) {
            let ke = (kb + KB).min(g1);
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the caller checked that the CPU has the instruction set.
                Isa::Avx512Vnni => unsafe { vnni_rows(x, 0..m, wp, kb, ke, tile) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above (AMX implies AVX-512 VNNI, see `amx::available`).
                Isa::Amx => unsafe {
                    // Whole 16-row blocks over whole 16-group steps in tiles; the rest
                    // (rows below 16, a K tail) with VNNI. Integer sums: the split is exact.
                    let full = m / amx::MR * amx::MR;
                    let gs = g0 + (g1 - g0) / amx::GS * amx::GS;
                    if kb == g0 && gs > g0 {
                        for r in (0..full).step_by(amx::MR) {
                            let (xs, ts) = (&x.codes[r * stride..], &mut tile[r * NR..]);
                            amx::tiles(xs, stride, wp, g0, gs, ts);
                        }
                    }
                    vnni_rows(x, 0..full, wp, kb.max(gs), ke, tile);
                    vnni_rows(x, full..m, wp, kb, ke, tile);
                },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                Isa::Avx2 => unsafe {
                    for i in 0..m {
                        x86::avx2_row(&x.codes[i * stride..], wp, kb, ke, &mut tile[i * NR..]);
                    }
                },
                _ => portable::panel(x.codes, stride, m, wp, kb, ke, tile),
            }
        }
        let sums = &w.row_sums[c * w.panels() * NR + p * NR..][..NR];
        for i in 0..m {
            let zp = x.zero_points[i] as i64;
            let rows = acc[i * NR..(i + 1) * NR]
                .iter_mut()
                .zip(&tile[i * NR..])
                .zip(sums);
            if c == 0 {
                // The first chunk sets the accumulators (no separate zeroing pass).
                for ((a, &t), &s) in rows {
                    *a = t as i64 - zp * s as i64;
                }
            } else {
                for ((a, &t), &s) in rows {
                    *a += t as i64 - zp * s as i64;
                }
            }
        }
    }
}

/// The VNNI kernel over activation rows `rows`, groups `kb..ke`, in register blocks of `MR`.
///
/// # Safety
/// The CPU must have AVX-512 F/BW/VNNI.
#[cfg(target_arch = "x86_64")]
unsafe fn vnni_rows(
    x: &U8Rows<'_>,
    rows: std::ops::Range<usize>,
    wp: &[i8],
    kb: usize,
    ke: usize,
    tile: &mut [i32],
) {
    if kb >= ke {
        return;
    }
    let stride = x.stride;
    let mut i = rows.start;
    while i < rows.end {
        let n = (rows.end - i).min(MR);
        let (xs, ts) = (&x.codes[i * stride..], &mut tile[i * NR..]);
        // SAFETY: the caller guarantees the instruction set; the kernel checks its bounds.
        unsafe {
            match n {
                1 => x86::vnni::<1>(xs, stride, wp, kb, ke, ts),
                2 => x86::vnni::<2>(xs, stride, wp, kb, ke, ts),
                3 => x86::vnni::<3>(xs, stride, wp, kb, ke, ts),
                4 => x86::vnni::<4>(xs, stride, wp, kb, ke, ts),
                5 => x86::vnni::<5>(xs, stride, wp, kb, ke, ts),
                _ => x86::vnni::<MR>(xs, stride, wp, kb, ke, ts),
            }
        }
        i += n;
    }
}

/// Runs the panels (in parallel when `par` allows) and hands each panel's exact accumulators,
/// a block of rows at a time (`finish(panel, first row, [rows][64], out [rows][64])`), to
/// `finish`, which writes that block's output values; the values are
/// scattered into `out` (`[m][n]`). The same for any thread count: panels are independent.
pub(crate) fn run<T, F>(
    isa: Isa,
    par: Par,
    x: &U8Rows<'_>,
    w: &PackedI8,
    out: &mut [T],
    finish: F,
) -> Result<()>
where
    T: Copy + Send + Default,
    F: Fn(usize, usize, &[i64], &mut [T]) + Sync + Send,
{
    let isa = isa.checked()?;
    let (m, n) = (x.m, w.n);
    if out.len() != m * n {
        return Err(shape(vec![m, n], vec![out.len()]));
    }
    if x.stride < 4 * w.groups || x.codes.len() < m * x.stride || x.zero_points.len() != m {
        return Err(shape(vec![m, 4 * w.groups], vec![x.codes.len()]));
    }
    let tiles = par.map_range(w.panels(), |p| {
        // Rows in blocks of MB with reused accumulators: a long M (a convolution's patches)
        // would otherwise allocate and fault in 12 bytes per row and output per panel.
        let mb = m.min(MB);
        let mut acc = vec![0i64; mb * NR];
        let mut tile = vec![0i32; mb * NR];
        let mut vals = vec![T::default(); m * NR];
        for i0 in (0..m).step_by(MB) {
            let rows = (m - i0).min(MB);
            let block = U8Rows {
                codes: &x.codes[i0 * x.stride..],
                m: rows,
                stride: x.stride,
                zero_points: &x.zero_points[i0..i0 + rows],
            };
            let (a, t) = (&mut acc[..rows * NR], &mut tile[..rows * NR]);
            panel_acc(isa, &block, w, p, a, t);
            finish(p, i0, a, &mut vals[i0 * NR..(i0 + rows) * NR]);
        }
        vals
    });
    for (p, vals) in tiles.iter().enumerate() {
        let (r0, r1) = (p * NR, ((p + 1) * NR).min(n));
        for i in 0..m {
            out[i * n + r0..i * n + r1].copy_from_slice(&vals[i * NR..i * NR + (r1 - r0)]);
        }
    }
    Ok(())
}

fn shift_i8(a: &[i8], m: usize, k: usize, stride: usize) -> Result<Vec<u8>> {
    if m.checked_mul(k) != Some(a.len()) {
        return Err(shape(vec![m, k], vec![a.len()]));
    }
    let mut codes = vec![0u8; m * stride];
    for (dst, src) in codes.chunks_exact_mut(stride).zip(a.chunks_exact(k)) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = (s as u8) ^ 0x80; // s + 128
        }
    }
    Ok(codes)
}

/// Exact `y[i][r] = sum_k a[i][k] * w[r][k]` in `i64` for int8 `a` `[m, k]` (any K), on the
/// instruction set `isa`. The activations are shifted to u8 (`a + 128`) and `128 * sum(w_row)`
/// subtracted, as `vpdpbusd` requires.
///
/// ```
/// use modelopt_kernels::{gemm_i8_i64_with, Isa, PackedI8, Par};
/// let k = 200_000; // beyond i32: all -128 x -128 sums to 200000 * 16384
/// let w = PackedI8::new(&vec![-128; k], 1, k)?;
/// let mut y = [0i64];
/// gemm_i8_i64_with(Isa::best(), Par::Seq, &vec![-128; k], 1, &w, &mut y)?;
/// assert_eq!(y[0], 200_000 * 16384);
/// # Ok::<(), modelopt_kernels::KernelError>(())
/// ```
pub fn gemm_i8_i64_with(
    isa: Isa,
    par: Par,
    a: &[i8],
    m: usize,
    w: &PackedI8,
    out: &mut [i64],
) -> Result<()> {
    let stride = 4 * w.groups;
    let codes = shift_i8(a, m, w.k, stride)?;
    let zps = vec![128; m];
    let x = U8Rows {
        codes: &codes,
        m,
        stride,
        zero_points: &zps,
    };
    run(isa, par, &x, w, out, |_, _, acc, vals| {
        vals.copy_from_slice(acc)
    })
}

/// [`gemm_i8_i64_with`] on the best instruction set of this CPU.
pub fn gemm_i8_i64(par: Par, a: &[i8], m: usize, w: &PackedI8, out: &mut [i64]) -> Result<()> {
    gemm_i8_i64_with(Isa::best(), par, a, m, w, out)
}

/// Exact `y[i][r] = sum_k a[i][k] * w[r][k]` in `i32`, for `K <= MAX_K_I32` (131071), where
/// every result fits; a larger K is an [`KernelError::Overflow`] error (use [`gemm_i8_i64`]).
pub fn gemm_i8_with(
    isa: Isa,
    par: Par,
    a: &[i8],
    m: usize,
    w: &PackedI8,
    out: &mut [i32],
) -> Result<()> {
    if w.k > MAX_K_I32 {
        return Err(KernelError::Overflow {
            what: "int8 x int8 -> i32 product",
            reason: format!(
                "K = {} > {MAX_K_I32}: a sum of K products of up to 128 * 128 may exceed i32; use gemm_i8_i64",
                w.k
            ),
        });
    }
    let stride = 4 * w.groups;
    let codes = shift_i8(a, m, w.k, stride)?;
    let zps = vec![128; m];
    let x = U8Rows {
        codes: &codes,
        m,
        stride,
        zero_points: &zps,
    };
    // |acc| <= K * 2^14 < 2^31 for K <= MAX_K_I32: the narrowing is exact.
    run(isa, par, &x, w, out, |_, _, acc, vals| {
        vals.iter_mut().zip(acc).for_each(|(v, &a)| *v = a as i32)
    })
}

/// [`gemm_i8_with`] on the best instruction set of this CPU.
pub fn gemm_i8(par: Par, a: &[i8], m: usize, w: &PackedI8, out: &mut [i32]) -> Result<()> {
    gemm_i8_with(Isa::best(), par, a, m, w, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng, rngs::StdRng};

    fn reference(a: &[i8], w: &[i8], m: usize, n: usize, k: usize) -> Vec<i64> {
        let mut y = vec![0i64; m * n];
        for i in 0..m {
            for r in 0..n {
                y[i * n + r] = (0..k)
                    .map(|c| a[i * k + c] as i64 * w[r * k + c] as i64)
                    .sum();
            }
        }
        y
    }

    fn check_all(a: &[i8], w: &[i8], m: usize, n: usize, k: usize) {
        let want = reference(a, w, m, n, k);
        let packed = PackedI8::new(w, n, k).unwrap();
        for isa in Isa::available() {
            let mut y = vec![0i64; m * n];
            gemm_i8_i64_with(isa, Par::Seq, a, m, &packed, &mut y).unwrap();
            assert_eq!(y, want, "{isa:?} m={m} n={n} k={k}");
            if k <= MAX_K_I32 {
                let mut y32 = vec![0i32; m * n];
                gemm_i8_with(isa, Par::Seq, a, m, &packed, &mut y32).unwrap();
                assert!(
                    y32.iter().zip(&want).all(|(&a, &b)| a as i64 == b),
                    "{isa:?}"
                );
            }
        }
    }

    #[test]
    fn random_shapes_match_the_i64_reference_on_every_isa() {
        let mut rng = StdRng::seed_from_u64(7);
        for &(m, n, k) in &[
            (1, 1, 1),
            (1, 70, 37),
            (2, 64, 64),
            (3, 130, 255),
            (7, 65, 513),
            (13, 129, 1030),
            (6, 64, 4),
            // 16 rows and more: AMX tiles where the CPU has them, with row and K tails.
            (16, 64, 64),
            (17, 65, 100),
            (33, 130, 2049),
            (48, 64, 512),
            // More rows than one block of MB (256): blocks of rows with reused accumulators.
            (530, 70, 100),
        ] {
            let a: Vec<i8> = (0..m * k).map(|_| rng.random()).collect();
            let w: Vec<i8> = (0..n * k).map(|_| rng.random()).collect();
            check_all(&a, &w, m, n, k);
        }
    }

    #[test]
    fn extreme_inputs_are_exact() {
        for &(m, n, k) in &[(1, 3, 4099), (7, 65, 2050), (19, 70, 2112)] {
            for (av, wv) in [(-128i8, -128i8), (127, 127), (-128, 127), (127, -128)] {
                check_all(&vec![av; m * k], &vec![wv; n * k], m, n, k);
            }
        }
    }

    #[test]
    fn long_rows_split_the_k_loop_in_i64() {
        // K past two chunks: all -128 x -128 sums to K * 2^14 > 2^31.
        let k = 2 * K_CHUNK + 5000;
        let (m, n) = (17, 3); // 16 rows in tiles (where there is AMX), one with VNNI
        let mut a = vec![-128i8; m * k];
        a[k..]
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = if i % 3 == 0 { 127 } else { -128 });
        let w = vec![-128i8; n * k];
        check_all(&a, &w, m, n, k);
        let packed = PackedI8::new(&w, n, k).unwrap();
        let mut y32 = vec![0i32; m * n];
        assert!(matches!(
            gemm_i8(Par::Seq, &a, m, &packed, &mut y32),
            Err(KernelError::Overflow { .. })
        ));
    }

    #[test]
    fn same_result_for_any_thread_count() {
        let mut rng = StdRng::seed_from_u64(3);
        let (m, n, k) = (20, 300, 200);
        let a: Vec<i8> = (0..m * k).map(|_| rng.random()).collect();
        let w: Vec<i8> = (0..n * k).map(|_| rng.random()).collect();
        let packed = PackedI8::new(&w, n, k).unwrap();
        let mut seq = vec![0i64; m * n];
        gemm_i8_i64(Par::Seq, &a, m, &packed, &mut seq).unwrap();
        for t in [1, 2, 3] {
            let mut y = vec![0i64; m * n];
            gemm_i8_i64(Par::Rayon(t), &a, m, &packed, &mut y).unwrap();
            assert_eq!(y, seq);
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(PackedI8::new(&[1, 2, 3], 2, 2).is_err());
        assert!(PackedI8::new(&[], 0, 2).is_err());
        let w = PackedI8::new(&[1, 2, 3, 4], 2, 2).unwrap();
        let mut y = [0i32; 2];
        assert!(gemm_i8(Par::Seq, &[1, 2, 3], 1, &w, &mut y).is_err());
        assert!(gemm_i8(Par::Seq, &[1, 2], 1, &w, &mut [0i32; 3]).is_err());
    }
}
