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

mod conv {
    use super::*;
    use modelopt_kernels::ActScale;
    use modelopt_nn::{Conv2d, Window};
    use modelopt_quantize::QuantScheme;
    use ndarray::{Array1, Array4};

    fn conv(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
        dil: usize,
        groups: usize,
    ) -> Conv2d<f32> {
        let w = Array4::from_shape_fn((cout, cin / groups, k, k), |(o, i, a, b)| {
            (((o * 13 + i * 7 + a * 5 + b * 3) % 17) as f32 - 8.0) / 16.0
        });
        let bias = Array1::from_shape_fn(cout, |o| o as f32 / 10.0 - 0.2);
        Conv2d::from_parts(
            w,
            Some(bias),
            Window::square(k, stride, pad, dil).unwrap(),
            groups,
        )
        .unwrap()
    }

    fn images(n: usize, c: usize, h: usize, w: usize) -> Array4<f32> {
        Array4::from_shape_fn((n, c, h, w), |(a, b, i, j)| {
            (((a * 11 + b * 5 + i * 3 + j * 7) % 19) as f32 - 6.0) / 9.0
        })
    }

    /// The integer arithmetic written out: u8 input codes (round half to even, zero point), int8
    /// weight codes per output channel, padded taps contributing nothing (their code is the zero
    /// point), the sum exact in i64, then scale and bias in f64.
    fn reference(c: &Conv2d<f32>, x: &Array4<f32>, scale: f32, zp: i32) -> Array4<f64> {
        let (out, in_g, kh, kw) = c.weight().dim();
        let g = c.groups();
        let win = c.window();
        let (n, _, h, w) = x.dim();
        let (oh, ow) = win.output_size(h, w).unwrap();
        let wm = c
            .weight()
            .clone()
            .into_shape_with_order((out, in_g * kh * kw))
            .unwrap();
        let q = QuantScheme::int8().per_channel(0).quantize(&wm).unwrap();
        let inv = 1.0 / scale;
        let code = |v: f32| ((v * inv).round_ties_even() + zp as f32).clamp(0.0, 255.0) as i64;
        let mut y = Array4::<f64>::zeros((n, out, oh, ow));
        for b in 0..n {
            for o in 0..out {
                let gi = o / (out / g);
                for (i, j) in (0..oh).flat_map(|i| (0..ow).map(move |j| (i, j))) {
                    let mut acc = 0i64;
                    for ci in 0..in_g {
                        for a in 0..kh {
                            for bb in 0..kw {
                                let r = (i * win.stride[0] + a * win.dilation[0]) as isize
                                    - win.padding[0] as isize;
                                let s = (j * win.stride[1] + bb * win.dilation[1]) as isize
                                    - win.padding[1] as isize;
                                if r < 0 || s < 0 || r >= h as isize || s >= w as isize {
                                    continue; // padded: code = zero point
                                }
                                let xc = code(x[[b, gi * in_g + ci, r as usize, s as usize]])
                                    - zp as i64;
                                let wc = q.codes()[[o, (ci * kh + a) * kw + bb]] as i64;
                                acc += xc * wc;
                            }
                        }
                    }
                    y[[b, o, i, j]] = acc as f64 * f64::from(scale) * f64::from(q.scales()[[o]])
                        + f64::from(c.bias().unwrap()[o]);
                }
            }
        }
        y
    }

    #[test]
    fn static_w8a8_equals_the_integer_arithmetic_for_every_window() {
        // (in, out, kernel, stride, padding, dilation, groups): strided, padded, dilated,
        // grouped, depthwise, 1x1, the teacher's first layer.
        let cases = [
            (3, 4, 3, 2, 1, 1, 1),
            (4, 6, 3, 1, 2, 2, 1),
            (4, 6, 3, 1, 1, 1, 2),
            (4, 4, 3, 1, 1, 1, 4),
            (5, 3, 1, 1, 0, 1, 1),
            (1, 64, 3, 1, 0, 1, 1),
        ];
        for (cin, cout, k, st, pad, dil, g) in cases {
            let c = conv(cin, cout, k, st, pad, dil, g);
            let x = images(2, cin, 9, 8);
            let (scale, zp) = (4.0 / 255.0, 77);
            let mut q = QuantizedConv2d::from_conv(&c, LinearScheme::W8A8Static).unwrap();
            assert!(
                q.forward(&x, Par::Seq).is_err(),
                "uncalibrated static must be an error"
            );
            q.set_input_scale(ActScale::per_tensor(scale, zp).unwrap())
                .unwrap();
            let want = reference(&c, &x, scale, zp);
            for par in [Par::Seq, Par::all_cores()] {
                let y = q.forward(&x, par).unwrap();
                assert_eq!(y.dim(), want.dim());
                for (a, b) in y.iter().zip(&want) {
                    assert!(
                        (f64::from(*a) - b).abs() <= 1e-5 * (1.0 + b.abs()),
                        "{cin}->{cout} k{k} s{st} p{pad} d{dil} g{g}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn dynamic_and_weight_only_track_the_float_convolution() {
        // in / groups * k * k = 8 * 4 = 32: a whole block for the weight-only formats.
        let c = conv(8, 6, 2, 1, 1, 1, 1);
        let x = images(2, 8, 7, 7);
        let want = c.forward(&x).unwrap();
        let peak = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (scheme, tol) in [
            (LinearScheme::W8A8Dynamic, 0.02),
            (LinearScheme::WeightOnly(BlockFormat::Q8_0), 0.02),
            (LinearScheme::WeightOnly(BlockFormat::Q4_0), 0.15),
        ] {
            let q = QuantizedConv2d::from_conv(&c, scheme).unwrap();
            let y = q.forward(&x, Par::Seq).unwrap();
            let err = y
                .iter()
                .zip(&want)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                err <= tol * peak,
                "{}: max error {err} of peak {peak}",
                scheme.name()
            );
        }
        // A patch of 9 values is no multiple of a 32-value block: an error, not a silent fallback.
        let bad = conv(1, 4, 3, 1, 0, 1, 1);
        assert!(
            QuantizedConv2d::from_conv(&bad, LinearScheme::WeightOnly(BlockFormat::Q4_0)).is_err()
        );
        // int4 with groups of 8 on 9-value patches: one group per row (the pipeline's int4
        // simulation), padded to 16 inputs for the kernels. The result is the float
        // convolution with the simulated weights (int4, scale absmax / 7 per row), up to the
        // 8-bit activation blocks.
        let int4 = LinearScheme::WeightOnly(BlockFormat::Int4 { group: 8 });
        let q = QuantizedConv2d::from_conv(&bad, int4).unwrap();
        let mut sim = bad.clone();
        let w = sim.weight().clone();
        let rows = w.shape()[0];
        let flat = w.into_shape_with_order((rows, 9)).unwrap();
        let fq = QuantScheme::int4()
            .per_group(1, 9)
            .quantize(&flat)
            .unwrap()
            .dequantize()
            .into_shape_with_order((rows, 1, 3, 3))
            .unwrap();
        sim.weight_mut().assign(&fq);
        let x9 = images(2, 1, 6, 6);
        let want = sim.forward(&x9).unwrap();
        let y = q.forward(&x9, Par::Seq).unwrap();
        let peak = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = y
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err <= 0.02 * peak,
            "int4 on 9-value patches: {err} of {peak}"
        );
        // Wrong channel count.
        let q = QuantizedConv2d::from_conv(&c, LinearScheme::W8A8Dynamic).unwrap();
        assert!(q.forward(&images(1, 3, 7, 7), Par::Seq).is_err());
    }

    #[test]
    fn a_cnn_converts_in_one_call_and_tracks_its_float_self() {
        use modelopt_nn::{Activation, BatchNorm2d, Dense, Init, Layer, MaxPool2d, Sequential};
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let net = Sequential::builder(&[1, 8, 8])
            .push(Layer::Conv2d(
                Conv2d::<f32>::builder(1, 8, 3)
                    .padding(1)
                    .build(&mut rng)
                    .unwrap(),
            ))
            .push(Layer::BatchNorm2d(BatchNorm2d::new(8).unwrap()))
            .push(Layer::Activation(Activation::Relu))
            .push(Layer::MaxPool2d(MaxPool2d::new(2, 2, 0).unwrap()))
            .push(Layer::Conv2d(
                Conv2d::<f32>::builder(8, 8, 3)
                    .padding(1)
                    .build(&mut rng)
                    .unwrap(),
            ))
            .push(Layer::Activation(Activation::Relu))
            .push(Layer::Flatten)
            .push(Layer::Linear(
                Dense::new(128, 5, Init::HeNormal, &mut rng).unwrap(),
            ))
            .build()
            .unwrap();
        let x = Array2::from_shape_fn((32, 64), |(i, j)| ((i * 7 + j * 3) % 13) as f32 / 13.0);
        let want = net.predict(&x).unwrap();
        let peak = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let q = QuantizedSequential::from_sequential(
            &net,
            LinearScheme::W8A8Static,
            &x,
            8,
            Calibration::MinMax,
        )
        .unwrap();
        // Batch norm folded, both ReLUs fused: conv, pool, conv, flatten, linear.
        assert_eq!(q.layers().len(), 5);
        assert_eq!(q.integer_layers(), 3);
        let y = q.predict(&x, Par::Seq).unwrap();
        let err = y
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= 0.05 * peak, "max error {err} of peak {peak}");
        assert_eq!(q.predict(&x, Par::all_cores()).unwrap(), y);
        assert!(q.predict(&Array2::zeros((2, 63)), Par::Seq).is_err()); // not 1x8x8
        // Saved and loaded: the same layers, the same logits.
        let dir = std::env::temp_dir().join(format!("modelopt-qseq-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cnn.safetensors");
        q.save(&path).unwrap();
        let back = QuantizedSequential::load(&path).unwrap();
        assert_eq!(back.layers().len(), 5);
        assert_eq!(back.predict(&x, Par::Seq).unwrap(), y);
        assert_eq!(back.weight_bytes(), q.weight_bytes());
        // int4 in groups of 8: the first convolution's 9-value rows are one padded group each;
        // they survive the file too.
        let q4 = QuantizedSequential::from_sequential(
            &net,
            LinearScheme::WeightOnly(BlockFormat::Int4 { group: 8 }),
            &x,
            8,
            Calibration::MinMax,
        )
        .unwrap();
        let y4 = q4.predict(&x, Par::Seq).unwrap();
        let err4 = y4
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err4 <= 0.25 * peak, "int4: max error {err4} of peak {peak}");
        let path4 = dir.join("cnn4.safetensors");
        q4.save(&path4).unwrap();
        assert_eq!(
            QuantizedSequential::load(&path4)
                .unwrap()
                .predict(&x, Par::Seq)
                .unwrap(),
            y4
        );
        // A quantized-MLP file is not a network file: a clear error.
        let mlp = Mlp::<f32>::builder(&[8, 4]).seed(1).build().unwrap();
        let other = dir.join("mlp.safetensors");
        QuantizedMlp::from_mlp(&mlp, LinearScheme::W8A8Dynamic)
            .unwrap()
            .save(&other)
            .unwrap();
        let err = QuantizedSequential::load(&other).unwrap_err().to_string();
        assert!(err.contains(QUANTIZED_SEQUENTIAL_KEY), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn layers_that_do_not_chain_are_an_error_naming_the_layer() {
        let c = conv(2, 4, 3, 1, 0, 1, 1);
        let q = QuantizedConv2d::from_conv(&c, LinearScheme::W8A8Dynamic).unwrap();
        // 2x5x5 -> 4x3x3 = 36 features, but the linear layer takes 10.
        let dense =
            modelopt_nn::Dense::from_parts(Array2::<f32>::ones((3, 10)), Array1::zeros(3)).unwrap();
        let lin = QuantizedLinear::from_dense(&dense, LinearScheme::W8A8Dynamic).unwrap();
        let layers = vec![
            ("0".to_string(), QuantizedLayer::Conv2d(q)),
            (
                "1".to_string(),
                QuantizedLayer::Float(modelopt_nn::Layer::Flatten),
            ),
            ("fc".to_string(), QuantizedLayer::Linear(lin)),
        ];
        let err = QuantizedSequential::from_layers(layers, vec![2, 5, 5])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`fc`") && err.contains("36"), "{err}");
    }
}
