//! Masks equal torch.nn.utils.prune's (torch 2.15) on every case of the reference set
//! (tests/data, copied from ../shared/reference/prune; see manifest.json there).

use modelopt_prune::{Amount, L1Magnitude, Mask, Norm, Pruner, Structure};
use ndarray::ArrayD;
use ndarray_npy::read_npy;

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}.npy", env!("CARGO_MANIFEST_DIR"))
}

fn input(name: &str) -> ArrayD<f32> {
    read_npy(data(name)).unwrap()
}

fn torch_mask(name: &str) -> ArrayD<u8> {
    read_npy(data(name)).unwrap()
}

fn fraction(a: f64) -> Amount {
    Amount::fraction(a).unwrap()
}

fn assert_same(ours: &Mask, theirs: &ArrayD<u8>, case: &str) {
    assert_eq!(ours.shape(), theirs.shape(), "{case}: shape");
    let diff = ours
        .to_u8()
        .iter()
        .zip(theirs)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(diff, 0, "{case}: {diff} mask entries differ from torch");
}

#[test]
fn parity_l1_unstructured_fraction_and_repeat() {
    let w = input("l1_unstructured_0.3_input");
    let first = Pruner::new(L1Magnitude)
        .amount(fraction(0.3))
        .prune(&w)
        .unwrap();
    assert_same(&first, &torch_mask("l1_unstructured_0.3_mask_0"), "0.3");
    let second = Pruner::new(L1Magnitude)
        .amount(fraction(0.5))
        .prune_again(&w, &first)
        .unwrap();
    assert_same(
        &second,
        &torch_mask("l1_unstructured_0.3_mask_1"),
        "0.3 then 0.5",
    );
}

#[test]
fn parity_l1_unstructured_count() {
    let w = input("l1_unstructured_count_100_input");
    let m = Pruner::new(L1Magnitude)
        .amount(Amount::count(100))
        .prune(&w)
        .unwrap();
    assert_same(
        &m,
        &torch_mask("l1_unstructured_count_100_mask_0"),
        "count 100",
    );
}

#[test]
fn parity_l1_unstructured_round_half_even() {
    let w = input("l1_unstructured_round_half_even_input");
    let m = Pruner::new(L1Magnitude)
        .amount(fraction(0.5))
        .prune(&w)
        .unwrap();
    assert_eq!(m.num_pruned(), 2, "round(2.5) = 2");
    assert_same(
        &m,
        &torch_mask("l1_unstructured_round_half_even_mask_0"),
        "half even",
    );
}

fn ln(amount: f64, axis: usize, norm: Norm) -> Pruner {
    Pruner::new(L1Magnitude)
        .amount(fraction(amount))
        .structure(Structure::channels(axis, norm))
}

#[test]
fn parity_ln_structured_l2_dim0_and_repeat() {
    let w = input("ln_structured_l2_dim0_input");
    let first = ln(0.25, 0, Norm::L2).prune(&w).unwrap();
    assert_same(
        &first,
        &torch_mask("ln_structured_l2_dim0_mask_0"),
        "l2 dim0",
    );
    let second = ln(0.5, 0, Norm::L2).prune_again(&w, &first).unwrap();
    assert_same(
        &second,
        &torch_mask("ln_structured_l2_dim0_mask_1"),
        "l2 dim0 repeat",
    );
}

#[test]
fn parity_ln_structured_l1_dim1() {
    let w = input("ln_structured_l1_dim1_input");
    let m = ln(0.4, 1, Norm::L1).prune(&w).unwrap();
    assert_same(&m, &torch_mask("ln_structured_l1_dim1_mask_0"), "l1 dim1");
}

#[test]
fn parity_ln_structured_linf_dim0() {
    let w = input("ln_structured_linf_dim0_input");
    let m = ln(0.3, 0, Norm::Inf).prune(&w).unwrap();
    assert_same(
        &m,
        &torch_mask("ln_structured_linf_dim0_mask_0"),
        "linf dim0",
    );
}

#[test]
fn parity_ln_structured_l2_conv_dim0() {
    let w = input("ln_structured_l2_conv_dim0_input");
    let m = ln(0.5, 0, Norm::L2).prune(&w).unwrap();
    assert_same(
        &m,
        &torch_mask("ln_structured_l2_conv_dim0_mask_0"),
        "conv dim0",
    );
}

#[test]
fn parity_global_l1() {
    let ws: Vec<ArrayD<f32>> = (0..3)
        .map(|i| input(&format!("global_l1_0.6_input_{i}")))
        .collect();
    let views: Vec<_> = ws.iter().map(|w| w.view()).collect();
    let masks = Pruner::new(L1Magnitude)
        .amount(fraction(0.6))
        .prune_global(&views, None)
        .unwrap();
    for (i, m) in masks.iter().enumerate() {
        assert_same(
            m,
            &torch_mask(&format!("global_l1_0.6_mask_{i}")),
            &format!("global {i}"),
        );
    }
}
