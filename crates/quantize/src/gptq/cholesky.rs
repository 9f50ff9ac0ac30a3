//! The small dense f64 linear algebra GPTQ needs: a Cholesky factorisation and the upper
//! Cholesky factor of an inverse, on row-major `n x n` buffers (n up to a few thousand).
//!
//! Written here rather than taken from faer: two short blocked loops whose bulk is ndarray's
//! GEMM (matrixmultiply, with its run-time AVX2/FMA kernels), no new dependency (faer brings
//! a large generic tree); at MiniLM's sizes (n <= 1536) they take a fraction of a second.

use ndarray::{Array2, linalg::general_mat_mul, s};

/// Columns per block of the blocked factorisation and inverse.
const NB: usize = 64;

/// `sum(a[k] * b[k])` with four independent accumulators (so the compiler vectorises it
/// without reassociating one sum).
#[inline(always)]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0f64; 4];
    let (ac, bc) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f64 = ar.iter().zip(br).map(|(x, y)| x * y).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Lower Cholesky factor `L` (`A = L Lᵀ`) of the symmetric `n x n` row-major `a`, in place;
/// only the lower triangle of `a` is read and the upper one is zeroed. `Err(i)` if the `i`-th
/// pivot is not positive (or not finite): `a` is not numerically positive definite.
///
/// Row-oriented (Cholesky–Banachiewicz): entry `(i, j)` is one dot product of two contiguous
/// row prefixes.
pub(crate) fn cholesky_in_place(a: &mut [f64], n: usize) -> Result<(), usize> {
    for i in 0..n {
        let (done, rest) = a.split_at_mut(i * n);
        let row_i = &mut rest[..n];
        for j in 0..i {
            let row_j = &done[j * n..j * n + j];
            let s = row_i[j] - dot(&row_i[..j], row_j);
            row_i[j] = s / done[j * n + j];
        }
        let s = row_i[i] - dot(&row_i[..i], &row_i[..i]);
        if !(s > 0.0 && s.is_finite()) {
            return Err(i);
        }
        row_i[i] = s.sqrt();
        row_i[i + 1..].fill(0.0);
    }
    Ok(())
}

/// Inverse of a lower-triangular `n x n` row-major `l` with a positive diagonal (lower
/// triangular too). Row `i` of `X = L⁻¹` is `(e_i - sum_{k<i} L[i,k] X[k,:]) / L[i,i]`: axpys
/// over the rows already found.
pub(crate) fn lower_inverse(l: &[f64], n: usize) -> Vec<f64> {
    let mut x = vec![0f64; n * n];
    let mut tmp = vec![0f64; n];
    for i in 0..n {
        tmp[..i].fill(0.0);
        for k in 0..i {
            let lik = l[i * n + k];
            if lik != 0.0 {
                for (t, &v) in tmp[..=k].iter_mut().zip(&x[k * n..k * n + k + 1]) {
                    *t += lik * v;
                }
            }
        }
        let inv = 1.0 / l[i * n + i];
        let row = &mut x[i * n..i * n + i + 1];
        for (o, t) in row[..i].iter_mut().zip(&tmp[..i]) {
            *o = -t * inv;
        }
        row[i] = inv;
    }
    x
}

/// Blocked lower Cholesky factor of `a` (lower triangle read), in place; `Err(i)` as
/// [`cholesky_in_place`]. Right-looking: factor a diagonal block, solve the panel below it,
/// subtract the panel's outer product from the trailing matrix with one GEMM.
pub(crate) fn cholesky_blocked(a: &mut Array2<f64>) -> Result<(), usize> {
    let n = a.nrows();
    for k0 in (0..n).step_by(NB) {
        let k1 = (k0 + NB).min(n);
        let m = k1 - k0;
        let mut d = a.slice(s![k0..k1, k0..k1]).to_owned();
        let ds = d.as_slice_mut().ok_or(k0)?;
        cholesky_in_place(ds, m).map_err(|i| k0 + i)?;
        if k1 < n {
            // Panel rows: x L_ddᵀ = a_r, forward substitution per row.
            let mut p = a.slice(s![k1.., k0..k1]).to_owned();
            for mut row in p.rows_mut() {
                let x = row.as_slice_mut().ok_or(k0)?;
                for j in 0..m {
                    x[j] = (x[j] - dot(&x[..j], &ds[j * m..j * m + j])) / ds[j * m + j];
                }
            }
            // Lower part only, one block column at a time.
            for j0 in (k1..n).step_by(NB) {
                let j1 = (j0 + NB).min(n);
                let below = p.slice(s![j0 - k1.., ..]);
                let cols = p.slice(s![j0 - k1..j1 - k1, ..]);
                let mut dst = a.slice_mut(s![j0.., j0..j1]);
                general_mat_mul(-1.0, &below, &cols.t(), 1.0, &mut dst);
            }
            a.slice_mut(s![k1.., k0..k1]).assign(&p);
        }
        a.slice_mut(s![k0..k1, k0..k1]).assign(&d);
    }
    for i in 0..n {
        a.slice_mut(s![i, i + 1..]).fill(0.0);
    }
    Ok(())
}

/// Blocked inverse of a lower-triangular `l` with a positive diagonal: block row `I` of
/// `X = L⁻¹` is `X[I, I] = L_II⁻¹` and `X[I, :I] = -L_II⁻¹ (L[I, :I] X[:I, :I])` (two GEMMs).
pub(crate) fn lower_inverse_blocked(l: &Array2<f64>) -> Array2<f64> {
    let n = l.nrows();
    let mut x = Array2::<f64>::zeros((n, n));
    for i0 in (0..n).step_by(NB) {
        let i1 = (i0 + NB).min(n);
        let m = i1 - i0;
        let lii = l.slice(s![i0..i1, i0..i1]).to_owned();
        let inv = lower_inverse(lii.as_slice().unwrap_or(&[]), m);
        let inv = Array2::from_shape_vec((m, m), inv).unwrap_or_else(|_| Array2::zeros((m, m)));
        if i0 > 0 {
            // L[I, :I] X[:I, :I] with X lower triangular: block column K needs rows K.. only.
            let mut t = Array2::<f64>::zeros((m, i0));
            for k0 in (0..i0).step_by(NB) {
                let k1 = (k0 + NB).min(i0);
                let mut dst = t.slice_mut(s![.., k0..k1]);
                general_mat_mul(
                    1.0,
                    &l.slice(s![i0..i1, k0..i0]),
                    &x.slice(s![k0..i0, k0..k1]),
                    0.0,
                    &mut dst,
                );
            }
            let mut dst = x.slice_mut(s![i0..i1, ..i0]);
            general_mat_mul(-1.0, &inv, &t, 0.0, &mut dst);
        }
        x.slice_mut(s![i0..i1, i0..i1]).assign(&inv);
    }
    x
}

/// The upper Cholesky factor `U` of `H⁻¹` (`H⁻¹ = Uᵀ U`), for a symmetric positive definite
/// `H` (lower triangle read). `Err(i)`: `H` is not positive definite, first seen at index `i`.
///
/// What GPTQ's reference computes as `cholesky(cholesky_inverse(cholesky(H)), upper=True)`,
/// here with one factorisation and one triangular inverse: with `P` the reversal permutation
/// and `P H P = L Lᵀ`, `H⁻¹ = P L⁻ᵀ L⁻¹ P = (P L⁻¹ P)ᵀ (P L⁻¹ P)`, and `P L⁻¹ P` is upper
/// triangular with a positive diagonal, so it is the (unique) factor.
pub(crate) fn inverse_upper_factor(h: &Array2<f64>) -> Result<Array2<f64>, usize> {
    let n = h.nrows();
    // P H P, built from H's lower triangle (mirrored).
    let mut a = Array2::from_shape_fn((n, n), |(i, j)| {
        let (r, c) = (n - 1 - i, n - 1 - j);
        if r >= c { h[[r, c]] } else { h[[c, r]] }
    });
    cholesky_blocked(&mut a).map_err(|i| n - 1 - i)?;
    let x = lower_inverse_blocked(&a);
    Ok(Array2::from_shape_fn((n, n), |(i, j)| {
        x[[n - 1 - i, n - 1 - j]]
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spd(n: usize) -> Array2<f64> {
        // B Bᵀ + n I for a fixed pseudo-random B.
        let b = Array2::from_shape_fn((n, n), |(i, j)| {
            (((i * 31 + j * 17) % 23) as f64 - 11.0) / 7.0
        });
        let mut h = b.dot(&b.t());
        for i in 0..n {
            h[[i, i]] += n as f64;
        }
        h
    }

    #[test]
    fn cholesky_reconstructs() {
        for n in [1, 2, 5, 9, 33] {
            let h = spd(n);
            let mut a: Vec<f64> = h.iter().copied().collect();
            cholesky_in_place(&mut a, n).unwrap();
            let l = Array2::from_shape_vec((n, n), a).unwrap();
            let back = l.dot(&l.t());
            assert!(
                (&back - &h).iter().all(|d| d.abs() < 1e-9 * n as f64),
                "n = {n}"
            );
            assert!((0..n).all(|i| (i + 1..n).all(|j| l[[i, j]] == 0.0)));
        }
    }

    #[test]
    fn blocked_equals_unblocked() {
        for n in [1, 63, 64, 65, 130] {
            let h = spd(n);
            let mut a: Vec<f64> = h.iter().copied().collect();
            cholesky_in_place(&mut a, n).unwrap();
            let mut b = h.clone();
            cholesky_blocked(&mut b).unwrap();
            assert!(
                b.iter()
                    .zip(&a)
                    .all(|(x, y)| (x - y).abs() < 1e-12 * n as f64),
                "n = {n}"
            );
            let xi = lower_inverse(&a, n);
            let xb = lower_inverse_blocked(&b);
            assert!(
                xb.iter()
                    .zip(&xi)
                    .all(|(x, y)| (x - y).abs() < 1e-12 * n as f64),
                "n = {n}"
            );
        }
        let mut bad = spd(100);
        bad[[70, 70]] = -5.0;
        assert_eq!(cholesky_blocked(&mut bad), Err(70));
    }

    #[test]
    fn upper_factor_of_inverse() {
        for n in [1, 3, 8, 40, 150] {
            let h = spd(n);
            let u = inverse_upper_factor(&h).unwrap();
            assert!((0..n).all(|i| (0..i).all(|j| u[[i, j]] == 0.0) && u[[i, i]] > 0.0));
            // Uᵀ U H = I.
            let prod = u.t().dot(&u).dot(&h);
            for i in 0..n {
                for j in 0..n {
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((prod[[i, j]] - want).abs() < 1e-9, "n = {n} ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn not_positive_definite_reports_index() {
        let mut h = spd(4);
        h[[2, 2]] = -1.0;
        let mut a: Vec<f64> = h.iter().copied().collect();
        assert_eq!(cholesky_in_place(&mut a, 4), Err(2));
        let z = Array2::<f64>::zeros((3, 3));
        // reversed order: the last index fails first.
        assert_eq!(inverse_upper_factor(&z), Err(2));
        let mut nan = spd(3);
        nan[[0, 0]] = f64::NAN;
        assert!(inverse_upper_factor(&nan).is_err());
    }
}
