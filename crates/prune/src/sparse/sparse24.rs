use modelopt_tensor_core::{CoreError, stats::check_finite};
use ndarray::{Array1, Array2, ArrayRef1, ArrayRef2};

use super::{SparseMatrix, check_mat, check_vec, row_times_dense};
use crate::{PruneError, Result};

/// 2:4 compressed storage (the layout of sparse tensor cores): each group of 4 consecutive
/// weights of a row keeps 2 values and their 2-bit positions; two groups' positions share a
/// byte (group `g`: bits `4 * (g % 2)..`; low 2 bits the first position, next 2 the second).
/// A group with fewer than 2 nonzeros stores explicit zeros.
///
/// ```
/// use modelopt_prune::sparse::{Sparse24, SparseMatrix};
/// use ndarray::array;
/// let s = Sparse24::from_dense(&array![[0.0f32, 3.0, 0.0, 1.0]])?;
/// assert_eq!(s.nbytes(), 2 * 4 + 1);
/// assert_eq!(s.to_dense(), array![[0.0f32, 3.0, 0.0, 1.0]]);
/// assert!(Sparse24::from_dense(&array![[1.0f32, 1.0, 1.0, 0.0]]).is_err());
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Sparse24 {
    rows: usize,
    cols: usize,
    values: Vec<f32>,
    positions: Vec<u8>,
}

impl Sparse24 {
    /// Compresses `w`, whose every group of 4 along a row has at most 2 nonzeros. Errors if the
    /// column count is not a multiple of 4, on a group with 3 or 4 nonzeros (naming it), or on a
    /// non-finite value.
    ///
    /// ```
    /// assert!(modelopt_prune::sparse::Sparse24::from_dense(&ndarray::array![[1.0f32, 0.0]]).is_err());
    /// ```
    pub fn from_dense(w: &ArrayRef2<f32>) -> Result<Self> {
        check_finite(w)?;
        let (rows, cols) = w.dim();
        if !cols.is_multiple_of(4) {
            return Err(PruneError::NotMultiple {
                axis: 1,
                len: cols,
                multiple: 4,
                what: "2:4 group",
            });
        }
        let groups = rows * cols / 4;
        let mut values = Vec::with_capacity(groups * 2);
        let mut positions = vec![0u8; groups.div_ceil(2)];
        let mut g = 0;
        for (r, row) in w.rows().into_iter().enumerate() {
            for c0 in (0..cols).step_by(4) {
                let nz: Vec<usize> = (0..4).filter(|&i| row[c0 + i] != 0.0).collect();
                if nz.len() > 2 {
                    return Err(CoreError::invalid(
                        "weights",
                        format!(
                            "row {r}, columns {c0}..{}: {} nonzeros, 2:4 allows 2",
                            c0 + 4,
                            nz.len()
                        ),
                    )
                    .into());
                }
                // Pad with unused positions holding zero.
                let (i0, i1) = match nz[..] {
                    [a, b] => (a, b),
                    [a] => (a, if a == 3 { 2 } else { 3 }),
                    _ => (0, 1),
                };
                values.push(row[c0 + i0]);
                values.push(row[c0 + i1]);
                positions[g / 2] |= ((i0 | (i1 << 2)) as u8) << (4 * (g % 2));
                g += 1;
            }
        }
        Ok(Sparse24 {
            rows,
            cols,
            values,
            positions,
        })
    }

    #[inline]
    fn pos(&self, g: usize) -> (usize, usize) {
        let nib = (self.positions[g / 2] >> (4 * (g % 2))) & 0xF;
        ((nib & 3) as usize, (nib >> 2) as usize)
    }
}

impl SparseMatrix for Sparse24 {
    fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
    fn nnz(&self) -> usize {
        self.values.len()
    }
    fn nbytes(&self) -> usize {
        4 * self.values.len() + self.positions.len()
    }
    fn matvec(&self, x: &ArrayRef1<f32>) -> Result<Array1<f32>> {
        check_vec(self.cols, x)?;
        let x = x.as_standard_layout();
        let x = x.as_slice().unwrap_or(&[]);
        let gpr = self.cols / 4;
        Ok((0..self.rows)
            .map(|r| {
                let mut acc = [0f32; 2];
                for j in 0..gpr {
                    let g = r * gpr + j;
                    let (i0, i1) = self.pos(g);
                    let x4 = &x[4 * j..4 * j + 4];
                    acc[0] += self.values[2 * g] * x4[i0];
                    acc[1] += self.values[2 * g + 1] * x4[i1];
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
        let gpr = self.cols / 4;
        let mut pairs: Vec<(f32, usize)> = Vec::with_capacity(2 * gpr);
        let mut y = Array2::zeros((self.rows, b));
        for (r, mut yr) in y.rows_mut().into_iter().enumerate() {
            let yr = yr.as_slice_mut().unwrap_or(&mut []); // ok: rows of a fresh array are contiguous
            // Decode the row's positions once; the product then streams plain pairs.
            pairs.clear();
            for j in 0..gpr {
                let g = r * gpr + j;
                let (i0, i1) = self.pos(g);
                pairs.push((self.values[2 * g], 4 * j + i0));
                pairs.push((self.values[2 * g + 1], 4 * j + i1));
            }
            row_times_dense(pairs.iter().copied(), xs, b, yr);
        }
        Ok(y)
    }
    fn to_dense(&self) -> Array2<f32> {
        let gpr = self.cols / 4;
        let mut d = Array2::zeros((self.rows, self.cols));
        for r in 0..self.rows {
            for j in 0..gpr {
                let g = r * gpr + j;
                let (i0, i1) = self.pos(g);
                d[[r, 4 * j + i0]] += self.values[2 * g];
                d[[r, 4 * j + i1]] += self.values[2 * g + 1];
            }
        }
        d
    }
}
