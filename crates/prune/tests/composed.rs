//! Exact zeros as already pruned (a checkpoint read back): the fast paths of `prune_composed`
//! and of `prune_named(.., true)` give the masks of the general prior-mask path.

use modelopt_prune::{
    Amount, L1Magnitude, L2Magnitude, Mask, Norm, Pruner, PruningCriterion, RandomScores, Scope,
    Structure,
};
use ndarray::{ArrayD, IxDyn};

/// Values with many exact zeros and many ties (a coarse grid).
fn weights(shape: &[usize], seed: u64) -> ArrayD<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    ArrayD::from_shape_fn(IxDyn(shape), |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 40) % 21) as f32 / 4.0 - 2.5 // 21 levels, 0.0 among them
    })
}

fn pruner(c: Box<dyn PruningCriterion>, a: Amount, st: Structure) -> Pruner {
    Pruner::boxed(c).amount(a).structure(st)
}

#[test]
fn composed_equals_prune_again_with_the_nonzero_mask() {
    let crits: [fn() -> Box<dyn PruningCriterion>; 3] = [
        || Box::new(L1Magnitude),
        || Box::new(L2Magnitude),
        || Box::new(RandomScores::new(7)),
    ];
    for seed in 1..6 {
        let w = weights(&[24, 16], seed);
        assert!(w.iter().any(|&x| x == 0.0));
        for st in [
            Structure::Unstructured,
            Structure::channels(0, Norm::L2),
            Structure::channels(1, Norm::L1),
            Structure::n_m(2, 4).unwrap(),
        ] {
            for a in [
                Amount::fraction(0.3).unwrap(),
                Amount::fraction(0.5).unwrap(),
                Amount::count(3),
                Amount::target_sparsity(0.8).unwrap(),
            ] {
                for c in crits {
                    let got = pruner(c(), a, st).prune_composed(&w).unwrap();
                    let want = pruner(c(), a, st)
                        .prune_again(&w, &Mask::from_nonzero(&w))
                        .unwrap();
                    assert_eq!(got, want, "seed {seed} {st:?} {a:?}");
                }
            }
        }
    }
}

#[test]
fn global_with_zeros_equals_global_with_priors() {
    let ts: Vec<ArrayD<f32>> = (0..4)
        .map(|i| weights(&[8 + i, 12], 40 + i as u64))
        .collect();
    let named: Vec<(&str, _)> = ts.iter().map(|t| ("t", t.view())).collect();
    let views: Vec<_> = ts.iter().map(|t| t.view()).collect();
    let priors: Vec<Mask> = ts.iter().map(|t| Mask::from_nonzero(t)).collect();
    for a in [Amount::fraction(0.5).unwrap(), Amount::count(17)] {
        for c in [true, false] {
            let p = || {
                let crit: Box<dyn PruningCriterion> = if c {
                    Box::new(L1Magnitude)
                } else {
                    Box::new(L2Magnitude)
                };
                Pruner::boxed(crit).amount(a)
            };
            let got = p().prune_named(&named, Scope::Global, true).unwrap();
            let want = p().prune_global(&views, Some(&priors)).unwrap();
            for ((_, g), w) in got.iter().zip(&want) {
                assert_eq!(g, w, "{a:?} l1={c}");
            }
        }
    }
}
