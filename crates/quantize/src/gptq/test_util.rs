//! Test helpers shared by the GPTQ and SparseGPT tests: seeded problems with correlated
//! inputs, their Hessians, an explicit inverse for the per-column reference forms.

use ndarray::Array2;

use super::Hessian;

pub(super) fn gauss_jordan_inverse(a: &Array2<f64>) -> Array2<f64> {
    let n = a.nrows();
    let mut m = a.clone();
    let mut inv = Array2::<f64>::eye(n);
    for i in 0..n {
        let p = m[[i, i]];
        for j in 0..n {
            m[[i, j]] /= p;
            inv[[i, j]] /= p;
        }
        for r in 0..n {
            if r != i {
                let f = m[[r, i]];
                for j in 0..n {
                    m[[r, j]] -= f * m[[i, j]];
                    inv[[r, j]] -= f * inv[[i, j]];
                }
            }
        }
    }
    inv
}

pub(super) fn problem(
    rows: usize,
    cols: usize,
    tokens: usize,
    seed: u64,
) -> (Array2<f32>, Array2<f32>) {
    let mut s = seed;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let w = Array2::from_shape_fn((rows, cols), |_| next());
    let z = Array2::from_shape_fn((tokens, cols), |_| next());
    let mix = Array2::from_shape_fn(
        (cols, cols),
        |(i, j)| {
            if i == j { 1.0 } else { 0.3 * next() }
        },
    );
    (w, z.dot(&mix))
}

pub(super) fn hessian(x: &Array2<f32>) -> Hessian {
    let mut acc = super::HessianAccumulator::new(x.ncols());
    acc.add_batch(x).unwrap();
    acc.finish().unwrap()
}

pub(super) fn max_rel(a: &Array2<f32>, b: &Array2<f64>) -> f64 {
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0f64, |m, (&x, &y)| m.max((f64::from(x) - y).abs() / scale))
}
