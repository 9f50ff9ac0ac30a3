//! A CNN `state_dict` written by PyTorch loads into a `Sequential` and gives torch's logits; what
//! modelopt writes has torch's names, dtypes and shapes (tests/make_torch_cnn.py --check loads it in
//! torch); bad files and bad architectures are errors naming the tensor or the layer.

use modelopt::io::Checkpoint;
use modelopt::nn::{
    Activation, BatchNorm2d, Conv2d, Dense, Dropout, Init, Layer, MaxPool2d, NnError, Sequential,
};
use modelopt::pipeline::{load_sequential, save_sequential};
use ndarray::Array2;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The architecture of tests/make_torch_cnn.py, with torch's nested names.
fn architecture(conv2_out: usize) -> Sequential<f32> {
    let mut rng = StdRng::seed_from_u64(0);
    Sequential::builder(&[1, 8, 8])
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
            Layer::Conv2d(
                Conv2d::builder(4, conv2_out, 3)
                    .groups(2)
                    .build(&mut rng)
                    .unwrap(),
            ),
        )
        .push_named("features.5", Layer::Activation(Activation::Relu))
        .push_named("classifier.0", Layer::Flatten)
        .push_named(
            "classifier.1",
            Layer::Dropout(Dropout::new(0.3, 0).unwrap()),
        )
        .push_named(
            "classifier.2",
            Layer::Linear(Dense::new(conv2_out * 4, 3, Init::HeNormal, &mut rng).unwrap()),
        )
        .build()
        .unwrap()
}

fn torch_io() -> (Array2<f32>, Array2<f32>) {
    let io = Checkpoint::open(data("torch_cnn_io.safetensors")).unwrap();
    let x = Array2::from_shape_vec((5, 64), io.tensor_f32("input").unwrap()).unwrap();
    let y = Array2::from_shape_vec((5, 3), io.tensor_f32("logits").unwrap()).unwrap();
    (x, y)
}

#[test]
fn torch_state_dict_loads_and_gives_torch_logits() {
    let net = load_sequential(data("torch_cnn.safetensors"), &architecture(6)).unwrap();
    let (x, want) = torch_io();
    let got = net.predict(&x).unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{g} vs torch {w}");
    }
    match &net.layers()[1] {
        Layer::BatchNorm2d(bn) => assert_eq!(bn.num_batches_tracked(), 3),
        other => panic!("expected batch norm, got {}", other.kind()),
    }
}

#[test]
fn saved_file_has_torch_names_dtypes_and_shapes_and_round_trips() {
    let net = load_sequential(data("torch_cnn.safetensors"), &architecture(6)).unwrap();
    let path = std::env::temp_dir().join(format!(
        "modelopt-cnn-rt-{}.safetensors",
        std::process::id()
    ));
    save_sequential(&net, &path).unwrap();
    let describe = |p: &std::path::Path| {
        let mut v: Vec<_> = Checkpoint::open(p)
            .unwrap()
            .tensors()
            .into_iter()
            .map(|t| (t.info.name, t.info.dtype, t.info.shape))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(describe(&path), describe(&data("torch_cnn.safetensors")));
    let back = load_sequential(&path, &net).unwrap();
    assert_eq!(back.state_dict(), net.state_dict());
    // For the torch side: `MODELOPT_CNN_OUT=f.safetensors cargo test --test cnn_file`, then
    // `python3 tests/make_torch_cnn.py --check f.safetensors` loads it strictly and compares logits.
    if let Some(out) = std::env::var_os("MODELOPT_CNN_OUT") {
        std::fs::copy(&path, out).unwrap();
    }
    std::fs::remove_file(&path).ok();
}

#[test]
fn mismatched_files_are_errors_naming_the_tensor() {
    // Wrong shape: the template's second convolution has 8 filters, the file 6.
    let err = load_sequential(data("torch_cnn.safetensors"), &architecture(8))
        .unwrap_err()
        .to_string();
    assert!(err.contains("features.4") && err.contains("shape"), "{err}");
    // Extra tensors: a template without the classifier's linear layer... cannot be built (no logits),
    // so drop batch norm instead: the file's features.1.* are unknown to it.
    let mut rng = StdRng::seed_from_u64(0);
    let no_bn = Sequential::builder(&[1, 8, 8])
        .push_named(
            "features.0",
            Layer::Conv2d(Conv2d::builder(1, 4, 3).padding(1).build(&mut rng).unwrap()),
        )
        .push_named(
            "features.3",
            Layer::MaxPool2d(MaxPool2d::new(2, 2, 0).unwrap()),
        )
        .push_named(
            "features.4",
            Layer::Conv2d(Conv2d::builder(4, 6, 3).groups(2).build(&mut rng).unwrap()),
        )
        .push_named("classifier.0", Layer::Flatten)
        .push_named(
            "classifier.2",
            Layer::Linear(Dense::new(24, 3, Init::HeNormal, &mut rng).unwrap()),
        )
        .build()
        .unwrap();
    let err = load_sequential(data("torch_cnn.safetensors"), &no_bn)
        .unwrap_err()
        .to_string();
    assert!(err.contains("features.1."), "{err}");
    // Missing tensors: a template with an extra batch norm the file does not have.
    let path = std::env::temp_dir().join(format!(
        "modelopt-cnn-miss-{}.safetensors",
        std::process::id()
    ));
    save_sequential(&no_bn, &path).unwrap();
    let err = load_sequential(&path, &architecture(6))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("features.1") && err.contains("missing"),
        "{err}"
    );
    std::fs::remove_file(&path).ok();
}

#[test]
fn bad_architectures_are_errors_naming_the_layer() {
    let mut rng = StdRng::seed_from_u64(0);
    let conv = |i, o, k, rng: &mut StdRng| {
        Layer::Conv2d(Conv2d::<f32>::builder(i, o, k).build(rng).unwrap())
    };
    // Channels: the second convolution expects 3 inputs, the first gives 4.
    let err = Sequential::builder(&[1, 8, 8])
        .push(conv(1, 4, 3, &mut rng))
        .push(conv(3, 4, 3, &mut rng))
        .push(Layer::Flatten)
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, NnError::Layer { layer, kind: "Conv2d", .. } if layer == "1"),
        "{err}"
    );
    assert!(err.to_string().contains("channels"), "{err}");
    // Kernel larger than the padded input.
    let err = Sequential::builder(&[1, 4, 4])
        .push(conv(1, 2, 5, &mut rng))
        .push(Layer::Flatten)
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("layer `0`") && err.to_string().contains("kernel"),
        "{err}"
    );
    // Groups not dividing the channels, stride or kernel 0.
    assert!(
        Conv2d::<f32>::builder(6, 4, 3)
            .groups(4)
            .build(&mut rng)
            .unwrap_err()
            .to_string()
            .contains("groups")
    );
    assert!(
        Conv2d::<f32>::builder(1, 4, 3)
            .stride(0)
            .build(&mut rng)
            .unwrap_err()
            .to_string()
            .contains("stride")
    );
    assert!(
        Conv2d::<f32>::builder(1, 4, 0)
            .build(&mut rng)
            .unwrap_err()
            .to_string()
            .contains("kernel")
    );
    assert!(MaxPool2d::new(0, 1, 0).is_err() && MaxPool2d::new(2, 0, 0).is_err());
    // A linear layer on images (no flatten), and a wrong input width at run time.
    let err = Sequential::builder(&[1, 4, 4])
        .push(Layer::Linear(
            Dense::<f32>::new(16, 2, Init::HeNormal, &mut rng).unwrap(),
        ))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("flatten"), "{err}");
    let net = architecture(6);
    assert!(net.predict(&Array2::zeros((2, 63))).is_err());
}
