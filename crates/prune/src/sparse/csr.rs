use modelopt_tensor_core::{CoreError, stats::check_finite};
use ndarray::{Array1, Array2, ArrayRef1, ArrayRef2};

use super::{SparseMatrix, check_mat, check_vec, row_times_dense};
use crate::Result;

/// Compressed sparse rows: `row_ptr` (`rows + 1` entries), `u32` column indices and `f32`
/// values of the nonzeros in row-major order.
///
/// ```
/// use modelopt_prune::sparse::{Csr, SparseMatrix};
/// use ndarray::array;
/// let csr = Csr::from_dense(&array![[0.0f32, 5.0], [0.0, 0.0]])?;
/// assert_eq!(csr.nbytes(), 3 * 4 + 4 + 4);
/// assert_eq!(csr.to_dense(), array![[0.0f32, 5.0], [0.0, 0.0]]);
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Csr {
    rows: usize,
    cols: usize,
    row_ptr: Vec<u32>,
    col_idx: Vec<u32>,
    values: Vec<f32>,
}

impl Csr {
    /// Stores the nonzeros of `w`. Errors on a non-finite value or more than `u32::MAX`
    /// columns or nonzeros.
    ///
    /// ```
    /// let e = modelopt_prune::sparse::Csr::from_dense(&ndarray::array![[f32::NAN]]);
    /// assert!(e.is_err());
    /// ```
    pub fn from_dense(w: &ArrayRef2<f32>) -> Result<Self> {
        check_finite(w)?;
        let (rows, cols) = w.dim();
        let too_big =
            |what: &str| CoreError::invalid("weights", format!("{what} exceed u32 indices"));
        u32::try_from(cols).map_err(|_| too_big("columns"))?;
        let mut row_ptr = Vec::with_capacity(rows + 1);
        let (mut col_idx, mut values) = (Vec::new(), Vec::new());
        row_ptr.push(0);
        for row in w.rows() {
            for (c, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    col_idx.push(c as u32); // ok: c < cols <= u32::MAX
                    values.push(v);
                }
            }
            row_ptr.push(u32::try_from(values.len()).map_err(|_| too_big("nonzeros"))?);
        }
        Ok(Csr {
            rows,
            cols,
            row_ptr,
            col_idx,
            values,
        })
    }

    fn row_range(&self, r: usize) -> std::ops::Range<usize> {
        self.row_ptr[r] as usize..self.row_ptr[r + 1] as usize
    }
}

impl SparseMatrix for Csr {
    fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
    fn nnz(&self) -> usize {
        self.values.len()
    }
    fn nbytes(&self) -> usize {
        4 * (self.row_ptr.len() + self.col_idx.len() + self.values.len())
    }
    fn matvec(&self, x: &ArrayRef1<f32>) -> Result<Array1<f32>> {
        check_vec(self.cols, x)?;
        let x = x.as_standard_layout();
        let x = x.as_slice().unwrap_or(&[]);
        let y = (0..self.rows)
            .map(|r| {
                let range = self.row_range(r);
                let (v, c) = (&self.values[range.clone()], &self.col_idx[range]);
                // Four independent sums hide the add latency.
                let mut acc = [0f32; 4];
                let (v4, c4) = (v.chunks_exact(4), c.chunks_exact(4));
                let (vt, ct) = (v4.remainder(), c4.remainder());
                for (v, c) in v4.zip(c4) {
                    for l in 0..4 {
                        acc[l] += v[l] * x[c[l] as usize];
                    }
                }
                let tail: f32 = vt.iter().zip(ct).map(|(v, &c)| v * x[c as usize]).sum();
                (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
            })
            .collect();
        Ok(y)
    }
    fn matmul(&self, x: &ArrayRef2<f32>) -> Result<Array2<f32>> {
        check_mat(self.cols, x)?;
        let b = x.ncols();
        let x = x.as_standard_layout();
        let xs = x.as_slice().unwrap_or(&[]);
        let mut y = Array2::zeros((self.rows, b));
        for (r, mut yr) in y.rows_mut().into_iter().enumerate() {
            let yr = yr.as_slice_mut().unwrap_or(&mut []); // ok: rows of a fresh array are contiguous
            let range = self.row_range(r);
            let pairs = self.values[range.clone()]
                .iter()
                .zip(&self.col_idx[range])
                .map(|(&v, &c)| (v, c as usize));
            row_times_dense(pairs, xs, b, yr);
        }
        Ok(y)
    }
    fn to_dense(&self) -> Array2<f32> {
        let mut d = Array2::zeros((self.rows, self.cols));
        for r in 0..self.rows {
            let range = self.row_range(r);
            for (&v, &c) in self.values[range.clone()].iter().zip(&self.col_idx[range]) {
                d[[r, c as usize]] = v;
            }
        }
        d
    }
}
