//! Optimizers, inference mode, parameters by name, and errors.

use std::collections::BTreeMap;

use modelopt_nn::{
    Adam, Mlp, NnError, Optimizer, ParameterVisitor, Parameters, Sgd, softmax_cross_entropy,
};
use ndarray::{ArrayD, IxDyn, array};

/// One scalar parameter with a settable gradient.
struct Scalar {
    w: ArrayD<f64>,
    g: ArrayD<f64>,
}

impl Parameters<f64> for Scalar {
    fn visit_parameters(&mut self, f: &mut ParameterVisitor<'_, f64>) {
        f("w", self.w.view_mut(), self.g.view());
    }
}

fn scalar(w: f64, g: f64) -> Scalar {
    Scalar {
        w: ArrayD::from_elem(IxDyn(&[1]), w),
        g: ArrayD::from_elem(IxDyn(&[1]), g),
    }
}

#[test]
fn sgd_momentum_weight_decay_follow_torch_formula() {
    // torch.optim.SGD(lr=0.1, momentum=0.9, weight_decay=0.01), grad fixed at 2 for two steps, w0 = 1:
    // step 1: g' = 2 + 0.01*1 = 2.01, buf = 2.01, w = 1 - 0.201 = 0.799
    // step 2: g' = 2 + 0.00799 = 2.00799, buf = 0.9*2.01 + 2.00799 = 3.81699, w = 0.799 - 0.381699 = 0.417301
    let mut p = scalar(1.0, 2.0);
    let mut opt = Sgd::builder(0.1)
        .momentum(0.9)
        .weight_decay(0.01)
        .build()
        .unwrap();
    opt.step(&mut p).unwrap();
    assert!((p.w[[0]] - 0.799).abs() < 1e-12);
    opt.step(&mut p).unwrap();
    assert!((p.w[[0]] - 0.417301).abs() < 1e-12);
}

#[test]
fn adam_first_steps_follow_torch_formula() {
    // Pinned with torch 2.15: w = Parameter([1.0], float64); Adam([w], lr=0.01); grads -3 then 1.
    let mut p = scalar(1.0, -3.0);
    let mut opt = Adam::builder(0.01).build().unwrap();
    opt.step(&mut p).unwrap();
    assert!(
        (p.w[[0]] - 1.0099999999666667).abs() < 1e-15,
        "{}",
        p.w[[0]]
    );
    p.g[[0]] = 1.0;
    opt.step(&mut p).unwrap();
    assert!((p.w[[0]] - 1.014002185668309).abs() < 1e-15, "{}", p.w[[0]]);
}

#[test]
fn optimizer_parameters_are_validated() {
    assert!(Sgd::<f32>::builder(-1.0).build().is_err());
    assert!(Sgd::<f32>::builder(f64::NAN).build().is_err());
    assert!(Sgd::<f32>::builder(0.1).weight_decay(-1.0).build().is_err());
    assert!(Adam::<f32>::builder(0.1).eps(0.0).build().is_err());
    assert!(Adam::<f32>::builder(0.1).betas(0.9, 1.0).build().is_err());
}

#[test]
fn inference_mode_disables_dropout_and_caching() {
    let mut mlp = Mlp::<f32>::builder(&[4, 32, 3])
        .dropout(0.5)
        .seed(5)
        .build()
        .unwrap();
    let x = array![[0.1f32, 0.2, -0.3, 0.4], [1.0, -1.0, 0.5, 0.0]];
    let a = mlp.forward(&x).unwrap();
    let b = mlp.forward(&x).unwrap();
    assert_ne!(a, b, "dropout masks differ between training steps");
    mlp.set_training(false);
    let c = mlp.forward(&x).unwrap();
    assert_eq!(c, mlp.predict(&x).unwrap());
    assert!(matches!(
        mlp.backward(&c),
        Err(NnError::NoForwardCache { .. })
    ));
}

#[test]
fn same_seed_same_network_and_training() {
    let train = |seed| {
        let mut mlp = Mlp::<f32>::builder(&[3, 8, 2])
            .dropout(0.2)
            .seed(seed)
            .build()
            .unwrap();
        let mut opt = Sgd::builder(0.1).momentum(0.9).build().unwrap();
        let x = array![[1.0f32, 0.0, -1.0], [0.5, 0.5, 0.5]];
        for _ in 0..5 {
            let (_, g) = softmax_cross_entropy(&mlp.forward(&x).unwrap(), &[0, 1]).unwrap();
            mlp.backward(&g).unwrap();
            opt.step(&mut mlp).unwrap();
        }
        mlp.named_parameters()
    };
    assert_eq!(train(3), train(3));
    assert_ne!(train(3), train(4));
}

#[test]
fn named_parameters_round_trip_and_errors() {
    let a = Mlp::<f32>::builder(&[4, 5, 3]).seed(1).build().unwrap();
    let mut b = Mlp::<f32>::builder(&[4, 5, 3]).seed(2).build().unwrap();
    let params = a.named_parameters();
    let names: Vec<_> = params.keys().cloned().collect();
    assert_eq!(
        names,
        [
            "layers.0.bias",
            "layers.0.weight",
            "layers.1.bias",
            "layers.1.weight"
        ]
    );
    assert_eq!(params["layers.0.weight"].shape(), [5, 4]);
    b.load_named_parameters(&params).unwrap();
    let x = array![[0.3f32, -0.1, 0.2, 0.9]];
    assert_eq!(a.predict(&x).unwrap(), b.predict(&x).unwrap());

    let mut missing: BTreeMap<_, _> = params.clone();
    missing.remove("layers.1.bias");
    assert!(
        matches!(b.load_named_parameters(&missing), Err(NnError::Parameter { name, .. }) if name == "layers.1.bias")
    );
    let mut extra = params.clone();
    extra.insert("layers.9.weight".into(), ArrayD::zeros(IxDyn(&[1])));
    assert!(b.load_named_parameters(&extra).is_err());
    let mut wrong = params;
    wrong.insert("layers.0.weight".into(), ArrayD::zeros(IxDyn(&[4, 5])));
    assert!(b.load_named_parameters(&wrong).is_err());
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let mut mlp = Mlp::<f32>::builder(&[4, 3]).build().unwrap();
    assert!(mlp.forward(&array![[1.0f32, 2.0]]).is_err());
    let logits = array![[0.0f32, 1.0, 2.0]];
    assert!(matches!(
        softmax_cross_entropy(&logits, &[3]),
        Err(NnError::LabelOutOfRange {
            label: 3,
            classes: 3,
            ..
        })
    ));
    assert!(softmax_cross_entropy(&logits, &[0, 1]).is_err());
    assert!(Mlp::<f32>::builder(&[4, 0, 3]).build().is_err());
    assert!(Mlp::<f32>::builder(&[4, 3]).dropout(1.0).build().is_err());
}
