//! Sparse forms equal the dense matrix; their products equal ndarray's dense `dot`.

use modelopt_prune::sparse::{Bitmask, Csr, Sparse24, SparseMatrix};
use modelopt_prune::{Amount, L1Magnitude, Pruner, Structure};
use ndarray::{Array1, Array2, Ix2};
use proptest::prelude::*;

fn noise(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array2::from_shape_fn((rows, cols), |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    })
}

fn pruned(w: &Array2<f32>, structure: Structure, amount: f64) -> Array2<f32> {
    let m = Pruner::new(L1Magnitude)
        .amount(Amount::fraction(amount).unwrap())
        .structure(structure)
        .prune(w)
        .unwrap();
    m.apply(w).unwrap().into_dimensionality::<Ix2>().unwrap()
}

fn close(a: &Array2<f32>, b: &Array2<f32>) {
    let scale = b.iter().fold(1f32, |m, x| m.max(x.abs()));
    let diff = (a - b).iter().fold(0f32, |m, d| m.max(d.abs()));
    assert!(
        diff <= 1e-5 * scale * 8.0,
        "max diff {diff} (scale {scale})"
    );
}

fn check_all(m: &dyn SparseMatrix, w: &Array2<f32>, seed: u64) {
    assert_eq!(m.to_dense(), *w);
    let x: Array1<f32> = noise(1, w.ncols(), seed).row(0).to_owned();
    let yv = m.matvec(&x).unwrap().insert_axis(ndarray::Axis(1));
    close(&yv, &w.dot(&x).insert_axis(ndarray::Axis(1)));
    for batch in [1, 3, 16] {
        let xb = noise(w.ncols(), batch, seed + batch as u64);
        close(&m.matmul(&xb).unwrap(), &w.dot(&xb));
    }
    assert!(m.matvec(&Array1::zeros(w.ncols() + 1)).is_err());
    assert!(m.matmul(&Array2::zeros((w.ncols() + 1, 2))).is_err());
}

#[test]
fn csr_and_bitmask_products_equal_dense() {
    for (sparsity, seed) in [(0.0, 1), (0.5, 2), (0.9, 3), (1.0, 4)] {
        let w = pruned(&noise(33, 70, seed), Structure::Unstructured, sparsity);
        let nnz = w.iter().filter(|&&x| x != 0.0).count();
        let csr = Csr::from_dense(&w).unwrap();
        assert_eq!(csr.nnz(), nnz);
        assert_eq!(csr.nbytes(), 4 * (33 + 1) + 8 * nnz);
        check_all(&csr, &w, seed);
        let bm = Bitmask::from_dense(&w).unwrap();
        assert_eq!(bm.nbytes(), 8 * 33 * 2 + 4 * (33 + 1) + 4 * nnz);
        check_all(&bm, &w, seed);
    }
}

#[test]
fn sparse24_products_equal_dense() {
    let w = pruned(&noise(17, 64, 5), Structure::n_m(2, 4).unwrap(), 0.0);
    let s = Sparse24::from_dense(&w).unwrap();
    assert_eq!(s.nbytes(), 17 * 64 / 2 * 4 + 17 * 64 / 4 / 2);
    check_all(&s, &w, 5);
    // Groups with fewer than two nonzeros (here 1:4 and all-zero rows) are padded.
    let mut w1 = pruned(&noise(4, 16, 6), Structure::n_m(1, 4).unwrap(), 0.0);
    w1.row_mut(2).fill(0.0);
    check_all(&Sparse24::from_dense(&w1).unwrap(), &w1, 6);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn csr_matches_dense_on_random_shapes(rows in 1usize..20, cols in 1usize..90, sp in 0.0f64..1.0, seed in 0u64..1000) {
        let w = pruned(&noise(rows, cols, seed), Structure::Unstructured, sp);
        check_all(&Csr::from_dense(&w).unwrap(), &w, seed);
        check_all(&Bitmask::from_dense(&w).unwrap(), &w, seed);
    }
}
