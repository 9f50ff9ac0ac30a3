//! Structures, criteria, amounts and error cases, checked against independent references
//! (sorting, hand formulas) rather than the code under test.

use modelopt_prune::{
    Amount, L1Magnitude, L2Magnitude, Mask, MaskedParameter, Norm, PruneError, Pruner,
    PruningCriterion, RandomScores, Schedule, Scope, Structure, Taylor, Wanda, WandaAccumulator,
};
use modelopt_tensor_core::CoreError;
use ndarray::{Array2, ArrayD, array};

fn noise(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array2::from_shape_fn((rows, cols), |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    })
}

#[test]
fn n_m_keeps_the_largest_of_each_group() {
    let w = noise(8, 16, 1);
    for (n, m) in [(2, 4), (4, 8)] {
        let mask = Pruner::new(L1Magnitude)
            .structure(Structure::n_m(n, m).unwrap())
            .prune(&w)
            .unwrap();
        for (r, row) in w.rows().into_iter().enumerate() {
            for g in 0..16 / m {
                let mut idx: Vec<usize> = (g * m..g * m + m).collect();
                idx.sort_by(|&a, &b| row[b].abs().total_cmp(&row[a].abs()));
                for (rank, &c) in idx.iter().enumerate() {
                    assert_eq!(mask.keep()[[r, c]], rank < n, "{n}:{m} row {r} col {c}");
                }
            }
        }
        assert_eq!(mask.sparsity(), (m - n) as f64 / m as f64);
    }
}

#[test]
fn n_m_needs_a_multiple_of_m() {
    let e = Pruner::new(L1Magnitude)
        .structure(Structure::n_m(2, 4).unwrap())
        .prune(&noise(2, 6, 1));
    assert!(matches!(
        e,
        Err(PruneError::NotMultiple {
            axis: 1,
            len: 6,
            multiple: 4,
            ..
        })
    ));
}

#[test]
fn blocks_prune_whole_blocks_by_sum() {
    let w = array![
        [1.0f32, 1.0, 1.0, 1.0, 5.0, 0.1, 0.1, 0.1],
        [9.0, 0.0, 0.0, 0.0, 0.2, 0.2, 0.2, 0.2]
    ];
    // 1x4 blocks: sums 4, 5.3, 9, 0.8 -> prune the two lowest (0.8 and 4).
    let m = Pruner::new(L1Magnitude)
        .amount(Amount::count(2))
        .structure(Structure::block(1, 4).unwrap())
        .prune(&w)
        .unwrap();
    assert_eq!(
        m.to_u8(),
        array![[0u8, 0, 0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0, 0]].into_dyn()
    );
    assert!(
        Pruner::new(L1Magnitude)
            .structure(Structure::block(3, 4).unwrap())
            .prune(&w)
            .is_err()
    );
}

#[test]
fn channel_amount_composes_over_remaining_channels() {
    let w = noise(10, 6, 3);
    let p = Pruner::new(L1Magnitude)
        .amount(Amount::fraction(0.5).unwrap())
        .structure(Structure::channels(0, Norm::L1));
    let m1 = p.prune(&w).unwrap();
    let m2 = p.prune_again(&w, &m1).unwrap();
    let rows_kept = |m: &Mask| {
        m.keep()
            .outer_iter()
            .filter(|r| r.iter().any(|&k| k))
            .count()
    };
    // 10 - round(5) = 5 rows, then 5 - round(2.5) = 5 - 2 = 3 rows (half to even).
    assert_eq!((rows_kept(&m1), rows_kept(&m2)), (5, 3));
}

#[test]
fn target_sparsity_counts_what_is_already_pruned() {
    let w = noise(10, 10, 4);
    let first = Pruner::new(L1Magnitude)
        .amount(Amount::fraction(0.3).unwrap())
        .prune(&w)
        .unwrap();
    let to80 = Pruner::new(L1Magnitude).amount(Amount::target_sparsity(0.8).unwrap());
    let m = to80.prune_again(&w, &first).unwrap();
    assert_eq!(m.num_pruned(), 80);
    assert_eq!(to80.prune_again(&w, &m).unwrap(), m); // already there: unchanged
}

#[test]
fn ties_prune_lower_flat_index_first() {
    let w = array![[1.0f32, -1.0, 1.0], [1.0, 2.0, -1.0]];
    let m = Pruner::new(L1Magnitude)
        .amount(Amount::count(3))
        .prune(&w)
        .unwrap();
    assert_eq!(m.to_u8(), array![[0u8, 0, 0], [1, 1, 1]].into_dyn());
    let rows = Pruner::new(L2Magnitude)
        .amount(Amount::count(1))
        .structure(Structure::channels(0, Norm::Inf))
        .prune(&array![[2.0f32, 0.0], [-2.0, 1.0]])
        .unwrap();
    assert_eq!(rows.to_u8(), array![[0u8, 0], [1, 1]].into_dyn());
}

#[test]
fn global_ranking_equals_sorted_concatenation() {
    let a = noise(7, 9, 5).into_dyn();
    let b = (noise(3, 11, 6) * 3.0).into_dyn();
    let masks = Pruner::new(L1Magnitude)
        .amount(Amount::fraction(0.45).unwrap())
        .prune_global(&[a.view(), b.view()], None)
        .unwrap();
    let all: Vec<f32> = a.iter().chain(b.iter()).map(|x| x.abs()).collect();
    let k = (0.45f64 * all.len() as f64).round_ties_even() as usize;
    let mut sorted = all.clone();
    sorted.sort_by(f32::total_cmp);
    let thr = sorted[k - 1];
    let ours: Vec<bool> = masks[0]
        .keep()
        .iter()
        .chain(masks[1].keep().iter())
        .copied()
        .collect();
    let want: Vec<bool> = all.iter().map(|&x| x > thr).collect();
    assert_eq!(ours, want);
}

#[test]
fn global_scope_rejects_structures_and_names_tensors_on_error() {
    let a = noise(4, 4, 7).into_dyn();
    let p = Pruner::new(L1Magnitude).structure(Structure::channels(0, Norm::L2));
    assert!(p.prune_global(&[a.view()], None).is_err());
    let mut bad = a.clone();
    bad[[1, 2]] = f32::NAN;
    let e = Pruner::new(L1Magnitude)
        .prune_named(
            &[("ok", a.view()), ("layer.3.weight", bad.view())],
            Scope::Local,
            false,
        )
        .unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("layer.3.weight") && s.contains("flat index 6"),
        "{s}"
    );
}

#[test]
fn parameter_errors() {
    assert!(Amount::fraction(1.01).is_err());
    assert!(Amount::fraction(f64::NAN).is_err());
    let w = noise(4, 5, 8);
    let e = Pruner::new(L1Magnitude)
        .amount(Amount::count(21))
        .prune(&w)
        .unwrap_err();
    assert!(matches!(
        e,
        PruneError::AmountTooLarge {
            requested: 21,
            available: 20,
            ..
        }
    ));
    let e = Pruner::new(L1Magnitude)
        .amount(Amount::count(5))
        .structure(Structure::channels(0, Norm::L2))
        .prune(&w);
    assert!(matches!(
        e,
        Err(PruneError::AmountTooLarge {
            unit: "channels",
            ..
        })
    ));
    let e = Pruner::new(L1Magnitude)
        .structure(Structure::channels(2, Norm::L2))
        .prune(&w)
        .unwrap_err();
    assert_eq!(
        e,
        PruneError::Core(CoreError::AxisOutOfRange { axis: 2, ndim: 2 })
    );
    let mut inf = w.clone();
    inf[[3, 1]] = f32::INFINITY;
    let e = Pruner::new(L1Magnitude).prune(&inf).unwrap_err();
    assert!(matches!(
        e,
        PruneError::Core(CoreError::NonFinite { index: 16, .. })
    ));
    assert!(
        Pruner::new(L1Magnitude)
            .prune(&Array2::<f32>::zeros((0, 3)))
            .is_err()
    );
}

struct Nan;
impl PruningCriterion for Nan {
    fn scores(
        &self,
        w: &ndarray::ArrayRef<f32, ndarray::IxDyn>,
    ) -> modelopt_prune::Result<ArrayD<f32>> {
        Ok(w.mapv(|_| f32::NAN))
    }
}

#[test]
fn custom_criterion_scores_are_checked() {
    let e = Pruner::new(Nan).prune(&noise(2, 2, 9)).unwrap_err();
    assert!(matches!(
        e,
        PruneError::Core(CoreError::NonFinite { index: 0, .. })
    ));
}

#[test]
fn taylor_wanda_random_criteria() {
    let w = array![[1.0f32, -2.0, 3.0], [0.5, 0.5, -0.5]];
    let g = array![[1.0f32, 0.1, 0.0], [4.0, -4.0, 2.0]];
    let m = Pruner::new(Taylor::new(&g).unwrap())
        .amount(Amount::count(2))
        .prune(&w)
        .unwrap();
    // |w*g| = [1, .2, 0, 2, 2, 1] -> prune 0 (idx 2) and 0.2 (idx 1)
    assert_eq!(m.to_u8(), array![[1u8, 0, 0], [1, 1, 1]].into_dyn());
    assert!(
        Taylor::new(&array![1.0f32])
            .unwrap()
            .scores(&w.view().into_dyn())
            .is_err()
    );

    let x1 = array![[1.0f32, 0.0, 2.0]];
    let x2 = array![[1.0f32, 0.0, 2.0], [1.0, 0.0, 0.0]];
    let mut acc = WandaAccumulator::new(3);
    acc.add_batch(&x1).unwrap();
    acc.add_batch(&x2).unwrap();
    let wanda = acc.finish().unwrap();
    let norms = [3f32.sqrt(), 0.0, 8f32.sqrt()];
    for (a, b) in wanda.norms().iter().zip(norms) {
        assert!((a - b).abs() < 1e-6);
    }
    let s = wanda.scores(&w.view().into_dyn()).unwrap();
    assert!((s[[0, 2]] - 3.0 * 8f32.sqrt()).abs() < 1e-5 && s[[1, 1]] == 0.0);
    assert!(
        Wanda::from_norms(array![1.0f32, 2.0])
            .unwrap()
            .scores(&w.view().into_dyn())
            .is_err()
    );

    let r = RandomScores::new(11);
    let m1 = Pruner::new(r)
        .amount(Amount::fraction(0.5).unwrap())
        .prune(&noise(8, 8, 1))
        .unwrap();
    let m2 = Pruner::new(r)
        .amount(Amount::fraction(0.5).unwrap())
        .prune(&noise(8, 8, 2))
        .unwrap();
    assert_eq!(m1, m2); // random scores ignore the values: same seed, same mask
    assert_eq!(m1.num_pruned(), 32);
}

#[test]
fn masked_parameter_keeps_zeros_through_updates() {
    let w = noise(6, 6, 10);
    let mut p = MaskedParameter::new(&w).unwrap();
    let schedule = Schedule::cubic(0.0, 0.75, 0, 1, 3).unwrap();
    let mut seen = Vec::new();
    for t in 0..5u64 {
        if schedule.is_pruning_step(t) {
            p.prune(&Pruner::new(L1Magnitude).amount(schedule.amount_at(t).unwrap()))
                .unwrap();
        }
        p.update(|w| w.mapv_inplace(|x| x + 0.01)).unwrap();
        let zeros = p.weight().iter().filter(|&&x| x == 0.0).count();
        assert_eq!(zeros, p.mask().num_pruned());
        seen.push(p.mask().num_pruned());
    }
    // Zhu & Gupta: s = 0.75 - 0.75 (1 - t/3)^3 -> 0, 0.5278, 0.7222, 0.75 of 36 weights.
    assert_eq!(seen, vec![0, 19, 26, 27, 27]);
    let baked = p.remove();
    assert_eq!(baked.iter().filter(|&&x| x == 0.0).count(), 27);
    let bad = MaskedParameter::new(&w)
        .unwrap()
        .update(|w| *w = ArrayD::zeros(vec![2]));
    assert!(bad.is_err());
}

#[test]
fn schedules_follow_their_formulas() {
    let lin = Schedule::linear(0.1, 0.5, 10, 5, 4).unwrap();
    assert_eq!(lin.sparsity_at(9), 0.1);
    assert!((lin.sparsity_at(20) - 0.3).abs() < 1e-12);
    assert_eq!(lin.sparsity_at(100), 0.5);
    let cub = Schedule::cubic(0.0, 0.9, 0, 100, 10).unwrap();
    let t = 300.0;
    let want = 0.9 + (0.0 - 0.9) * (1.0f64 - t / (10.0 * 100.0)).powi(3);
    assert!((cub.sparsity_at(300) - want).abs() < 1e-12);
    assert!(Schedule::linear(0.0, 1.5, 0, 1, 1).is_err());
    assert!(Schedule::cubic(0.0, 0.5, 0, 0, 1).is_err());
}

#[test]
fn l1_fast_path_still_names_non_finite_index() {
    for k in [0usize, 3] {
        let mut w = noise(4, 4, 12);
        w[[2, 3]] = f32::NAN;
        let e = Pruner::new(L1Magnitude)
            .amount(Amount::count(k))
            .prune(&w)
            .unwrap_err();
        assert!(
            matches!(e, PruneError::Core(CoreError::NonFinite { index: 11, .. })),
            "{e}"
        );
        w[[2, 3]] = f32::NEG_INFINITY;
        assert!(
            Pruner::new(L1Magnitude)
                .amount(Amount::count(k))
                .prune(&w)
                .is_err()
        );
    }
}

mod selection_vs_sorting {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Unstructured pruning with ties, wide magnitudes and a prior mask equals the sorting
        /// reference: kept units ordered by (|w|, flat index), the first k pruned.
        #[test]
        fn equals_sort_reference(
            vals in proptest::collection::vec((-4i32..4, -30i32..30, any::<bool>()), 1..300),
            frac in 0.0f64..1.0,
        ) {
            let w: Vec<f32> = vals.iter().map(|&(m, e, _)| m as f32 * 2f32.powi(e)).collect();
            let prior: Vec<bool> = vals.iter().map(|&(_, _, p)| p).collect();
            let n = w.len();
            let wa = ndarray::Array1::from(w.clone()).into_dyn();
            let pm = Mask::from_keep(ndarray::Array1::from(prior.clone()).into_dyn());
            let got = Pruner::new(L1Magnitude).amount(Amount::fraction(frac).unwrap()).prune_again(&wa, &pm).unwrap();
            let mut idx: Vec<usize> = (0..n).filter(|&i| prior[i]).collect();
            let k = (frac * idx.len() as f64).round_ties_even() as usize;
            idx.sort_by(|&a, &b| w[a].abs().total_cmp(&w[b].abs()).then(a.cmp(&b)));
            let mut want = prior.clone();
            idx[..k].iter().for_each(|&i| want[i] = false);
            prop_assert_eq!(got.keep().iter().copied().collect::<Vec<_>>(), want);
            // and the generic (materialised scores) path agrees
            let got2 = Pruner::new(L2Magnitude).amount(Amount::fraction(frac).unwrap()).prune_again(&wa, &pm).unwrap();
            let got_l1 = got.keep().iter().copied().collect::<Vec<_>>();
            let same_on_no_underflow = w.iter().all(|x| x.abs() > 1e-18 || *x == 0.0);
            if same_on_no_underflow {
                prop_assert_eq!(got2.keep().iter().copied().collect::<Vec<_>>(), got_l1);
            }
        }
    }

    /// |w| materialised, but not flagged as |w|: the pruner ranks the scores it returns.
    struct AbsScores;
    impl PruningCriterion for AbsScores {
        fn scores(
            &self,
            w: &ndarray::ArrayRef<f32, ndarray::IxDyn>,
        ) -> modelopt_prune::Result<ArrayD<f32>> {
            Ok(w.mapv(f32::abs))
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// N:M with L1 (ranked on the weights' |w| directly) gives the masks of ranking the
        /// materialised |w| scores, with ties, ±0, a prior mask, 2-D and 4-D, 2:4 / 1:4 / 4:8.
        #[test]
        fn nm_l1_equals_materialised_abs_scores(
            vals in proptest::collection::vec((-3i32..4, any::<bool>()), 1..6),
            nm in prop::sample::select(vec![(2usize, 4usize), (1, 4), (4, 8)]),
            four_d in any::<bool>(),
        ) {
            let (n, m) = nm;
            let shape: Vec<usize> = if four_d { vec![3, 2 * m, 2, 1] } else { vec![5, 3 * m] };
            let len: usize = shape.iter().product();
            let w = ArrayD::from_shape_fn(ndarray::IxDyn(&shape), |ix| {
                let i = ndarray::Dimension::slice(&ix).iter().fold(0usize, |a, &x| a * 7 + x);
                let (v, neg) = vals[i % vals.len()];
                let x = v as f32 * 0.5 + (i % 3) as f32;
                if neg { -x } else { x }
            });
            let prior = Mask::from_keep(ArrayD::from_shape_fn(ndarray::IxDyn(&shape), |ix| {
                ndarray::Dimension::slice(&ix).iter().sum::<usize>() % 5 != 0
            }));
            prop_assert_eq!(prior.keep().len(), len);
            let st = Structure::n_m(n, m).unwrap();
            let got = Pruner::new(L1Magnitude).structure(st).prune(&w).unwrap();
            let want = Pruner::new(AbsScores).structure(st).prune(&w).unwrap();
            prop_assert_eq!(got, want);
            let got = Pruner::new(L1Magnitude).structure(st).prune_again(&w, &prior).unwrap();
            let want = Pruner::new(AbsScores).structure(st).prune_again(&w, &prior).unwrap();
            prop_assert_eq!(got, want);
            let got = Pruner::new(L1Magnitude).structure(st).prune_composed(&w).unwrap();
            let want = Pruner::new(AbsScores).structure(st).prune_composed(&w).unwrap();
            prop_assert_eq!(got, want);
        }
    }
}
