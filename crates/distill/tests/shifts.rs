//! Invariants of the shift augmentation, on random shapes, images and shifts.

use modelopt_distill::Shifts;
use ndarray::Array2;
use proptest::prelude::*;

proptest! {
    /// Every pixel of a shifted image is the source pixel `(y - dy, x - dx)` of the same channel,
    /// or 0 where that falls outside; shifting back restores every pixel that stayed in view.
    #[test]
    fn a_shift_moves_pixels_and_its_opposite_restores_them(
        c in 1usize..3, h in 3usize..8, w in 3usize..8, seed in 0u64..1000, pick in 0usize..1000,
    ) {
        let max = (h.min(w) - 1).min(2);
        let shifts = Shifts::new([c, h, w], max).unwrap();
        let side = 2 * max + 1;
        let id = pick % shifts.len();
        let (dy, dx) = ((id / side) as i64 - max as i64, (id % side) as i64 - max as i64);
        let x = Array2::from_shape_fn((2, c * h * w), |(r, k)| {
            1.0 + ((seed as usize * 31 + r * 7 + k * 13) % 97) as f64
        });
        let moved = shifts.apply(&x, id).unwrap();
        let back = shifts.apply(&moved, shifts.len() - 1 - id).unwrap(); // the opposite shift
        for r in 0..2 {
            for ch in 0..c {
                for y in 0..h as i64 {
                    for xx in 0..w as i64 {
                        let k = (ch * h + y as usize) * w + xx as usize;
                        let (sy, sx) = (y - dy, xx - dx);
                        let src_in = (0..h as i64).contains(&sy) && (0..w as i64).contains(&sx);
                        let want = if src_in { x[[r, (ch * h + sy as usize) * w + sx as usize]] } else { 0.0 };
                        prop_assert_eq!(moved[[r, k]], want);
                        let stays = (0..h as i64).contains(&(y + dy)) && (0..w as i64).contains(&(xx + dx));
                        prop_assert_eq!(back[[r, k]], if stays { x[[r, k]] } else { 0.0 });
                    }
                }
            }
        }
    }
}
