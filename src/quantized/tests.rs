use super::*;
use modelopt_kernels::{BlockFormat, Isa, Par};
use modelopt_nn::Mlp;
use ndarray::Array2;

fn data(rows: usize, cols: usize, seed: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        (((i * 31 + j * 17 + seed * 7) % 23) as f32 - 8.0) / 8.0
    })
}

fn schemes() -> Vec<LinearScheme> {
    vec![
        LinearScheme::W8A8Dynamic,
        LinearScheme::W8A8Static,
        LinearScheme::WeightOnly(BlockFormat::Q8_0),
        LinearScheme::WeightOnly(BlockFormat::Q4_0),
        LinearScheme::WeightOnly(BlockFormat::IQ4_NL),
        LinearScheme::WeightOnly(BlockFormat::Int4 { group: 32 }),
    ]
}

#[test]
fn every_scheme_tracks_the_float_network_and_round_trips_through_a_file() {
    let mlp = Mlp::<f32>::builder(&[64, 64, 32]).seed(2).build().unwrap();
    let x = data(10, 64, 1);
    let want = mlp.predict(&x).unwrap();
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let dir = std::env::temp_dir().join(format!("modelopt-qmlp-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for scheme in schemes() {
        let mut q = QuantizedMlp::from_mlp(&mlp, scheme).unwrap();
        if scheme == LinearScheme::W8A8Static {
            assert!(
                q.predict(&x, Par::Seq).is_err(),
                "uncalibrated static must be an error"
            );
            q.calibrate(&mlp, &x, 4, Calibration::MinMax).unwrap();
        }
        let y = q.predict(&x, Par::Seq).unwrap();
        let err = y
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        let tol = if matches!(
            scheme,
            LinearScheme::WeightOnly(
                BlockFormat::Q4_0 | BlockFormat::IQ4_NL | BlockFormat::Int4 { .. }
            )
        ) {
            0.15
        } else {
            0.03
        };
        assert!(
            err < tol * scale,
            "{}: max error {err} vs output scale {scale}",
            scheme.name()
        );
        let path = dir.join(format!("{}.safetensors", scheme.name()));
        q.save(&path).unwrap();
        let back = QuantizedMlp::load(&path).unwrap();
        assert_eq!(back, q, "{}", scheme.name());
        assert_eq!(back.predict(&x, Par::Seq).unwrap(), y);
        for isa in Isa::available() {
            let layers: Vec<_> = q
                .layers()
                .iter()
                .map(|l| l.clone().with_isa(isa).unwrap())
                .collect();
            let qi = QuantizedMlp::from_layers(layers, q.activation()).unwrap();
            assert_eq!(qi.predict(&x, Par::Seq).unwrap(), y, "{isa:?}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_observer_calibrates() {
    let mlp = Mlp::<f32>::builder(&[64, 32, 10]).seed(5).build().unwrap();
    let x = data(32, 64, 3);
    for cal in [
        Calibration::MinMax,
        Calibration::Percentile(99.9),
        Calibration::Mse,
        Calibration::Entropy,
    ] {
        let mut q = QuantizedMlp::from_mlp(&mlp, LinearScheme::W8A8Static).unwrap();
        q.calibrate(&mlp, &x, 8, cal).unwrap();
        assert!(
            q.layers().iter().all(|l| l.input_scale().is_some()),
            "{}",
            cal.name()
        );
        assert!(q.predict(&x, Par::Seq).is_ok());
    }
}

#[test]
fn bad_input_is_an_error() {
    let mlp = Mlp::<f32>::builder(&[64, 32, 10]).seed(5).build().unwrap();
    let q = QuantizedMlp::from_mlp(&mlp, LinearScheme::W8A8Dynamic).unwrap();
    assert!(q.predict(&data(2, 63, 0), Par::Seq).is_err());
    let mut nan = data(2, 64, 0);
    nan[[1, 3]] = f32::NAN;
    assert!(q.predict(&nan, Par::Seq).is_err());
    // Q4_K needs 256-input rows.
    assert!(QuantizedMlp::from_mlp(&mlp, LinearScheme::WeightOnly(BlockFormat::Q4_K)).is_err());
    let mut s = QuantizedMlp::from_mlp(&mlp, LinearScheme::W8A8Static).unwrap();
    let other = Mlp::<f32>::builder(&[64, 16, 10]).build().unwrap();
    assert!(
        s.calibrate(&other, &data(4, 64, 0), 2, Calibration::MinMax)
            .is_err()
    );
    let mut layer =
        QuantizedLinear::from_dense(&mlp.layers()[0], LinearScheme::W8A8Static).unwrap();
    assert!(
        layer
            .set_input_scale(modelopt_kernels::ActScale::PerToken)
            .is_err()
    );
    assert!(modelopt_kernels::ActScale::per_tensor(0.0, 0).is_err());
    let mut dynamic =
        QuantizedLinear::from_dense(&mlp.layers()[0], LinearScheme::W8A8Dynamic).unwrap();
    assert!(
        dynamic
            .set_input_scale(modelopt_kernels::ActScale::per_tensor(0.1, 0).unwrap())
            .is_err()
    );
    layer.set_relu(true);
    assert!(LinearScheme::parse("int4-gx").is_err());
}
