use modelopt_tensor_core::{CoreError, Float};
use ndarray::{Array2, ArrayRef2, Axis};
use rand::RngExt;
use rand::rngs::StdRng;

use crate::{Result, Teacher};

/// Random translations of images (rows of flattened `[channels, height, width]` samples) by up to
/// `max` pixels in each direction, zero fill: the augmentation of the CNN examples, and the
/// transfer set of offline distillation (the teacher's logits for every shift of every image,
/// computed once by [`Shifts::teacher_logits`]).
///
/// The shifts are numbered `0..len()`: `(dy, dx)` for `dy` in `-max..=max`, then `dx` likewise.
///
/// ```
/// use modelopt_distill::Shifts;
/// use ndarray::Array2;
/// let shifts = Shifts::new([1, 3, 3], 1)?;
/// assert_eq!(shifts.len(), 9);
/// let image = Array2::from_shape_vec((1, 9), (1..=9).map(|v| v as f32).collect()).unwrap();
/// // Shift 8 is (dy, dx) = (1, 1): everything moves one pixel down and right.
/// let moved = shifts.apply(&image, 8)?;
/// assert_eq!(moved.row(0).to_vec(), vec![0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 4.0, 5.0]);
/// assert!(Shifts::new([1, 3, 3], 3).is_err()); // a shift must leave part of the image
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shifts {
    shape: [usize; 3],
    table: Vec<(i64, i64)>,
}

impl Shifts {
    /// Shifts of up to `max` pixels of images of `shape` (`[channels, height, width]`); `max = 0`
    /// is the identity alone (no augmentation).
    pub fn new(shape: [usize; 3], max: usize) -> Result<Self> {
        if shape.contains(&0) {
            return Err(CoreError::invalid(
                "image shape",
                format!("needs non-zero sizes, got {shape:?}"),
            )
            .into());
        }
        if max >= shape[1].min(shape[2]) {
            return Err(CoreError::invalid(
                "shift",
                format!(
                    "{max} pixels would move a {}x{} image out of view",
                    shape[1], shape[2]
                ),
            )
            .into());
        }
        let m = max as i64;
        let table = (-m..=m)
            .flat_map(|dy| (-m..=m).map(move |dx| (dy, dx)))
            .collect();
        Ok(Shifts { shape, table })
    }

    /// Number of shifts, `(2 max + 1)^2`.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Never true (the identity is always a shift); for symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Values per image.
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    fn check(&self, inputs: &ArrayRef2<impl Float>) -> Result<()> {
        if inputs.ncols() != self.image_len() {
            return Err(CoreError::invalid(
                "images",
                format!(
                    "rows of {} values expected for {:?}, got {}",
                    self.image_len(),
                    self.shape,
                    inputs.ncols()
                ),
            )
            .into());
        }
        Ok(())
    }

    fn shift_row<A: Float>(&self, src: impl Fn(usize) -> A, dst: &mut [A], id: usize) {
        let (dy, dx) = self.table[id];
        let [c, h, w] = self.shape;
        for ch in 0..c {
            for r in 0..h {
                for col in 0..w {
                    let (sr, sc) = (r as i64 - dy, col as i64 - dx);
                    dst[(ch * h + r) * w + col] =
                        if (0..h as i64).contains(&sr) && (0..w as i64).contains(&sc) {
                            src((ch * h + sr as usize) * w + sc as usize)
                        } else {
                            A::zero()
                        };
                }
            }
        }
    }

    /// Every row of `inputs` under shift `id`.
    pub fn apply<A: Float>(&self, inputs: &ArrayRef2<A>, id: usize) -> Result<Array2<A>> {
        self.check(inputs)?;
        if id >= self.len() {
            return Err(
                CoreError::invalid("shift", format!("id {id} out of 0..{}", self.len())).into(),
            );
        }
        let mut out = Array2::zeros(inputs.raw_dim());
        for (src, mut dst) in inputs.rows().into_iter().zip(out.rows_mut()) {
            let dst = dst
                .as_slice_mut()
                .ok_or_else(|| CoreError::invalid("images", "not contiguous"))?;
            self.shift_row(|i| src[i], dst, id);
        }
        Ok(out)
    }

    /// A training batch: rows `idx` of `inputs`, each under a shift drawn from `rng`; returns the
    /// batch and the shift of each row (to look up the teacher's logits).
    pub fn batch<A: Float>(
        &self,
        inputs: &ArrayRef2<A>,
        idx: &[usize],
        rng: &mut StdRng,
    ) -> Result<(Array2<A>, Vec<usize>)> {
        self.check(inputs)?;
        let mut x = Array2::zeros((idx.len(), self.image_len()));
        let mut ids = Vec::with_capacity(idx.len());
        for (row, &i) in idx.iter().enumerate() {
            if i >= inputs.nrows() {
                return Err(CoreError::invalid(
                    "batch",
                    format!("row {i} out of 0..{}", inputs.nrows()),
                )
                .into());
            }
            let s = rng.random_range(0..self.len());
            ids.push(s);
            let src = inputs.row(i);
            let mut dst = x.row_mut(row);
            let dst = dst
                .as_slice_mut()
                .ok_or_else(|| CoreError::invalid("batch", "not contiguous"))?;
            self.shift_row(|j| src[j], dst, s);
        }
        Ok((x, ids))
    }

    /// The teacher's outputs for every image under every shift, `[shift][image, class]`, computed
    /// in chunks of 256 images.
    pub fn teacher_logits<A: Float, T: Teacher<A> + ?Sized>(
        &self,
        teacher: &T,
        inputs: &ArrayRef2<A>,
    ) -> Result<Vec<Array2<A>>> {
        let mut out = Vec::with_capacity(self.len());
        for id in 0..self.len() {
            let shifted = self.apply(inputs, id)?;
            let mut parts = Vec::new();
            for chunk in shifted.axis_chunks_iter(Axis(0), 256) {
                parts.push(teacher.predict(&chunk)?);
            }
            let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
            out.push(
                ndarray::concatenate(Axis(0), &views)
                    .map_err(|e| CoreError::invalid("teacher outputs", e.to_string()))?,
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modelopt_nn::Mlp;
    use rand::SeedableRng;

    #[test]
    fn a_shift_and_its_opposite_restore_the_interior() {
        let shifts = Shifts::new([2, 5, 4], 2).unwrap();
        let x = Array2::from_shape_fn((3, 40), |(i, j)| (i * 40 + j) as f64 + 1.0);
        // Ids run over (dy, dx) row-major: (dy, dx) is 5 * (dy + 2) + (dx + 2).
        let id = |dy: i64, dx: i64| (5 * (dy + 2) + dx + 2) as usize;
        for (dy, dx) in [(1, -2), (-2, 1), (0, 0), (2, 2)] {
            let there = shifts.apply(&x, id(dy, dx)).unwrap();
            let back = shifts.apply(&there, id(-dy, -dx)).unwrap();
            for r in 0..3 {
                for c in 0..2 {
                    for y in 0..5i64 {
                        for xx in 0..4i64 {
                            let k = (c * 5 + y as usize) * 4 + xx as usize;
                            let inside = (0..5).contains(&(y + dy)) && (0..4).contains(&(xx + dx));
                            let want = if inside { x[[r, k]] } else { 0.0 };
                            assert_eq!(
                                back[[r, k]],
                                want,
                                "shift ({dy}, {dx}) at {r},{c},{y},{xx}"
                            );
                        }
                    }
                }
            }
        }
        assert_eq!(shifts.apply(&x, id(0, 0)).unwrap(), x);
    }

    #[test]
    fn bad_input_is_an_error() {
        let shifts = Shifts::new([1, 4, 4], 1).unwrap();
        let x = Array2::<f32>::zeros((2, 16));
        assert!(shifts.apply(&Array2::<f32>::zeros((2, 15)), 0).is_err());
        assert!(shifts.apply(&x, 9).is_err());
        let mut rng = StdRng::seed_from_u64(0);
        assert!(shifts.batch(&x, &[0, 2], &mut rng).is_err());
        assert!(Shifts::new([1, 0, 4], 0).is_err());
        let teacher = Mlp::<f32>::builder(&[16, 3]).build().unwrap();
        let logits = shifts.teacher_logits(&teacher, &x).unwrap();
        assert_eq!((logits.len(), logits[0].dim()), (9, (2, 3)));
    }
}
