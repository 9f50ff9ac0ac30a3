//! Filter pruning and batch-norm folding change the network's structure, not what it computes where
//! it should not: pruning filters that contribute nothing leaves the outputs unchanged; folding batch
//! norm leaves the inference outputs unchanged (to f32 rounding).

use modelopt_nn::{
    Activation, BatchNorm2d, Conv2d, Dense, FilterCriterion, Init, Layer, MaxPool2d, PruneScope,
    Sequential, filter_scores, fold_batch_norm, prune_filters, prune_filters_by,
};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn net(seed: u64) -> Sequential<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut bn = BatchNorm2d::new(6).unwrap();
    bn.weight_mut()
        .assign(&ndarray::array![1.0, 0.5, 2.0, 0.1, 1.5, 0.7]);
    bn.bias_mut()
        .assign(&ndarray::array![0.1, -0.2, 0.0, 0.3, 0.2, -0.1]);
    bn.running_mean_mut()
        .assign(&ndarray::array![0.2, -0.1, 0.4, 0.0, 0.3, 0.1]);
    bn.running_var_mut()
        .assign(&ndarray::array![1.5, 0.5, 2.0, 0.8, 1.1, 0.9]);
    Sequential::builder(&[1, 10, 10])
        .push(Layer::Conv2d(
            Conv2d::builder(1, 6, 3).padding(1).build(&mut rng).unwrap(),
        ))
        .push(Layer::BatchNorm2d(bn))
        .push(Layer::Activation(Activation::Relu))
        .push(Layer::MaxPool2d(MaxPool2d::new(2, 2, 0).unwrap()))
        .push(Layer::Conv2d(
            Conv2d::builder(6, 5, 3).build(&mut rng).unwrap(),
        )) // -> 5x3x3
        .push(Layer::Activation(Activation::Relu))
        .push(Layer::Flatten)
        .push(Layer::Linear(
            Dense::new(45, 4, Init::HeNormal, &mut rng).unwrap(),
        ))
        .build()
        .unwrap()
}

fn input(seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_simple_fn((3, 100), || rng.random::<f32>())
}

fn max_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn pruning_dead_filters_keeps_the_outputs_and_shrinks_every_dependent_tensor() {
    let mut full = net(1);
    full.set_training(false);
    // Make filters 1 and 4 of the first convolution dead: gamma 0 and beta 0 in the batch norm, so
    // they output exactly 0 after the ReLU and feed nothing downstream.
    if let Layer::BatchNorm2d(bn) = &mut full.layers_mut()[1] {
        for f in [1, 4] {
            bn.weight_mut()[f] = 0.0;
            bn.bias_mut()[f] = 0.0;
        }
    }
    // And filter 2 of the second convolution: zero weights and a negative bias (ReLU -> 0).
    if let Layer::Conv2d(c) = &mut full.layers_mut()[4] {
        c.weight_mut().index_axis_mut(ndarray::Axis(0), 2).fill(0.0);
        c.bias_mut().unwrap()[2] = -1.0;
    }
    let x = input(2);
    let want = full.predict(&x).unwrap();
    assert_eq!(
        filter_scores(&full, 0, FilterCriterion::BnScale).unwrap()[1],
        0.0
    );
    let small = prune_filters(&full, 0, &[0, 2, 3, 5]).unwrap();
    let small = prune_filters(&small, 4, &[0, 1, 3, 4]).unwrap();
    assert_eq!(small.shapes()[1], vec![4, 10, 10]);
    assert_eq!(small.shapes()[7], vec![36]);
    assert_eq!(
        small.parameter_count(),
        (4 * 9 + 4) + 2 * 4 + (4 * 4 * 9 + 4) + (36 * 4 + 4)
    );
    assert!(max_diff(&small.predict(&x).unwrap(), &want) < 1e-6);
    assert!(small.macs() < full.macs());
    // Bad requests are errors: not a convolution, empty or out-of-range keep, the logits' layer.
    assert!(prune_filters(&full, 1, &[0]).is_err());
    assert!(prune_filters(&full, 0, &[]).is_err());
    assert!(prune_filters(&full, 0, &[6]).is_err());
}

#[test]
fn ratio_pruning_per_layer_and_global() {
    let full = net(3);
    // round(0.5 * 6) = 3 and round(0.5 * 5) = 3 filters removed.
    for criterion in [FilterCriterion::L1, FilterCriterion::L2] {
        let half = prune_filters_by(&full, criterion, 0.5, PruneScope::PerLayer).unwrap();
        assert_eq!((half.shapes()[1][0], half.shapes()[5][0]), (3, 2));
    }
    // BN-scale prunes only convolutions followed by a batch norm; it keeps the largest |gamma|.
    let slim =
        prune_filters_by(&full, FilterCriterion::BnScale, 0.5, PruneScope::PerLayer).unwrap();
    assert_eq!((slim.shapes()[1][0], slim.shapes()[5][0]), (3, 5));
    match &slim.layers()[1] {
        Layer::BatchNorm2d(bn) => assert_eq!(bn.weight().to_vec(), [1.0, 2.0, 1.5]),
        other => panic!("{}", other.kind()),
    }
    let global = prune_filters_by(&full, FilterCriterion::L2, 0.5, PruneScope::Global).unwrap();
    let kept = global.shapes()[1][0] + global.shapes()[5][0];
    assert_eq!(kept, 11 - 6); // round(0.5 * 11) = 6 filters removed in all
    assert!(prune_filters_by(&full, FilterCriterion::L1, 1.0, PruneScope::Global).is_err());
    // BN-scale needs a batch norm after the convolution: the second one has none.
    assert!(filter_scores(&full, 4, FilterCriterion::BnScale).is_err());
}

#[test]
fn folding_batch_norm_keeps_inference_outputs() {
    let mut full = net(4);
    full.set_training(false);
    let folded = fold_batch_norm(&full).unwrap();
    assert_eq!(folded.layers().len(), full.layers().len() - 1);
    assert_eq!(folded.names()[1], "2"); // the other layers keep their names
    let x = input(5);
    assert!(max_diff(&folded.predict(&x).unwrap(), &full.predict(&x).unwrap()) < 1e-5);
}
