//! torch's CPU summation of an `f32` vector, reproduced in its exact order of additions.
//!
//! bitsandbytes' double quantization subtracts `absmax.mean()`, and torch's mean on the CPU is
//! its cascade sum divided by the count. The sum (aten `SumKernel.cpp`, AVX2 build: 8-lane
//! vectors) treats the data as 8-lane vectors, accumulates them in 4 interleaved rows through a
//! 4-level cascade whose level size is `2^max(4, ceil(log2(rows)) / 4)`, then adds the scalar
//! tail and the 8 lanes in order. torch splits sums of more than 32768 elements over its
//! threads; this is the single-thread order (identical for any thread count below that size).

const LANES: usize = 8;
const LEVELS: usize = 4;
const ROWS: usize = 4;

type Vec8 = [f32; LANES];

fn add(a: &mut Vec8, b: &Vec8) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// `ceil(log2(x))` as torch's `CeilLog2` (0 for x <= 1).
fn ceil_log2(x: usize) -> usize {
    if x <= 1 {
        0
    } else {
        (usize::BITS - (x - 1).leading_zeros()) as usize
    }
}

/// torch's `multi_row_sum` over `size` steps of `ROWS` vectors each.
fn multi_row_sum(v: &[Vec8], size: usize) -> [Vec8; ROWS] {
    let level_power = 4.max(ceil_log2(size) / LEVELS);
    let level_step = 1usize << level_power;
    let level_mask = level_step - 1;
    let mut acc = [[[0f32; LANES]; ROWS]; LEVELS];
    let mut i = 0;
    while i + level_step <= size {
        for _ in 0..level_step {
            for k in 0..ROWS {
                add(&mut acc[0][k], &v[i * ROWS + k]);
            }
            i += 1;
        }
        for j in 1..LEVELS {
            let (lower, upper) = acc.split_at_mut(j);
            for (l, u) in lower[j - 1].iter_mut().zip(upper[0].iter_mut()) {
                add(u, l);
                *l = [0.0; LANES];
            }
            if i & (level_mask << (j * level_power)) != 0 {
                break;
            }
        }
    }
    while i < size {
        for k in 0..ROWS {
            add(&mut acc[0][k], &v[i * ROWS + k]);
        }
        i += 1;
    }
    let (first, rest) = acc.split_at_mut(1);
    for level in rest.iter() {
        for (a, u) in first[0].iter_mut().zip(level) {
            add(a, u);
        }
    }
    acc[0]
}

/// `torch.sum(x)` of a contiguous f32 tensor on one CPU thread.
pub(crate) fn torch_sum(x: &[f32]) -> f32 {
    let (vecs, tail) = x.as_chunks::<LANES>();
    let size_ilp = vecs.len() / ROWS;
    let mut ps = multi_row_sum(vecs, size_ilp);
    for v in &vecs[size_ilp * ROWS..] {
        add(&mut ps[0], v);
    }
    for k in 1..ROWS {
        let p = ps[k];
        add(&mut ps[0], &p);
    }
    let mut acc = 0f32;
    for &t in tail {
        acc += t;
    }
    for &p in &ps[0] {
        acc += p;
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sums_are_exact_and_ordered() {
        assert_eq!(torch_sum(&[]), 0.0);
        assert_eq!(torch_sum(&[1.0, 2.0, 3.0]), 6.0);
        let v: Vec<f32> = (1..=1000).map(|i| i as f32).collect();
        assert_eq!(torch_sum(&v), 500_500.0);
    }

    #[test]
    fn matches_torch_where_the_exactly_rounded_sum_differs() {
        // torch 2.15, one thread: x = (((i * 7919) % 100003) / 1024)^3 in f32, i < 5003;
        // torch.from_numpy(x).sum() has bits 1317719178, the exactly rounded sum 1317719177.
        let x: Vec<f32> = (0..5003u64)
            .map(|i| {
                let v = ((i * 7919) % 100_003) as f32 * (1.0 / 1024.0);
                v * v * v
            })
            .collect();
        assert_eq!(torch_sum(&x).to_bits(), 1_317_719_178);
        let exact = x.iter().map(|&v| f64::from(v)).sum::<f64>() as f32;
        assert_eq!(exact.to_bits(), 1_317_719_177);
    }
}
