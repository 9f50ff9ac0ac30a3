//! The one place that picks the matrix-product kernel for the dense layers.
//!
//! `f32` products go to the `gemm-f32` crate (faer's pure-Rust GEMM): its kernels are chosen at run
//! time (AVX-512F when the CPU has it, else AVX2+FMA, else scalar), and it is called single-threaded
//! (`Parallelism::None`). On the products of a distillation step (784-1200-1200-10 teacher, batch
//! 128) it is faster than `ndarray`'s `matrixmultiply`, which has no AVX-512 kernel and packs both
//! operands; `benches/compare/kd.py` measures the step. Every other element type (`f64`, used for
//! the gradient checks) and every layout `gemm-f32` is not handed (negative strides) goes to
//! `ndarray`'s `general_mat_mul`. The `f32` path is tested against a naive f64 triple loop.
//!
//! Unlike `matrixmultiply`, `gemm-f32` picks its blocking from the matrix sizes, so a row of a
//! product is not bit-for-bit the same for different batch sizes (it agrees to f32 rounding).

use std::any::TypeId;

use modelopt_tensor_core::Float;
use ndarray::ArrayRef2;
use ndarray::linalg::general_mat_mul;

/// `c = alpha a b + beta c` with the GEMM the dense layers use (`gemm-f32` for `f32`, single
/// threaded; `ndarray` otherwise), for model code outside this crate (the BERT encoder). BLAS
/// convention: with `beta == 0`, `c` is only written. Shapes must chain (`a: [m, k]`,
/// `b: [k, n]`, `c: [m, n]`), else [`CoreError::ShapeMismatch`](modelopt_tensor_core::CoreError).
///
/// ```
/// use ndarray::{array, Array2};
/// let (x, w) = (array![[1.0f32, 2.0]], array![[3.0f32, 4.0], [5.0, 6.0]]);
/// let mut y = Array2::zeros((1, 2));
/// modelopt_nn::matmul(1.0, &x, &w.t(), 0.0, &mut y)?; // x W^T, W read in place
/// assert_eq!(y, array![[11.0, 17.0]]);
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
pub fn matmul<A: Float>(
    alpha: A,
    a: &ArrayRef2<A>,
    b: &ArrayRef2<A>,
    beta: A,
    c: &mut ArrayRef2<A>,
) -> crate::Result<()> {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    if k != k2 {
        return Err(modelopt_tensor_core::CoreError::ShapeMismatch {
            expected: vec![k, n],
            found: b.shape().to_vec(),
        }
        .into());
    }
    if c.dim() != (m, n) {
        return Err(modelopt_tensor_core::CoreError::ShapeMismatch {
            expected: vec![m, n],
            found: c.shape().to_vec(),
        }
        .into());
    }
    gemm(alpha, a, b, beta, c);
    Ok(())
}

/// `c = alpha a b + beta c`, BLAS convention: with `beta == 0`, `c` is only written (NaN in `c`
/// does not propagate). Shapes must chain (`a: [m, k]`, `b: [k, n]`, `c: [m, n]`); callers check
/// them, a mismatch panics like `ndarray`'s `general_mat_mul`.
pub(crate) fn gemm<A: Float>(
    alpha: A,
    a: &ArrayRef2<A>,
    b: &ArrayRef2<A>,
    beta: A,
    c: &mut ArrayRef2<A>,
) {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    assert!(
        k == k2 && c.dim() == (m, n),
        "gemm shapes do not chain: {:?} x {:?} -> {:?}",
        a.shape(),
        b.shape(),
        c.shape()
    );
    if TypeId::of::<A>() == TypeId::of::<f32>() {
        let non_negative = |s: &[isize]| s.iter().all(|&s| s >= 0);
        if non_negative(a.strides()) && non_negative(b.strides()) && non_negative(c.strides()) {
            let (alpha, beta) = (
                alpha.to_f32().unwrap_or(f32::NAN),
                beta.to_f32().unwrap_or(f32::NAN),
            );
            let (a_ptr, b_ptr) = (a.as_ptr().cast::<f32>(), b.as_ptr().cast::<f32>());
            let (c_ptr, c_rs, c_cs) =
                (c.as_mut_ptr().cast::<f32>(), c.strides()[0], c.strides()[1]);
            let (a_rs, a_cs, b_rs, b_cs) = (
                a.strides()[0],
                a.strides()[1],
                b.strides()[0],
                b.strides()[1],
            );
            let gemm_fn = gemm_f32::gemm::f32::get_gemm_fn();
            let transpose = transpose_for_speed(a, b, c);
            // SAFETY: `A` is `f32` (checked by TypeId), so the casts are identities. The pointers
            // and strides come from live ndarray views whose shapes were checked to chain above, so
            // every offset `i * rs + j * cs` the kernel forms with `i < rows`, `j < cols` is inside
            // its array; the strides are non-negative as `gemm_f32` expects. `c` is borrowed
            // mutably and `a`, `b` shared, so `c` overlaps neither. gemm's convention is
            // `dst = alpha' dst + beta' lhs rhs` with `dst` read only when `read_dst`: BLAS's
            // `beta` is its `alpha'` and BLAS's `alpha` its `beta'`. With `transpose` it computes
            // `c^T = b^T a^T` (same memory, swapped roles), which is only a speed choice.
            unsafe {
                if transpose {
                    gemm_fn(
                        n,
                        m,
                        k,
                        c_ptr,
                        c_rs,
                        c_cs,
                        beta != 0.0,
                        b_ptr,
                        b_rs,
                        b_cs,
                        a_ptr,
                        a_rs,
                        a_cs,
                        beta,
                        alpha,
                        false,
                        false,
                        false,
                        gemm_common::Parallelism::None,
                    );
                } else {
                    gemm_fn(
                        m,
                        n,
                        k,
                        c_ptr,
                        c_cs,
                        c_rs,
                        beta != 0.0,
                        a_ptr,
                        a_cs,
                        a_rs,
                        b_ptr,
                        b_cs,
                        b_rs,
                        beta,
                        alpha,
                        false,
                        false,
                        false,
                        gemm_common::Parallelism::None,
                    );
                }
            }
            return;
        }
    }
    general_mat_mul(alpha, a, b, beta, c);
}

/// Whether to hand `gemm-f32` the transposed problem `c^T = b^T a^T`. Its packed operand is the
/// left-hand side; the right-hand side is read in place when its columns are contiguous along the
/// inner dimension. So the larger operand should be the right-hand side when its layout allows:
/// for a dense forward `x W^T` with a wide layer, `W^T` (columns contiguous) is read in place and
/// only the small batch `x` is packed, which measured 1.15x faster on the 784-1200-1200-10 teacher
/// than the transposed form. Otherwise follow the destination: gemm's kernels write columns, so a
/// row-major `c` is transposed.
fn transpose_for_speed<A>(a: &ArrayRef2<A>, b: &ArrayRef2<A>, c: &ArrayRef2<A>) -> bool {
    let a_in_place = a.strides()[1] == 1; // a^T as the right-hand side: columns contiguous in k
    let b_in_place = b.strides()[0] == 1; // b as the right-hand side
    match (a_in_place, b_in_place) {
        (true, false) => true,
        (false, true) => false,
        (true, true) => a.len() > b.len(),
        (false, false) => c.strides()[1].unsigned_abs() < c.strides()[0].unsigned_abs(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, ShapeBuilder, s};

    /// Naive triple loop in f64: the reference.
    fn reference(
        alpha: f64,
        a: &ArrayRef2<f32>,
        b: &ArrayRef2<f32>,
        beta: f64,
        c: &ArrayRef2<f32>,
    ) -> Array2<f64> {
        let (m, k) = a.dim();
        let n = b.ncols();
        Array2::from_shape_fn((m, n), |(i, j)| {
            let dot: f64 = (0..k).map(|p| a[[i, p]] as f64 * b[[p, j]] as f64).sum();
            let prior = if beta == 0.0 {
                0.0
            } else {
                beta * c[[i, j]] as f64
            };
            alpha * dot + prior
        })
    }

    fn filled(rows: usize, cols: usize, seed: usize, column_major: bool) -> Array2<f32> {
        let f = |(i, j): (usize, usize)| (((i * 31 + j * 17 + seed * 7) % 23) as f32 - 11.0) / 8.0;
        if column_major {
            Array2::from_shape_fn((rows, cols).f(), f)
        } else {
            Array2::from_shape_fn((rows, cols), f)
        }
    }

    fn check(
        alpha: f32,
        a: &ArrayRef2<f32>,
        b: &ArrayRef2<f32>,
        beta: f32,
        c: &mut ArrayRef2<f32>,
    ) {
        let expected = reference(alpha as f64, a, b, beta as f64, c);
        gemm(alpha, a, b, beta, c);
        let k = a.ncols().max(1) as f64;
        for (got, want) in c.iter().zip(&expected) {
            assert!(
                (*got as f64 - want).abs() <= 1e-5 * k * (1.0 + want.abs()),
                "{got} vs {want} for {:?} x {:?}",
                a.shape(),
                b.shape()
            );
        }
    }

    #[test]
    fn f32_matches_the_reference_on_odd_shapes_and_layouts() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 7),
            (17, 33, 9),
            (128, 70, 10),
            (10, 128, 65),
            (40, 1, 31),
        ] {
            for layout in 0..8 {
                let a = filled(m, k, 1, layout & 1 == 1);
                let b = filled(k, n, 2, layout & 2 == 2);
                let mut c = filled(m, n, 3, layout & 4 == 4);
                check(1.0, &a, &b, 0.0, &mut c);
                check(0.5, &a, &b, 1.0, &mut c);
                check(-2.0, &a, &b, 0.25, &mut c);
            }
        }
    }

    #[test]
    fn f32_matches_the_reference_across_cache_blocks() {
        // Inner dimension and rows past gemm's k and m blocks: partial sums are carried across blocks.
        let (m, k, n) = (150, 1100, 21);
        for layout in [0, 3] {
            let a = filled(m, k, 10, layout & 1 == 1);
            let b = filled(k, n, 11, layout & 2 == 2);
            let mut c = filled(m, n, 12, false);
            check(1.0, &a, &b, 1.0, &mut c);
        }
        let w = filled(700, 1100, 13, false);
        let x = filled(12, 1100, 14, false);
        let mut y = filled(12, 700, 15, false);
        check(1.0, &x, &w.t(), 1.0, &mut y); // the dense forward: x W^T, W read in place
    }

    #[test]
    fn f32_handles_transposed_and_strided_views() {
        let w = filled(64, 48, 4, false);
        let x = filled(20, 48, 5, false);
        let mut y = Array2::zeros((20, 64));
        check(1.0, &x, &w.t(), 0.0, &mut y);
        let dy = filled(20, 64, 6, false);
        let mut dw = Array2::zeros((64, 48));
        check(1.0, &dy.t(), &x, 0.0, &mut dw);
        // Every other row and column: non-unit strides in both dimensions.
        let big = filled(40, 96, 7, false);
        let a = big.slice(s![..;2, ..;2]);
        let mut c = Array2::from_elem((20, 64), f32::NAN);
        check(1.0, &a, &w.t(), 0.0, &mut c); // beta = 0 must not read the NaN
        let mut c_view = Array2::<f32>::zeros((40, 128));
        check(1.0, &a, &w.t(), 0.0, &mut c_view.slice_mut(s![..;2, ..;2]));
    }

    #[test]
    fn f32_empty_inner_dimension_scales_c() {
        let a = Array2::<f32>::zeros((3, 0));
        let b = Array2::<f32>::zeros((0, 4));
        let mut c = Array2::from_elem((3, 4), 2.0f32);
        gemm(1.0, &a, &b, 0.5, &mut c);
        assert!(c.iter().all(|&v| v == 1.0));
        gemm(1.0, &a, &b, 0.0, &mut c);
        assert!(c.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn negative_strides_fall_back_and_agree() {
        let a = filled(9, 6, 8, false);
        let b = filled(6, 5, 9, false);
        let mut c = Array2::zeros((9, 5));
        check(1.0, &a.slice(s![..;-1, ..]), &b, 0.0, &mut c);
    }

    #[test]
    fn f64_goes_through_ndarray() {
        let a = ndarray::array![[1.0f64, 2.0], [3.0, 4.0]];
        let mut c = Array2::zeros((2, 2));
        gemm(1.0, &a, &a, 0.0, &mut c);
        assert_eq!(c, ndarray::array![[7.0, 10.0], [15.0, 22.0]]);
    }
}
