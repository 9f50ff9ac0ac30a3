//! Every distillation loss's gradient against central finite differences, in f64.

use modelopt_distill::{CosineLoss, Distiller, HintLoss, KdLoss, LogitMse};
use modelopt_nn::Parameters;
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const EPS: f64 = 1e-6;

fn random(rows: usize, cols: usize, seed: u64, scale: f64) -> Array2<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_simple_fn((rows, cols), || (rng.random::<f64>() * 2.0 - 1.0) * scale)
}

fn check(d: &dyn Distiller<f64>, what: &str) {
    let s = random(5, 7, 1, 4.0);
    let t = random(5, 7, 2, 4.0);
    let labels = [0, 6, 3, 3, 1];
    let grad = d.loss(&s, &t, &labels).unwrap().grad;
    for i in 0..5 {
        for j in 0..7 {
            let (mut sp, mut sm) = (s.clone(), s.clone());
            sp[[i, j]] += EPS;
            sm[[i, j]] -= EPS;
            let fd = (d.loss(&sp, &t, &labels).unwrap().total
                - d.loss(&sm, &t, &labels).unwrap().total)
                / (2.0 * EPS);
            assert!(
                (grad[[i, j]] - fd).abs() <= 1e-7 * (1.0 + fd.abs()),
                "{what} [{i},{j}]: analytic {} vs finite difference {fd}",
                grad[[i, j]]
            );
        }
    }
}

#[test]
fn kd_gradient_matches_finite_differences() {
    for (t, a) in [(1.0, 0.0), (4.0, 0.1), (2.0, 0.5), (10.0, 1.0)] {
        check(&KdLoss::new(t, a).unwrap(), &format!("KD T={t} alpha={a}"));
    }
}

#[test]
fn logit_mse_gradient_matches_finite_differences() {
    check(&LogitMse, "logit MSE");
}

#[test]
fn cosine_gradient_matches_finite_differences() {
    check(&CosineLoss, "cosine");
}

#[test]
fn logit_mse_matches_torch_definition() {
    // torch.nn.functional.mse_loss(s, t) with the default reduction "mean".
    let s = ndarray::array![[1.0f64, 2.0], [3.0, -1.0]];
    let t = ndarray::array![[0.0f64, 2.0], [1.0, 1.0]];
    assert_eq!(
        LogitMse.loss(&s, &t, &[]).unwrap().total,
        (1.0 + 0.0 + 4.0 + 4.0) / 4.0
    );
}

#[test]
fn hint_gradients_match_finite_differences() {
    let hs = random(4, 3, 5, 1.0);
    let ht = random(4, 6, 6, 1.0);
    let mut hint = HintLoss::<f64>::new(3, 6, 9).unwrap();
    let (_, d_student) = hint.loss(&hs, &ht).unwrap();
    // Student feature.
    for i in 0..4 {
        for j in 0..3 {
            let (mut p, mut m) = (hs.clone(), hs.clone());
            p[[i, j]] += EPS;
            m[[i, j]] -= EPS;
            let fd = (hint.clone().loss(&p, &ht).unwrap().0
                - hint.clone().loss(&m, &ht).unwrap().0)
                / (2.0 * EPS);
            assert!(
                (d_student[[i, j]] - fd).abs() <= 1e-7 * (1.0 + fd.abs()),
                "d h_s [{i},{j}]"
            );
        }
    }
    // Regressor weight and bias, through the Parameters view an optimizer uses.
    let mut grads = Vec::new();
    hint.visit_parameters(&mut |name, _w, g| grads.push((name.to_string(), g.to_owned())));
    assert_eq!(grads[0].0, "hint.weight");
    for (index, (_, grad)) in grads.iter().enumerate() {
        for flat in 0..grad.len() {
            let perturbed = |delta: f64| {
                let mut h = hint.clone();
                let mut k = 0;
                h.visit_parameters(&mut |_, mut w, _| {
                    if k == index {
                        w.as_slice_mut().unwrap()[flat] += delta;
                    }
                    k += 1;
                });
                h.loss(&hs, &ht).unwrap().0
            };
            let fd = (perturbed(EPS) - perturbed(-EPS)) / (2.0 * EPS);
            let g = grad.as_slice().unwrap()[flat];
            assert!(
                (g - fd).abs() <= 1e-7 * (1.0 + fd.abs()),
                "regressor param {index}[{flat}]: {g} vs {fd}"
            );
        }
    }
}

#[test]
fn losses_reject_mismatched_outputs() {
    let s = Array2::<f32>::zeros((4, 10));
    let t = Array2::<f32>::zeros((4, 9));
    let kd = KdLoss::<f32>::new(2.0, 0.5).unwrap();
    assert!(matches!(
        kd.loss(&s, &t, &[0; 4]),
        Err(modelopt_distill::DistillError::ClassMismatch {
            student: 10,
            teacher: 9
        })
    ));
    let t = Array2::<f32>::zeros((3, 10));
    assert!(matches!(
        kd.loss(&s, &t, &[0; 4]),
        Err(modelopt_distill::DistillError::BatchMismatch { .. })
    ));
    let t = Array2::<f32>::zeros((4, 10));
    assert!(
        kd.loss(&s, &t, &[0, 1, 2, 10]).is_err(),
        "label out of range"
    );
    assert!(kd.loss(&s, &t, &[0, 1]).is_err(), "too few labels");
    assert!(LogitMse.loss(&s, &Array2::zeros((4, 3)), &[]).is_err());
    assert!(CosineLoss.loss(&s, &Array2::zeros((5, 10)), &[]).is_err());
    // NaN or Inf in either input is an error naming the position, for every loss.
    let mut nan = Array2::<f32>::zeros((4, 10));
    nan[[2, 3]] = f32::NAN;
    for d in [&kd as &dyn Distiller<f32>, &LogitMse, &CosineLoss] {
        assert!(matches!(
            d.loss(&nan, &t, &[0; 4]),
            Err(modelopt_distill::DistillError::Core(_))
        ));
        assert!(matches!(
            d.loss(&t, &nan, &[0; 4]),
            Err(modelopt_distill::DistillError::Core(_))
        ));
    }
    // Pure distillation needs no labels.
    assert!(
        KdLoss::<f32>::new(2.0, 0.0)
            .unwrap()
            .loss(&s, &t, &[])
            .is_ok()
    );
}
