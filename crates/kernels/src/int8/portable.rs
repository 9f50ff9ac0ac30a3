//! The portable int8 panel kernel: the reference every SIMD kernel is tested against bit for bit.

use super::NR;

/// `tile[i][r] += sum_{g0 <= g < g1} sum_j x[i][4g + j] * w[g][r][j]` for `rows` activation rows
/// (row `i` starts at `x[i * stride]`), `w` one panel (`[k/4][NR][4]`), `tile` `[rows][NR]`.
/// Sums wrap in `i32` like the SIMD lanes (the caller bounds K so they never do).
pub(super) fn panel(
    x: &[u8],
    stride: usize,
    rows: usize,
    w: &[i8],
    g0: usize,
    g1: usize,
    tile: &mut [i32],
) {
    for i in 0..rows {
        let xi = &x[i * stride..];
        let ti = &mut tile[i * NR..(i + 1) * NR];
        for g in g0..g1 {
            let xg = &xi[4 * g..4 * g + 4];
            let wg = &w[g * 4 * NR..(g + 1) * 4 * NR];
            for (t, wr) in ti.iter_mut().zip(wg.chunks_exact(4)) {
                let s = (0..4).fold(0i32, |s, j| s + xg[j] as i32 * wr[j] as i32);
                *t = t.wrapping_add(s);
            }
        }
    }
}
