//! Everything a caller can get wrong is an error that says what and where, never a panic.

use modelopt_quantize::observer::{
    HistogramObserver, MinMaxObserver, MovingAverageMinMaxObserver, NonFinitePolicy, Observer,
};
use modelopt_quantize::{LinearQuantizer, QuantError, QuantScheme};
use modelopt_tensor_core::CoreError;
use ndarray::{Array2, Array3, array};

#[test]
fn linear_quantizer_textbook_example() {
    let q = LinearQuantizer::new(10.0)
        .apply(&array![0.1f32, 0.2, 0.3, 0.4, 0.5])
        .unwrap();
    assert_eq!(q.codes(), array![1, 2, 3, 4, 5]);
    assert_eq!(q.clamped(), 0);
    // Round half to even, on a 3-D view.
    let x = Array3::from_shape_vec((1, 2, 2), vec![0.5f32, 1.5, 2.5, -0.5]).unwrap();
    assert_eq!(
        LinearQuantizer::new(1.0)
            .apply(&x.view())
            .unwrap()
            .codes()
            .into_raw_vec_and_offset()
            .0,
        vec![0, 2, 2, 0]
    );
}

#[test]
fn non_finite_names_the_first_index() {
    let mut x = Array2::<f32>::zeros((3, 64));
    x[[2, 5]] = f32::NEG_INFINITY;
    x[[2, 9]] = f32::NAN;
    for scheme in [
        QuantScheme::int8().per_channel(0),
        QuantScheme::int4().per_group(1, 32),
        QuantScheme::int8().affine().per_channel(1),
    ] {
        match scheme.quantize(&x) {
            Err(QuantError::Core(CoreError::NonFinite {
                index, position, ..
            })) => {
                assert_eq!((index, position), (2 * 64 + 5, vec![2, 5]));
            }
            other => panic!("expected NonFinite, got {other:?}"),
        }
    }
    assert!(LinearQuantizer::new(1.0).apply(&x).is_err());
}

#[test]
fn empty_input_is_an_error() {
    let x = Array2::<f32>::zeros((0, 4));
    assert!(matches!(
        QuantScheme::int8().quantize(&x),
        Err(QuantError::Core(CoreError::Empty { .. }))
    ));
    assert!(matches!(
        LinearQuantizer::new(1.0).apply(&x),
        Err(QuantError::Core(CoreError::Empty { .. }))
    ));
    assert!(MinMaxObserver::new().observe(&x).is_err());
}

#[test]
fn bad_parameters_are_rejected() {
    for b in [0u8, 1, 9, 16] {
        assert!(matches!(
            QuantScheme::new(b).check(),
            Err(QuantError::Core(CoreError::InvalidParameter {
                name: "bits",
                ..
            }))
        ));
    }
    let x = Array2::<f32>::ones((4, 6));
    assert!(matches!(
        QuantScheme::int8().per_channel(2).quantize(&x),
        Err(QuantError::Core(CoreError::AxisOutOfRange {
            axis: 2,
            ndim: 2
        }))
    ));
    assert!(matches!(
        QuantScheme::int4().per_group(1, 4).quantize(&x),
        Err(QuantError::Core(CoreError::InvalidParameter {
            name: "group_size",
            ..
        }))
    ));
    assert!(QuantScheme::int4().per_group(1, 0).check().is_err());
    assert!(QuantScheme::int8().eps(f32::NAN).check().is_err());
    assert!(LinearQuantizer::new(-1.0).apply(&x).is_err());
    assert!(MovingAverageMinMaxObserver::new(1.5).is_err());
    assert!(HistogramObserver::percentile(101.0).is_err());
}

#[test]
fn constant_and_zero_channels_are_exact() {
    let x = array![
        [0.0f32, 0.0, 0.0, 0.0],
        [0.5, 0.5, 0.5, 0.5],
        [-3.0, -3.0, -3.0, -3.0]
    ];
    for scheme in [
        QuantScheme::int8().per_channel(0),
        QuantScheme::int4().per_channel(0),
        QuantScheme::new(2).affine().per_channel(0),
        QuantScheme::new(3).signed(false).affine().per_group(1, 2),
    ] {
        let q = scheme.quantize(&x).unwrap();
        assert_eq!(q.dequantize(), x, "{scheme:?}");
        assert!(q.scales().iter().all(|s| s.is_finite() && *s > 0.0));
    }
    // torch's full-range symmetric maps absmax to 127.5, which rounds (to even) past qmax: a
    // constant channel is then clamped, as in torch. All-zero stays exact, scale = eps.
    let q = QuantScheme::torch(true, false)
        .per_channel(0)
        .quantize(&x)
        .unwrap();
    assert_eq!(q.dequantize().row(0), x.row(0));
    assert_eq!(q.scales()[[0]], f32::EPSILON);
    assert_eq!(q.codes().row(1).to_vec(), vec![127; 4]);
}

#[test]
fn params_of_another_shape_or_granularity_are_rejected() {
    let s = QuantScheme::int8().per_channel(0).check().unwrap();
    let p = s
        .quantize(&Array2::<f32>::ones((3, 2)))
        .unwrap()
        .params()
        .clone();
    assert!(s.quantize_with(&Array2::<f32>::ones((4, 2)), &p).is_err());
    let t = QuantScheme::int8().check().unwrap();
    assert!(t.quantize_with(&Array2::<f32>::ones((3, 2)), &p).is_err());
}

#[test]
fn observers_error_or_ignore_non_finite() {
    let batch = array![1.0f32, f32::INFINITY, -2.0];
    let e = MinMaxObserver::new().observe(&batch).unwrap_err();
    assert_eq!(e.to_string(), "non-finite value inf at flat index 1 ([1])");
    let mut o = HistogramObserver::entropy().non_finite(NonFinitePolicy::Ignore);
    o.observe(&batch).unwrap();
    assert_eq!(o.counts().iter().sum::<u64>(), 2);
    let mut m = MinMaxObserver::per_channel(1);
    m.observe(&Array2::<f32>::ones((2, 3))).unwrap();
    assert!(m.observe(&Array2::<f32>::ones((2, 4))).is_err()); // channel count changed
    let s = QuantScheme::int8().check().unwrap();
    assert!(m.quant_params(&s).is_err()); // per-tensor scheme, per-channel observer
}
