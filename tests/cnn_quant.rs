//! Static quantization of a CNN: the torch-trained test network, batch norm folded, int8 weights and
//! calibrated int8 activations stay close to the float logits; bad calibration data is an error.

use modelopt::io::Checkpoint;
use modelopt::nn::{
    Activation, BatchNorm2d, Conv2d, Dense, Dropout, Init, Layer, MaxPool2d, Sequential,
    fold_batch_norm,
};
use modelopt::pipeline::{QuantizedCnn, WeightFormat, load_sequential};
use modelopt::quantize::observer::{HistogramObserver, MinMaxObserver};
use ndarray::Array2;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn torch_net() -> Sequential<f32> {
    let mut rng = StdRng::seed_from_u64(0);
    let template = Sequential::builder(&[1, 8, 8])
        .push_named(
            "features.0",
            Layer::Conv2d(Conv2d::builder(1, 4, 3).padding(1).build(&mut rng).unwrap()),
        )
        .push_named(
            "features.1",
            Layer::BatchNorm2d(BatchNorm2d::new(4).unwrap()),
        )
        .push_named("features.2", Layer::Activation(Activation::Relu))
        .push_named(
            "features.3",
            Layer::MaxPool2d(MaxPool2d::new(2, 2, 0).unwrap()),
        )
        .push_named(
            "features.4",
            Layer::Conv2d(Conv2d::builder(4, 6, 3).groups(2).build(&mut rng).unwrap()),
        )
        .push_named("features.5", Layer::Activation(Activation::Relu))
        .push_named("classifier.0", Layer::Flatten)
        .push_named(
            "classifier.1",
            Layer::Dropout(Dropout::new(0.3, 0).unwrap()),
        )
        .push_named(
            "classifier.2",
            Layer::Linear(Dense::new(24, 3, Init::HeNormal, &mut rng).unwrap()),
        )
        .build()
        .unwrap();
    load_sequential(data("torch_cnn.safetensors"), &template).unwrap()
}

#[test]
fn int8_static_quantization_stays_close_to_float() {
    let net = fold_batch_norm(&torch_net()).unwrap();
    let io = Checkpoint::open(data("torch_cnn_io.safetensors")).unwrap();
    let x = Array2::from_shape_vec((5, 64), io.tensor_f32("input").unwrap()).unwrap();
    let float = net.predict(&x).unwrap();
    let scale = float.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for format in [
        WeightFormat::Int8PerChannel,
        WeightFormat::Int4Grouped { group_size: 9 },
    ] {
        let q = QuantizedCnn::calibrate(&net, format, &x, MinMaxObserver::new).unwrap();
        let out = q.predict(&x).unwrap();
        let err = (&out - &float)
            .mapv(f32::abs)
            .fold(0.0f32, |m, &v| m.max(v));
        let tol = if format == WeightFormat::Int8PerChannel {
            0.03
        } else {
            0.2
        };
        assert!(
            err <= tol * scale,
            "{}: max error {err} vs logit scale {scale}",
            format.name()
        );
        assert!(out != float, "activations and weights are really quantized");
    }
    // A histogram observer works through the same trait.
    let q = QuantizedCnn::calibrate(&net, WeightFormat::Int8PerChannel, &x, || {
        HistogramObserver::percentile(99.99).unwrap()
    })
    .unwrap();
    assert!(q.predict(&x).unwrap().iter().all(|v| v.is_finite()));
    // Bad calibration data: wrong width, NaN.
    let wrong = Array2::<f32>::zeros((2, 63));
    assert!(
        QuantizedCnn::calibrate(
            &net,
            WeightFormat::Int8PerChannel,
            &wrong,
            MinMaxObserver::new
        )
        .is_err()
    );
    let mut nan = x.clone();
    nan[[0, 0]] = f32::NAN;
    assert!(
        QuantizedCnn::calibrate(
            &net,
            WeightFormat::Int8PerChannel,
            &nan,
            MinMaxObserver::new
        )
        .is_err()
    );
}
