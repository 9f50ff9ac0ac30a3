//! Physical shrinking of an MLP: the shrunk network computes what the masked original computes.

use std::collections::BTreeMap;

use modelopt_prune::shrink::{CouplingSpec, Shrinker};
use modelopt_prune::{Amount, PruneError};
use ndarray::{Array1, Array2, ArrayD, Axis, Ix1, Ix2};

fn noise(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array2::from_shape_fn((rows, cols), |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    })
}

fn mlp(t: &BTreeMap<String, ArrayD<f32>>, x: &Array2<f32>) -> Array2<f32> {
    let get2 = |n: &str| t[n].clone().into_dimensionality::<Ix2>().unwrap();
    let get1 = |n: &str| t[n].clone().into_dimensionality::<Ix1>().unwrap();
    let h = (x.dot(&get2("fc1.weight").t()) + &get1("fc1.bias")).mapv(|v| v.max(0.0));
    h.dot(&get2("fc2.weight").t()) + &get1("fc2.bias")
}

fn model() -> BTreeMap<String, ArrayD<f32>> {
    let mut t = BTreeMap::new();
    t.insert("fc1.weight".to_string(), noise(40, 12, 1).into_dyn());
    t.insert(
        "fc1.bias".to_string(),
        noise(1, 40, 2).row(0).to_owned().into_dyn(),
    );
    t.insert("fc2.weight".to_string(), noise(5, 40, 3).into_dyn());
    t.insert(
        "fc2.bias".to_string(),
        Array1::from_elem(5, 0.1f32).into_dyn(),
    );
    t
}

const SPEC: &str = "fc1.weight:0, fc1.bias:0, fc2.weight:1";

#[test]
fn shrunk_mlp_equals_masked_original() {
    let t = model();
    let spec: CouplingSpec = SPEC.parse().unwrap();
    let out = Shrinker::new(Amount::fraction(0.5).unwrap())
        .shrink(t.clone(), &spec)
        .unwrap();
    let kept = &out.kept[0];
    assert_eq!(kept.len(), 20);
    assert_eq!(out.tensors["fc1.weight"].shape(), &[20, 12]);
    assert_eq!(out.tensors["fc1.bias"].shape(), &[20]);
    assert_eq!(out.tensors["fc2.weight"].shape(), &[5, 20]);
    assert_eq!(out.tensors["fc2.bias"].shape(), &[5]);

    // The masked original: the removed hidden units zeroed in all three tensors.
    let mut masked = t.clone();
    for c in (0..40).filter(|c| !kept.contains(c)) {
        masked
            .get_mut("fc1.weight")
            .unwrap()
            .index_axis_mut(Axis(0), c)
            .fill(0.0);
        masked.get_mut("fc1.bias").unwrap()[[c]] = 0.0;
        masked
            .get_mut("fc2.weight")
            .unwrap()
            .index_axis_mut(Axis(1), c)
            .fill(0.0);
    }
    let x = noise(7, 12, 9);
    let y_small = mlp(&out.tensors, &x);
    let y_masked = mlp(&masked, &x);
    let max_diff = (&y_small - &y_masked)
        .iter()
        .fold(0f32, |m, d| m.max(d.abs()));
    assert!(max_diff < 1e-5, "shrunk vs masked differ by {max_diff}");
    // and shrinking did change the function (so the test can fail)
    assert!((mlp(&t, &x) - &y_masked).iter().any(|d| d.abs() > 1e-3));
}

#[test]
fn kept_channels_have_the_largest_group_norms() {
    let t = model();
    let out = Shrinker::new(Amount::count(10))
        .shrink(t.clone(), &SPEC.parse().unwrap())
        .unwrap();
    // Group L2 norm computed here independently, by hand.
    let w1 = &t["fc1.weight"];
    let b1 = &t["fc1.bias"];
    let w2 = &t["fc2.weight"];
    let norm = |c: usize| {
        let mut s = b1[[c]] as f64 * b1[[c]] as f64;
        s += w1
            .index_axis(Axis(0), c)
            .iter()
            .map(|&v| (v as f64).powi(2))
            .sum::<f64>();
        s += w2
            .index_axis(Axis(1), c)
            .iter()
            .map(|&v| (v as f64).powi(2))
            .sum::<f64>();
        s
    };
    let min_kept = out.kept[0]
        .iter()
        .map(|&c| norm(c))
        .fold(f64::INFINITY, f64::min);
    let max_removed = (0..40)
        .filter(|c| !out.kept[0].contains(c))
        .map(norm)
        .fold(0.0, f64::max);
    assert!(min_kept > max_removed);
}

#[test]
fn never_zero_channels_and_multiple_of_8() {
    let t = model();
    let spec: CouplingSpec = SPEC.parse().unwrap();
    let all = Shrinker::new(Amount::fraction(1.0).unwrap())
        .shrink(t.clone(), &spec)
        .unwrap();
    assert_eq!(all.kept[0].len(), 1);
    let m8 = Shrinker::new(Amount::count(13))
        .multiple_of(8)
        .unwrap()
        .shrink(t, &spec)
        .unwrap();
    assert_eq!(m8.kept[0].len(), 32); // 27 rounded up to 32
}

#[test]
fn coupling_errors_name_the_problem() {
    let t = model();
    let bad_count = Shrinker::new(Amount::count(1))
        .shrink(t.clone(), &"fc1.weight:0, fc2.weight:0".parse().unwrap());
    assert!(matches!(bad_count, Err(PruneError::Coupling(_))));
    let missing = Shrinker::new(Amount::count(1)).shrink(t.clone(), &"nope:0".parse().unwrap());
    assert!(matches!(missing, Err(PruneError::MissingTensor(n)) if n == "nope"));
    let axis = Shrinker::new(Amount::count(1)).shrink(t.clone(), &"fc1.bias:1".parse().unwrap());
    assert!(axis.unwrap_err().to_string().contains("axis 1"));
    assert!("fc1.weight".parse::<CouplingSpec>().is_err());
    assert!("".parse::<CouplingSpec>().is_err());
    let too_many = Shrinker::new(Amount::count(41)).shrink(t, &SPEC.parse().unwrap());
    assert!(matches!(too_many, Err(PruneError::AmountTooLarge { .. })));
}
