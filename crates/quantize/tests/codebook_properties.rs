//! Codebook quantization: invariants (proptest, small case counts) and bad input.

use modelopt_quantize::codebook::{Bnb4, CodebookScheme, Grid, Sharing};
use modelopt_tensor_core::Par;
use ndarray::{Array1, Array2, Array3};
use proptest::prelude::*;

fn matrix() -> impl Strategy<Value = Array2<f32>> {
    (1usize..6, 1usize..5).prop_flat_map(|(r, c)| {
        prop::collection::vec(-100.0f32..100.0, r * c * 8)
            .prop_map(move |v| Array2::from_shape_vec((r, c * 8), v).unwrap())
    })
}

/// The level nearest to `x` is at distance `d`; the assigned one may only be farther by the
/// rounding of the midpoint (one ulp of the midpoint).
fn assert_nearest(levels: &[f32], x: f32, got: f32) {
    let best = levels
        .iter()
        .map(|l| (x - l).abs())
        .fold(f32::INFINITY, f32::min);
    let slack = 2.0 * f32::EPSILON * x.abs().max(got.abs()).max(1e-30);
    assert!(
        (x - got).abs() <= best + slack,
        "x = {x}: got {got}, nearest at {best}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn kmeans_per_channel_is_idempotent_and_nearest(w in matrix(), bits in 1u8..=8, seed in 0u64..4) {
        let s = CodebookScheme::kmeans(bits).per_channel(0).seed(seed).check()?;
        let q = s.quantize(&w)?;
        let y = q.dequantize();
        prop_assert_eq!(s.quantize(&y)?.dequantize(), y.clone());
        let l = 1usize << bits;
        for (r, row) in w.rows().into_iter().enumerate() {
            let levels = &q.levels()[r * l..(r + 1) * l];
            for (x, got) in row.iter().zip(y.row(r)) {
                assert_nearest(levels, *x, *got);
            }
        }
        prop_assert_eq!(s.quantize_par(&w, Par::all_cores())?, q);
    }

    // Scaled grids are idempotent when the grid holds ±1 (the absmax element keeps its value, so
    // the scale survives). A learned codebook over absmax blocks is not in general: its outer
    // levels are centroids inside (-1, 1), so requantizing sees smaller block maxima.
    #[test]
    fn scaled_grids_with_unit_levels_are_idempotent(w in matrix(), bits in 2u8..=6) {
        let sym = Grid::new(&[-1.0, -0.5, -0.125, 0.0, 0.125, 0.5, 1.0])?;
        for s in [
            CodebookScheme::logarithmic(bits).per_channel(0).check()?,
            CodebookScheme::logarithmic(bits).absmax_scaled(Sharing::Blocks { size: 8 }).check()?,
            CodebookScheme::grid(sym.clone()).absmax_scaled(Sharing::Blocks { size: 8 }).check()?,
        ] {
            let y = s.quantize(&w)?.dequantize();
            let again = s.quantize(&y)?.dequantize();
            for (a, b) in again.iter().zip(&y) {
                prop_assert!((a - b).abs() <= 4.0 * f32::EPSILON * b.abs(), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn user_grid_maps_each_value_to_its_nearest_level(v in prop::collection::vec(-3.0f32..3.0, 1..200)) {
        let levels = [-2.0f32, -0.7, -0.1, 0.0, 0.4, 1.5];
        let x = Array1::from(v);
        let q = CodebookScheme::grid(Grid::new(&levels)?).quantize(&x)?;
        for (a, b) in x.iter().zip(q.dequantize().iter()) {
            assert_nearest(&levels, *a, *b);
        }
    }

    #[test]
    fn nf4_requantizes_its_own_output_unchanged(w in matrix(), double in any::<bool>()) {
        let s = Bnb4::nf4().block_size(32).double_quant(double).check()?;
        let q = s.quantize(&w)?;
        let y = q.dequantize();
        let q2 = s.quantize(&y)?;
        prop_assert_eq!(q2.packed(), q.packed());
    }
}

#[test]
fn any_dimension_and_views() {
    let w = Array3::from_shape_fn((3, 4, 16), |(i, j, k)| {
        (i * 64 + j * 16 + k) as f32 * 0.01 - 1.0
    });
    for axis in 0..3 {
        let q = CodebookScheme::kmeans(2)
            .per_channel(axis)
            .quantize(&w)
            .unwrap();
        assert_eq!(q.levels().len(), 4 * w.shape()[axis]);
        assert!(q.error_metrics(&w).unwrap().sqnr_db > 10.0);
    }
    let t = w.t();
    let a = CodebookScheme::kmeans(3).quantize(&t).unwrap();
    let b = CodebookScheme::kmeans(3).quantize(&t.to_owned()).unwrap();
    assert_eq!(a, b);
    let g = CodebookScheme::kmeans(2)
        .per_group(1, 2)
        .quantize(&w)
        .unwrap();
    assert_eq!(g.levels().len(), 4 * 3 * 2 * 16);
}

#[test]
fn bad_input_is_an_error_never_a_panic() {
    let w = Array2::from_shape_fn((2, 8), |(i, j)| (i + j) as f32);
    let mut nan = w.clone();
    nan[[1, 3]] = f32::NAN;
    let mut inf = w.clone();
    inf[[0, 2]] = f32::NEG_INFINITY;
    for x in [&nan, &inf] {
        assert!(CodebookScheme::kmeans(4).quantize(x).is_err());
        assert!(CodebookScheme::logarithmic(4).quantize(x).is_err());
        assert!(Bnb4::nf4().quantize(x).is_err());
        assert!(Bnb4::fp4().double_quant(true).quantize(x).is_err());
    }
    let e = CodebookScheme::kmeans(4)
        .quantize(&nan)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[1, 3]") || e.contains("11"), "{e}");
    let empty = Array2::<f32>::zeros((0, 4));
    assert!(CodebookScheme::kmeans(2).quantize(&empty).is_err());
    assert!(Bnb4::nf4().quantize(&empty).is_err());
    for b in [0u8, 9] {
        assert!(CodebookScheme::kmeans(b).check().is_err());
        assert!(CodebookScheme::logarithmic(b).check().is_err());
    }
    assert!(
        CodebookScheme::kmeans(2)
            .per_group(1, 3)
            .quantize(&w)
            .is_err()
    );
    assert!(
        CodebookScheme::kmeans(2)
            .per_channel(2)
            .quantize(&w)
            .is_err()
    );
    assert!(CodebookScheme::learned_nf4(4, 0).check().is_err());
    assert!(
        CodebookScheme::kmeans(2)
            .tolerance(f64::NAN)
            .check()
            .is_err()
    );
    let imp = Array2::from_elem((2, 7), 1.0f32);
    assert!(
        CodebookScheme::kmeans(2)
            .check()
            .unwrap()
            .quantize_weighted(&w, &imp.view(), Par::Seq)
            .is_err()
    );
    for block in [0usize, 16, 48, 100] {
        assert!(Bnb4::nf4().block_size(block).check().is_err(), "{block}");
    }
}

#[test]
fn documented_exact_results() {
    // Fewer distinct values than levels: those values exactly.
    let x = ndarray::array![[3.0f32, -1.0, 3.0, 3.0], [-1.0, 0.5, 0.5, 3.0]];
    let q = CodebookScheme::kmeans(3).quantize(&x).unwrap();
    assert_eq!(q.dequantize(), x);
    assert_eq!(&q.levels()[..3], &[-1.0, 0.5, 3.0]);
    // A constant channel and an all-zero block.
    let c = Array2::from_elem((2, 64), 0.25f32);
    assert_eq!(
        CodebookScheme::kmeans(4)
            .per_channel(0)
            .quantize(&c)
            .unwrap()
            .dequantize(),
        c
    );
    let z = Array2::<f32>::zeros((1, 64));
    assert_eq!(Bnb4::fp4().quantize(&z).unwrap().dequantize(), z);
    assert_eq!(
        CodebookScheme::learned_nf4(4, 64)
            .quantize(&z)
            .unwrap()
            .dequantize(),
        z
    );
    // A block size that does not divide the tensor: the last block is shorter (bitsandbytes).
    let odd = Array1::linspace(-1.0f32, 1.0, 100);
    let q = Bnb4::nf4().quantize(&odd).unwrap();
    assert_eq!((q.packed().len(), q.dequantize().len()), (50, 100));
}
