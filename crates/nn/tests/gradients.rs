//! Every layer's gradient against central finite differences, in f64.

use modelopt_nn::{Activation, Dense, Init, Mlp, Parameters, log_softmax, softmax_cross_entropy};
use ndarray::{Array2, ArrayD, array};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const EPS: f64 = 1e-6;

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_simple_fn((rows, cols), || rng.random::<f64>() * 2.0 - 1.0)
}

fn assert_close(analytic: f64, numeric: f64, what: &str) {
    let tol = 1e-6 * (1.0 + numeric.abs());
    assert!(
        (analytic - numeric).abs() <= tol,
        "{what}: analytic {analytic} vs finite difference {numeric}"
    );
}

#[test]
fn dense_gradients_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut layer = Dense::<f64>::new(5, 3, Init::XavierNormal, &mut rng).unwrap();
    layer.bias_mut().assign(&array![0.1, -0.2, 0.3]);
    let x = random(4, 5, 2);
    let r = random(4, 3, 3); // loss = sum(y * r), so dL/dy = r
    let loss = |l: &Dense<f64>, x: &Array2<f64>| (l.forward(x).unwrap() * &r).sum();
    let dx = layer.backward(&x, &r, true).unwrap().unwrap();
    let (gw, gb) = (layer.weight_grad().clone(), layer.bias_grad().clone());
    for i in 0..3 {
        for j in 0..5 {
            let mut p = layer.clone();
            p.weight_mut()[[i, j]] += EPS;
            let mut m = layer.clone();
            m.weight_mut()[[i, j]] -= EPS;
            assert_close(
                gw[[i, j]],
                (loss(&p, &x) - loss(&m, &x)) / (2.0 * EPS),
                "dW",
            );
        }
        let mut p = layer.clone();
        p.bias_mut()[i] += EPS;
        let mut m = layer.clone();
        m.bias_mut()[i] -= EPS;
        assert_close(gb[i], (loss(&p, &x) - loss(&m, &x)) / (2.0 * EPS), "db");
    }
    for b in 0..4 {
        for j in 0..5 {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[[b, j]] += EPS;
            xm[[b, j]] -= EPS;
            assert_close(
                dx[[b, j]],
                (loss(&layer, &xp) - loss(&layer, &xm)) / (2.0 * EPS),
                "dx",
            );
        }
    }
}

#[test]
fn activation_gradients_match_finite_differences() {
    // Keep ReLU inputs away from the kink at 0, where the derivative is undefined.
    let z = random(3, 4, 5).mapv(|v| if v.abs() < 0.05 { v + 0.1 } else { v * 3.0 });
    let r = random(3, 4, 6);
    for act in [
        Activation::Relu,
        Activation::Gelu,
        Activation::Tanh,
        Activation::Identity,
    ] {
        let y = act.forward(&z);
        let mut g = r.clone();
        act.backward(&z, &y, &mut g);
        for i in 0..3 {
            for j in 0..4 {
                let (mut zp, mut zm) = (z.clone(), z.clone());
                zp[[i, j]] += EPS;
                zm[[i, j]] -= EPS;
                let fd =
                    ((act.forward(&zp) * &r).sum() - (act.forward(&zm) * &r).sum()) / (2.0 * EPS);
                assert_close(g[[i, j]], fd, &format!("{act:?}"));
            }
        }
    }
}

#[test]
fn gelu_is_the_tanh_approximation() {
    // torch.nn.functional.gelu(torch.tensor([-2., -0.5, 1., 3.], dtype=torch.float64), approximate="tanh")
    let y = Activation::Gelu.forward(&array![[-2.0f64, -0.5, 1.0, 3.0]]);
    let torch = [
        -0.04540230591222494,
        -0.15428599017485606,
        0.8411919906082768,
        2.996362607918227,
    ];
    for (a, b) in y.iter().zip(torch) {
        assert!((a - b).abs() < 1e-14, "{a} vs {b}");
    }
}

#[test]
fn softmax_cross_entropy_gradient_matches_finite_differences() {
    let z = random(4, 6, 7) * 5.0;
    let labels = [0, 5, 2, 2];
    let (_, grad) = softmax_cross_entropy(&z, &labels).unwrap();
    for i in 0..4 {
        for j in 0..6 {
            let (mut zp, mut zm) = (z.clone(), z.clone());
            zp[[i, j]] += EPS;
            zm[[i, j]] -= EPS;
            let fd = (softmax_cross_entropy(&zp, &labels).unwrap().0
                - softmax_cross_entropy(&zm, &labels).unwrap().0)
                / (2.0 * EPS);
            assert_close(grad[[i, j]], fd, "dCE/dz");
        }
    }
}

#[test]
fn cross_entropy_is_stable_for_huge_logits() {
    let z = array![[1000.0f64, -1000.0, 0.0], [-5e3, 5e3, 5e3]];
    let (loss, grad) = softmax_cross_entropy(&z, &[1, 0]).unwrap();
    // row 0: lse = 1000, loss 2000; row 1: lse = 5e3 + ln 2, loss 1e4 + ln 2.
    assert!((loss - (2000.0 + 1e4 + 2f64.ln()) / 2.0).abs() < 1e-9);
    assert!(grad.iter().all(|v| v.is_finite()));
    assert!(log_softmax(&z).iter().all(|v| v.is_finite()));
}

fn flat_grads(mlp: &mut Mlp<f64>) -> Vec<(String, ArrayD<f64>)> {
    let mut out = Vec::new();
    mlp.visit_parameters(&mut |name, _w, g| out.push((name.to_string(), g.to_owned())));
    out
}

/// Loss of a fresh clone (same dropout stream), with an optional hint on hidden feature 1.
fn mlp_loss(mlp: &Mlp<f64>, x: &Array2<f64>, labels: &[usize], hint: Option<&Array2<f64>>) -> f64 {
    let mut m = mlp.clone();
    let logits = m.forward(x).unwrap();
    let mut loss = softmax_cross_entropy(&logits, labels).unwrap().0;
    if let Some(h) = hint {
        loss += (m.hidden(1).unwrap() * h).sum();
    }
    loss
}

fn check_mlp(activation: Activation, dropout: f64, with_hint: bool) {
    let mlp = Mlp::<f64>::builder(&[5, 7, 6, 3])
        .activation(activation)
        .dropout(dropout)
        .seed(11)
        .build()
        .unwrap();
    let x = random(4, 5, 12) * 2.0;
    let labels = [2, 0, 1, 2];
    let hint = random(4, 7, 13);
    let hint = with_hint.then_some(&hint);
    let mut m = mlp.clone();
    let logits = m.forward(&x).unwrap();
    let (_, d_out) = softmax_cross_entropy(&logits, &labels).unwrap();
    m.backward_with_hidden(&d_out, hint.map(|h| (1, &**h)))
        .unwrap();
    for (name, grad) in flat_grads(&mut m) {
        for (flat, &g) in grad.iter().enumerate() {
            let mut p = mlp.clone();
            let mut q = mlp.clone();
            p.parameter_mut(&name).unwrap().as_slice_mut().unwrap()[flat] += EPS;
            q.parameter_mut(&name).unwrap().as_slice_mut().unwrap()[flat] -= EPS;
            let fd =
                (mlp_loss(&p, &x, &labels, hint) - mlp_loss(&q, &x, &labels, hint)) / (2.0 * EPS);
            assert_close(
                g,
                fd,
                &format!("{activation:?} dropout {dropout} {name}[{flat}]"),
            );
        }
    }
}

#[test]
fn mlp_relu_gradients_match_finite_differences() {
    check_mlp(Activation::Relu, 0.0, false);
}

#[test]
fn mlp_gelu_gradients_match_finite_differences() {
    check_mlp(Activation::Gelu, 0.0, false);
}

#[test]
fn mlp_tanh_dropout_gradients_match_finite_differences() {
    check_mlp(Activation::Tanh, 0.3, false);
}

#[test]
fn mlp_gelu_dropout_gradients_match_finite_differences() {
    check_mlp(Activation::Gelu, 0.25, false);
}

#[test]
fn mlp_hidden_feature_gradient_matches_finite_differences() {
    check_mlp(Activation::Tanh, 0.0, true);
}

/// The f32 products run on a different GEMM (`gemm-f32`) than the f64 ones checked above against
/// finite differences (`ndarray`'s); an f32 network must give the f64 network's outputs and
/// gradients to f32 rounding, on shapes wide enough for the vector kernels and their edges.
#[test]
fn f32_mlp_matches_the_checked_f64_mlp() {
    let sizes = [37, 70, 19, 5];
    let mut net64 = Mlp::<f64>::builder(&sizes).seed(4).build().unwrap();
    let params: std::collections::BTreeMap<String, ArrayD<f32>> = net64
        .named_parameters()
        .into_iter()
        .map(|(k, v)| {
            // Non-zero biases: the forward product accumulates onto them.
            let v = if k.ends_with("bias") {
                ArrayD::from_shape_fn(v.raw_dim(), |i| 0.1 * (i[0] % 7) as f64 - 0.3)
            } else {
                v
            };
            (k, v.mapv(|x| x as f32))
        })
        .collect();
    let mut net32 = Mlp::<f32>::builder(&sizes).build().unwrap();
    net32.load_named_parameters(&params).unwrap();
    // Round the f64 parameters and input to f32 too, so only the arithmetic differs.
    let rounded = params
        .iter()
        .map(|(k, v)| (k.clone(), v.mapv(f64::from)))
        .collect();
    net64.load_named_parameters(&rounded).unwrap();
    let x64 = random(33, 37, 5).mapv(|v| v as f32 as f64);
    let x32 = x64.mapv(|v| v as f32);
    let labels: Vec<usize> = (0..33).map(|i| i % 5).collect();

    let out64 = net64.forward(&x64).unwrap();
    let out32 = net32.forward(&x32).unwrap();
    for (a, b) in out32.iter().zip(&out64) {
        assert!(
            (*a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs()),
            "output {a} vs {b}"
        );
    }
    let (_, g64) = softmax_cross_entropy(&out64, &labels).unwrap();
    net64.backward(&g64).unwrap();
    net32.backward(&g64.mapv(|v| v as f32)).unwrap();
    let grads64 = flat_grads(&mut net64);
    let mut grads32 = Vec::new();
    net32.visit_parameters(&mut |name, _, g| grads32.push((name.to_string(), g.to_owned())));
    assert_eq!(grads32.len(), grads64.len());
    for ((name, g32), (_, g64)) in grads32.iter().zip(&grads64) {
        let scale = g64.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (a, b) in g32.iter().zip(g64) {
            assert!(
                (*a as f64 - b).abs() <= 1e-4 * scale.max(1e-3),
                "{name}: {a} vs {b}"
            );
        }
    }
}
