//! Sparse storage of pruned 2-D weights and sparse x dense products.
//!
//! Three forms of a `[rows, cols]` matrix whose pruned entries are zero:
//! - [`Csr`]: compressed sparse rows (row pointers, `u32` column indices, values);
//! - [`Bitmask`]: one bit per position plus the kept values, row by row;
//! - [`Sparse24`]: 2:4 compressed, two kept values and two 2-bit positions per group of four.
//!
//! Each reports its true size in bytes ([`SparseMatrix::nbytes`]) and multiplies a dense vector
//! (`W x`) or a dense matrix (`W X`, `X` of shape `[cols, batch]`), equal to the dense product up
//! to f32 summation order.
//!
//! ```
//! use modelopt_prune::sparse::{Csr, SparseMatrix};
//! use ndarray::array;
//! let w = array![[0.0f32, 2.0, 0.0], [1.0, 0.0, 3.0]];
//! let csr = Csr::from_dense(&w)?;
//! assert_eq!(csr.nnz(), 3);
//! assert_eq!(csr.matvec(&array![1.0f32, 1.0, 1.0])?, array![2.0f32, 4.0]);
//! # Ok::<(), modelopt_prune::PruneError>(())
//! ```

mod bitmask;
mod csr;
mod sparse24;

pub use bitmask::Bitmask;
pub use csr::Csr;
pub use sparse24::Sparse24;

use modelopt_tensor_core::CoreError;
use ndarray::{Array1, Array2, ArrayRef1, ArrayRef2};

use crate::Result;

/// A sparse 2-D weight matrix that can multiply dense inputs.
///
/// ```
/// use modelopt_prune::sparse::{Bitmask, SparseMatrix};
/// let m: Box<dyn SparseMatrix> = Box::new(Bitmask::from_dense(&ndarray::array![[1.0f32, 0.0]])?);
/// assert_eq!(m.shape(), (1, 2));
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
pub trait SparseMatrix {
    /// `(rows, cols)`.
    fn shape(&self) -> (usize, usize);
    /// Number of stored values (kept weights; 2:4 stores exactly half).
    fn nnz(&self) -> usize;
    /// True storage size in bytes (all buffers, excluding the struct itself).
    fn nbytes(&self) -> usize;
    /// `W x` for `x` of length `cols`.
    fn matvec(&self, x: &ArrayRef1<f32>) -> Result<Array1<f32>>;
    /// `W X` for `X` of shape `[cols, batch]`; the result is `[rows, batch]`.
    fn matmul(&self, x: &ArrayRef2<f32>) -> Result<Array2<f32>>;
    /// The dense matrix.
    fn to_dense(&self) -> Array2<f32>;
}

pub(crate) fn check_vec(cols: usize, x: &ArrayRef1<f32>) -> Result<()> {
    if x.len() != cols {
        return Err(CoreError::ShapeMismatch {
            expected: vec![cols],
            found: vec![x.len()],
        }
        .into());
    }
    Ok(())
}

pub(crate) fn check_mat(cols: usize, x: &ArrayRef2<f32>) -> Result<()> {
    if x.nrows() != cols {
        return Err(CoreError::ShapeMismatch {
            expected: vec![cols, x.ncols()],
            found: x.shape().to_vec(),
        }
        .into());
    }
    Ok(())
}

/// One output row of `W X`: `y = sum over (v, c) of v * X[c, ..]`, `X` row-major `[cols, b]`.
/// Common batch sizes keep the accumulator in registers (a fixed-size array the compiler
/// vectorises); others accumulate in `y`.
#[inline]
pub(crate) fn row_times_dense(
    pairs: impl Iterator<Item = (f32, usize)>,
    xs: &[f32],
    b: usize,
    y: &mut [f32],
) {
    match b {
        1 => fixed::<1>(pairs, xs, y),
        2 => fixed::<2>(pairs, xs, y),
        4 => fixed::<4>(pairs, xs, y),
        8 => fixed::<8>(pairs, xs, y),
        16 => fixed::<16>(pairs, xs, y),
        32 => fixed::<32>(pairs, xs, y),
        _ => {
            for (v, c) in pairs {
                if let Some(xr) = xs.get(c * b..(c + 1) * b) {
                    y.iter_mut().zip(xr).for_each(|(y, &x)| *y += v * x);
                }
            }
        }
    }
}

#[inline]
fn fixed<const N: usize>(pairs: impl Iterator<Item = (f32, usize)>, xs: &[f32], y: &mut [f32]) {
    let mut acc = [0f32; N];
    for (v, c) in pairs {
        // ok: c < cols is an invariant of every form, so the row always exists
        if let Some(xr) = xs
            .get(c * N..(c + 1) * N)
            .and_then(|s| <&[f32; N]>::try_from(s).ok())
        {
            for i in 0..N {
                acc[i] += v * xr[i];
            }
        }
    }
    y.iter_mut().zip(acc).for_each(|(y, a)| *y = a);
}
