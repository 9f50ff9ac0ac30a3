use modelopt_tensor_core::stats::check_finite;
use ndarray::{Array1, Array2, ArrayRef1, ArrayRef2};

use super::{SparseMatrix, check_mat, check_vec, row_times_dense};
use crate::Result;

/// Bitmask storage: per row, `ceil(cols / 64)` words with bit `c % 64` of word `c / 64` set
/// where the weight is kept, plus the kept values in row-major order and a `u32` offset per
/// row into them.
///
/// ```
/// use modelopt_prune::sparse::{Bitmask, SparseMatrix};
/// use ndarray::array;
/// let b = Bitmask::from_dense(&array![[0.0f32, 5.0, 1.0]])?;
/// assert_eq!(b.nbytes(), 8 + 2 * 4 + 2 * 4);
/// assert_eq!(b.matvec(&array![1.0f32, 2.0, 3.0])?, array![13.0f32]);
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Bitmask {
    rows: usize,
    cols: usize,
    words_per_row: usize,
    bits: Vec<u64>,
    row_start: Vec<u32>,
    values: Vec<f32>,
}

impl Bitmask {
    /// Stores the nonzeros of `w`. Errors on a non-finite value or more than `u32::MAX` nonzeros.
    ///
    /// ```
    /// assert!(modelopt_prune::sparse::Bitmask::from_dense(&ndarray::array![[f32::INFINITY]]).is_err());
    /// ```
    pub fn from_dense(w: &ArrayRef2<f32>) -> Result<Self> {
        check_finite(w)?;
        let (rows, cols) = w.dim();
        let words_per_row = cols.div_ceil(64);
        let mut bits = vec![0u64; rows * words_per_row];
        let mut row_start = Vec::with_capacity(rows + 1);
        let mut values = Vec::new();
        row_start.push(0);
        for (r, row) in w.rows().into_iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    bits[r * words_per_row + c / 64] |= 1 << (c % 64);
                    values.push(v);
                }
            }
            row_start.push(u32::try_from(values.len()).map_err(|_| {
                modelopt_tensor_core::CoreError::invalid("weights", "nonzeros exceed u32 offsets")
            })?);
        }
        Ok(Bitmask {
            rows,
            cols,
            words_per_row,
            bits,
            row_start,
            values,
        })
    }

    /// Calls `f(col, value_index)` for each kept position of row `r`, in column order.
    #[inline]
    fn for_each_in_row(&self, r: usize, mut f: impl FnMut(usize, usize)) {
        let mut p = self.row_start[r] as usize;
        let words = &self.bits[r * self.words_per_row..(r + 1) * self.words_per_row];
        for (w, &word) in words.iter().enumerate() {
            let mut b = word;
            while b != 0 {
                f(w * 64 + b.trailing_zeros() as usize, p);
                p += 1;
                b &= b - 1;
            }
        }
    }
}

impl SparseMatrix for Bitmask {
    fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
    fn nnz(&self) -> usize {
        self.values.len()
    }
    fn nbytes(&self) -> usize {
        8 * self.bits.len() + 4 * self.row_start.len() + 4 * self.values.len()
    }
    fn matvec(&self, x: &ArrayRef1<f32>) -> Result<Array1<f32>> {
        check_vec(self.cols, x)?;
        let x = x.as_standard_layout();
        let x = x.as_slice().unwrap_or(&[]);
        Ok((0..self.rows)
            .map(|r| {
                let mut acc = [0f32; 2];
                let vals = &self.values[self.row_start[r] as usize..self.row_start[r + 1] as usize];
                let mut vi = vals.iter();
                let words = &self.bits[r * self.words_per_row..(r + 1) * self.words_per_row];
                for (w, &word) in words.iter().enumerate() {
                    let (base, mut b) = (w * 64, word);
                    // Two sums, alternating per set bit, halve the add dependency chain.
                    while b != 0 {
                        let c0 = base + b.trailing_zeros() as usize;
                        b &= b - 1;
                        acc[0] += vi.next().copied().unwrap_or(0.0) * x[c0];
                        if b == 0 {
                            break;
                        }
                        let c1 = base + b.trailing_zeros() as usize;
                        b &= b - 1;
                        acc[1] += vi.next().copied().unwrap_or(0.0) * x[c1];
                    }
                }
                acc[0] + acc[1]
            })
            .collect())
    }
    fn matmul(&self, x: &ArrayRef2<f32>) -> Result<Array2<f32>> {
        check_mat(self.cols, x)?;
        let b = x.ncols();
        let x = x.as_standard_layout();
        let xs = x.as_slice().unwrap_or(&[]);
        let mut pairs: Vec<(f32, usize)> = Vec::with_capacity(self.cols);
        let mut y = Array2::zeros((self.rows, b));
        for (r, mut yr) in y.rows_mut().into_iter().enumerate() {
            let yr = yr.as_slice_mut().unwrap_or(&mut []); // ok: rows of a fresh array are contiguous
            pairs.clear();
            self.for_each_in_row(r, |c, p| pairs.push((self.values[p], c)));
            row_times_dense(pairs.iter().copied(), xs, b, yr);
        }
        Ok(y)
    }
    fn to_dense(&self) -> Array2<f32> {
        let mut d = Array2::zeros((self.rows, self.cols));
        for r in 0..self.rows {
            self.for_each_in_row(r, |c, p| d[[r, c]] = self.values[p]);
        }
        d
    }
}
