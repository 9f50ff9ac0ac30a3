//! Assignment of values to grid levels: the threshold count, in a form the compiler vectorises.

use super::grid::Grid;

/// Writes the level index of each `ys[i]` into `out[i]`.
pub(crate) fn assign(grid: &Grid, ys: &[f32], out: &mut [u8]) {
    let t = grid.thresholds();
    if t.len() <= 15 {
        let mut th = [f32::INFINITY; 15];
        th[..t.len()].copy_from_slice(t);
        for (o, &y) in out.iter_mut().zip(ys) {
            *o = count15(&th, y);
        }
    } else {
        for (o, &y) in out.iter_mut().zip(ys) {
            *o = t.partition_point(|&t| t <= y) as u8;
        }
    }
}

/// Number of thresholds `<= y` (padding thresholds are +inf).
#[inline(always)]
pub(crate) fn count15(th: &[f32; 15], y: f32) -> u8 {
    th.iter().map(|&t| u8::from(y >= t)).sum()
}
