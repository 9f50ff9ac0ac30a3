//! AWQ's scale search: it lowers the calibration output error where activations have
//! outlier channels, its error is the layer objective, and bad input is an error.

use modelopt_quantize::awq::Awq;
use modelopt_quantize::gptq::HessianAccumulator;
use modelopt_quantize::{QuantError, QuantScheme, Result};
use ndarray::{Array1, Array2};
use rand::{RngExt, SeedableRng, rngs::StdRng};

fn gaussian(rng: &mut StdRng) -> f32 {
    let (u, v): (f32, f32) = (rng.random::<f32>().max(1e-12), rng.random());
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

/// Two weights reading one input whose channels 0, 9, 50 are 30x larger than the rest.
fn problem() -> (Array2<f32>, Array2<f32>, Array2<f32>) {
    let mut rng = StdRng::seed_from_u64(3);
    let w1 = Array2::from_shape_fn((48, 128), |_| gaussian(&mut rng));
    let w2 = Array2::from_shape_fn((16, 128), |_| gaussian(&mut rng));
    let x = Array2::from_shape_fn((400, 128), |(_, j)| {
        let g = gaussian(&mut rng);
        if [0, 9, 50].contains(&j) { 30.0 * g } else { g }
    });
    (w1, w2, x)
}

fn fq(w: &Array2<f32>) -> Result<Array2<f32>> {
    Ok(QuantScheme::new(3)
        .affine()
        .per_group(1, 64)
        .quantize(w)?
        .dequantize())
}

#[test]
fn scales_lower_the_output_error_which_is_the_layer_objective() {
    let (w1, w2, x) = problem();
    let mut acc = HessianAccumulator::new(128);
    acc.add_batch(&x).unwrap();
    let h = acc.finish().unwrap();
    let found = Awq::new()
        .check()
        .unwrap()
        .search(&[&w1, &w2], &h, &acc.mean_abs().unwrap(), fq)
        .unwrap();
    assert!(found.alpha > 0.0);
    assert!(
        found.error < 0.8 * found.error_unscaled,
        "{} vs {}",
        found.error,
        found.error_unscaled
    );
    // The reported error is (2/n) ||ΔXᵀ||² summed over both weights, Δ = W - Q(W s)/s.
    let s = found.scales.view().insert_axis(ndarray::Axis(0));
    let mut direct = 0.0;
    for w in [&w1, &w2] {
        let q = fq(&(w * &s)).unwrap() / s;
        let out = (w - &q).mapv(f64::from).dot(&x.mapv(f64::from).t());
        direct += out.iter().map(|v| v * v).sum::<f64>() * 2.0 / 400.0;
    }
    assert!(
        (found.error - direct).abs() < 1e-4 * direct,
        "{} vs {direct}",
        found.error
    );
    // Normalised as the reference: sqrt(max * min) = 1.
    let (lo, hi) = found
        .scales
        .iter()
        .fold((f32::MAX, 0f32), |(l, h), &v| (l.min(v), h.max(v)));
    assert!(((lo * hi).sqrt() - 1.0).abs() < 1e-5);
}

#[test]
fn a_grid_of_one_is_plain_quantization() {
    let (w1, _, x) = problem();
    let mut acc = HessianAccumulator::new(128);
    acc.add_batch(&x).unwrap();
    let found = Awq::new()
        .grid(1)
        .check()
        .unwrap()
        .search(&[&w1], &acc.finish().unwrap(), &acc.mean_abs().unwrap(), fq)
        .unwrap();
    assert_eq!(found.scales, Array1::<f32>::ones(128));
    assert_eq!(found.error, found.error_unscaled);
}

#[test]
fn bad_input_is_an_error() {
    let (mut w1, w2, x) = problem();
    let mut acc = HessianAccumulator::new(128);
    acc.add_batch(&x).unwrap();
    let (h, m) = (acc.finish().unwrap(), acc.mean_abs().unwrap());
    let awq = Awq::new().check().unwrap();
    assert!(awq.search(&[], &h, &m, fq).is_err());
    let narrow = Array2::<f32>::zeros((4, 64));
    assert!(awq.search(&[&w2, &narrow], &h, &m, fq).is_err());
    assert!(
        awq.search(&[&w2], &h, &m.slice(ndarray::s![..64]), fq)
            .is_err()
    );
    let failing = |_: &Array2<f32>| -> Result<Array2<f32>> {
        Err(modelopt_tensor_core::CoreError::Empty { what: "test" }.into())
    };
    assert!(matches!(
        awq.search(&[&w2], &h, &m, failing),
        Err(QuantError::Core(_))
    ));
    let wrong_shape = |_: &Array2<f32>| -> Result<Array2<f32>> { Ok(Array2::zeros((1, 1))) };
    assert!(awq.search(&[&w2], &h, &m, wrong_shape).is_err());
    w1[[0, 0]] = f32::NAN;
    assert!(awq.search(&[&w1], &h, &m, fq).is_err());
}
