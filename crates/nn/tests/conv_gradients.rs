//! Gradients of the convolutional layers through a `Sequential`, against central finite differences
//! in f64: every parameter element and every input element.

use modelopt_nn::{
    Activation, AvgPool2d, BatchNorm2d, Conv2d, Dense, Init, Layer, MaxPool2d, Parameters,
    Sequential,
};
use ndarray::{Array2, ArrayD};
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

/// A small network touching every layer kind with parameters or a non-trivial backward.
fn network(seed: u64) -> Sequential<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let conv1 = Conv2d::builder(2, 4, 3)
        .stride(2)
        .padding(1)
        .init(Init::XavierNormal)
        .build(&mut rng)
        .unwrap();
    let mut conv1 = conv1;
    conv1
        .bias_mut()
        .unwrap()
        .assign(&ndarray::array![0.1, -0.2, 0.05, 0.3]);
    let mut bn = BatchNorm2d::new(4).unwrap();
    bn.weight_mut()
        .assign(&ndarray::array![1.2, 0.8, -0.5, 1.0]);
    bn.bias_mut().assign(&ndarray::array![0.1, 0.0, -0.1, 0.2]);
    let grouped = Conv2d::builder(4, 4, 2)
        .groups(2)
        .dilation(2)
        .padding(1)
        .build(&mut rng)
        .unwrap();
    let depthwise = Conv2d::builder(4, 4, 3)
        .groups(4)
        .padding(1)
        .bias(false)
        .build(&mut rng)
        .unwrap();
    Sequential::builder(&[2, 9, 8])
        .push(Layer::Conv2d(conv1)) // -> 4x5x4
        .push(Layer::BatchNorm2d(bn))
        .push(Layer::Activation(Activation::Tanh))
        .push(Layer::MaxPool2d(MaxPool2d::new(3, 1, 1).unwrap())) // -> 4x5x4
        .push(Layer::Conv2d(grouped)) // -> 4x5x4
        .push(Layer::Activation(Activation::Gelu))
        .push(Layer::AvgPool2d(AvgPool2d::new(2, 1, 1).unwrap())) // -> 4x6x5
        .push(Layer::Conv2d(depthwise))
        .push(Layer::GlobalAvgPool)
        .push(Layer::Flatten)
        .push(Layer::Linear(
            Dense::new(4, 3, Init::XavierNormal, &mut rng).unwrap(),
        ))
        .build()
        .unwrap()
}

fn loss(net: &mut Sequential<f64>, x: &Array2<f64>, r: &Array2<f64>) -> f64 {
    // Training mode: batch norm normalises by the batch statistics (what backward differentiates).
    (net.forward(x).unwrap() * r).sum()
}

fn perturb(net: &mut Sequential<f64>, param: usize, elem: usize, delta: f64) {
    let mut i = 0;
    net.visit_parameters(&mut |_, mut w, _| {
        if i == param {
            let v = w.iter_mut().nth(elem).unwrap();
            *v += delta;
        }
        i += 1;
    });
}

#[test]
fn sequential_conv_gradients_match_finite_differences() {
    let net0 = network(1);
    let x = random(3, 2 * 9 * 8, 2);
    let r = random(3, 3, 3);
    let mut net = net0.clone();
    let out = net.forward(&x).unwrap();
    assert_eq!(out.dim(), (3, 3));
    net.backward(&r).unwrap();
    let mut grads: Vec<(String, ArrayD<f64>)> = Vec::new();
    net.visit_parameters(&mut |name, _, g| grads.push((name.to_string(), g.to_owned())));
    assert_eq!(grads.len(), 9);
    for (p, (name, g)) in grads.iter().enumerate() {
        for (e, &analytic) in g.iter().enumerate() {
            let (mut plus, mut minus) = (net0.clone(), net0.clone());
            perturb(&mut plus, p, e, EPS);
            perturb(&mut minus, p, e, -EPS);
            let numeric = (loss(&mut plus, &x, &r) - loss(&mut minus, &x, &r)) / (2.0 * EPS);
            assert_close(analytic, numeric, &format!("{name}[{e}]"));
        }
    }
}

#[test]
fn hint_gradient_on_a_hidden_map_matches_finite_differences() {
    // A parameterless first layer (backward stops at the first convolution) and a hint gradient
    // added on a hidden feature map.
    let mut rng = StdRng::seed_from_u64(5);
    let net0 = Sequential::builder(&[1, 6, 6])
        .push(Layer::AvgPool2d(AvgPool2d::new(2, 2, 1).unwrap())) // -> 1x4x4
        .push(Layer::Conv2d(
            Conv2d::builder(1, 2, 3).build(&mut rng).unwrap(),
        )) // -> 2x2x2
        .push(Layer::Flatten)
        .push(Layer::Linear(
            Dense::new(8, 2, Init::XavierNormal, &mut rng).unwrap(),
        ))
        .build()
        .unwrap();
    let x = random(2, 36, 6);
    let r = random(2, 2, 7);
    let hint = random(2, 8, 8)
        .into_shape_with_order((2, 2, 2, 2))
        .unwrap()
        .into_dyn();
    // loss = sum(out * r) + sum(hidden(1) * hint): the hint gradient enters at layer 1's output.
    let total = |net: &mut Sequential<f64>| {
        let out = net.forward(&x).unwrap();
        (out * &r).sum() + (net.hidden(1).unwrap() * &hint).sum()
    };
    let mut net = net0.clone();
    net.forward(&x).unwrap();
    net.backward_with_hidden(&r, Some((1, &hint))).unwrap();
    let mut grads = Vec::new();
    net.visit_parameters(&mut |_, _, g| grads.push(g.to_owned()));
    for (p, g) in grads.iter().enumerate() {
        for (e, &analytic) in g.iter().enumerate() {
            let (mut plus, mut minus) = (net0.clone(), net0.clone());
            perturb(&mut plus, p, e, EPS);
            perturb(&mut minus, p, e, -EPS);
            let numeric = (total(&mut plus) - total(&mut minus)) / (2.0 * EPS);
            assert_close(analytic, numeric, &format!("param {p}[{e}]"));
        }
    }
}
