//! Convolution, pooling and batch norm against PyTorch 2.15 (float64 reference in `tests/data/conv`,
//! copied from the peers' `reference/conv`; loss = sum(output * upstream)). f64 must match to 1e-10,
//! f32 (inputs rounded to f32) to 1e-4 relative.

use modelopt_nn::{AvgPool2d, BatchNorm2d, Conv2d, MaxPool2d, Window};
use ndarray::{Array, Array1, Array4, ArrayD, Dimension};
use ndarray_npy::read_npy;

fn load<D: Dimension>(name: &str) -> Array<f64, D> {
    let path = format!("{}/tests/data/conv/{name}.npy", env!("CARGO_MANIFEST_DIR"));
    let a: ArrayD<f64> = read_npy(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    a.into_dimensionality::<D>().expect("reference rank")
}

fn f32s<D: Dimension>(a: &Array<f64, D>) -> Array<f32, D> {
    a.mapv(|v| v as f32)
}

fn close64<D: Dimension>(got: &Array<f64, D>, want: &Array<f64, D>, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-10, "{what}[{i}]: {g} vs torch {w}");
    }
}

fn close32<D: Dimension>(got: &Array<f32, D>, want: &Array<f64, D>, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-3);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (*g as f64 - w).abs() <= 1e-4 * scale,
            "{what}[{i}]: {g} vs torch {w} (scale {scale})"
        );
    }
}

/// (case, stride, padding, dilation, groups, has bias)
const CONV: [(&str, usize, usize, usize, usize, bool); 7] = [
    ("basic_3x3", 1, 0, 1, 1, true),
    ("pad1_stride2", 2, 1, 1, 1, true),
    ("dilation2_nobias", 1, 0, 2, 1, false),
    ("groups2", 1, 1, 1, 2, true),
    ("depthwise", 1, 1, 1, 5, true),
    ("pointwise_1x1", 1, 0, 1, 1, true),
    ("seed_teacher_like", 1, 0, 1, 1, true),
];

#[test]
fn conv2d_matches_torch_forward_and_gradients() {
    for (case, stride, padding, dilation, groups, has_bias) in CONV {
        let x: Array4<f64> = load(&format!("{case}_input"));
        let w: Array4<f64> = load(&format!("{case}_weight"));
        let b: Option<Array1<f64>> = has_bias.then(|| load(&format!("{case}_bias")));
        let up: Array4<f64> = load(&format!("{case}_upstream"));
        let y: Array4<f64> = load(&format!("{case}_output"));
        let gx: Array4<f64> = load(&format!("{case}_grad_input"));
        let gw: Array4<f64> = load(&format!("{case}_grad_weight"));
        let (_, _, kh, kw) = w.dim();
        let window = Window::new([kh, kw], [stride; 2], [padding; 2], [dilation; 2]).unwrap();

        let mut conv = Conv2d::from_parts(w.clone(), b.clone(), window, groups).unwrap();
        close64(&conv.forward(&x).unwrap(), &y, &format!("{case} output"));
        let dx = conv.backward(&x, &up, true).unwrap().unwrap();
        close64(&dx, &gx, &format!("{case} grad_input"));
        close64(conv.weight_grad(), &gw, &format!("{case} grad_weight"));
        if has_bias {
            let gb: Array1<f64> = load(&format!("{case}_grad_bias"));
            close64(conv.bias_grad().unwrap(), &gb, &format!("{case} grad_bias"));
        }

        let mut conv = Conv2d::from_parts(f32s(&w), b.as_ref().map(f32s), window, groups).unwrap();
        let x32 = f32s(&x);
        close32(
            &conv.forward(&x32).unwrap(),
            &y,
            &format!("{case} f32 output"),
        );
        let dx = conv.backward(&x32, &f32s(&up), true).unwrap().unwrap();
        close32(&dx, &gx, &format!("{case} f32 grad_input"));
        close32(conv.weight_grad(), &gw, &format!("{case} f32 grad_weight"));
    }
}

#[test]
fn max_pool_matches_torch() {
    for (case, k, s, p) in [("maxpool_2", 2, 2, 0), ("maxpool_3_s2_p1", 3, 2, 1)] {
        let x: Array4<f64> = load(&format!("{case}_input"));
        let up: Array4<f64> = load(&format!("{case}_upstream"));
        let pool = MaxPool2d::new(k, s, p).unwrap();
        let (y, idx) = pool.forward_with_indices(&x).unwrap();
        close64(&y, &load(&format!("{case}_output")), case);
        let dx = pool.backward(x.dim(), &idx, &up).unwrap();
        close64(&dx, &load(&format!("{case}_grad_input")), case);
        let (y, idx) = pool.forward_with_indices(&f32s(&x)).unwrap();
        close32(&y, &load(&format!("{case}_output")), case);
        let dx = pool.backward(x.dim(), &idx, &f32s(&up)).unwrap();
        close32(&dx, &load(&format!("{case}_grad_input")), case);
    }
}

#[test]
fn avg_pool_matches_torch() {
    let x: Array4<f64> = load("avgpool_2_input");
    let up: Array4<f64> = load("avgpool_2_upstream");
    let pool = AvgPool2d::new(2, 2, 0).unwrap();
    close64(&pool.forward(&x).unwrap(), &load("avgpool_2_output"), "avg");
    close64(
        &pool.backward(x.dim(), &up).unwrap(),
        &load("avgpool_2_grad_input"),
        "avg grad",
    );
    close32(
        &pool.forward(&f32s(&x)).unwrap(),
        &load("avgpool_2_output"),
        "avg f32",
    );
}

#[test]
fn batch_norm_matches_torch_train_eval_and_running_stats() {
    for case in ["bn_4ch", "bn_batch2"] {
        let x: Array4<f64> = load(&format!("{case}_input"));
        let up: Array4<f64> = load(&format!("{case}_upstream"));
        let ch = x.dim().1;
        let mut bn = BatchNorm2d::<f64>::new(ch).unwrap();
        bn.weight_mut()
            .assign(&load::<ndarray::Ix1>(&format!("{case}_gamma")));
        bn.bias_mut()
            .assign(&load::<ndarray::Ix1>(&format!("{case}_beta")));
        bn.running_mean_mut()
            .assign(&load::<ndarray::Ix1>(&format!("{case}_rm0")));
        bn.running_var_mut()
            .assign(&load::<ndarray::Ix1>(&format!("{case}_rv0")));
        let mut bn32 = BatchNorm2d::<f32>::new(ch).unwrap();
        bn32.weight_mut().assign(&f32s(bn.weight()));
        bn32.bias_mut().assign(&f32s(bn.bias()));
        bn32.running_mean_mut().assign(&f32s(bn.running_mean()));
        bn32.running_var_mut().assign(&f32s(bn.running_var()));

        close64(
            &bn.forward_train(&x).unwrap(),
            &load(&format!("{case}_output_train")),
            case,
        );
        close64(
            &bn.backward_train(&x, &up).unwrap(),
            &load(&format!("{case}_grad_input")),
            case,
        );
        close64(bn.weight_grad(), &load(&format!("{case}_grad_gamma")), case);
        close64(bn.bias_grad(), &load(&format!("{case}_grad_beta")), case);
        close64(
            bn.running_mean(),
            &load(&format!("{case}_rm1")),
            "running mean",
        );
        close64(
            bn.running_var(),
            &load(&format!("{case}_rv1")),
            "running var",
        );
        close64(
            &bn.forward_eval(&x).unwrap(),
            &load(&format!("{case}_output_eval")),
            "eval",
        );
        assert_eq!(bn.num_batches_tracked(), 1);

        let x32 = f32s(&x);
        close32(
            &bn32.forward_train(&x32).unwrap(),
            &load(&format!("{case}_output_train")),
            case,
        );
        close32(
            &bn32.backward_train(&x32, &f32s(&up)).unwrap(),
            &load(&format!("{case}_grad_input")),
            case,
        );
        close32(
            bn32.running_var(),
            &load(&format!("{case}_rv1")),
            "f32 running var",
        );
        close32(
            &bn32.forward_eval(&x32).unwrap(),
            &load(&format!("{case}_output_eval")),
            "f32 eval",
        );
    }
}
