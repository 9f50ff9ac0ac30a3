//! torch.ao parity: `MinMaxObserver` / `PerChannelMinMaxObserver` + `quantize_per_*` (torch 2.15)
//! reproduced by the scheme configured as torch's. Data: tests/data/quant (see manifest.json).

use std::path::PathBuf;

use modelopt_quantize::QuantScheme;
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::read_npy;

fn data(name: &str, what: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/quant")
        .join(format!("{name}_{what}.npy"))
}

fn ulp_distance(a: f32, b: f32) -> u32 {
    (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
}

/// (case, signed, affine, axis)
const CASES: [(&str, bool, bool, Option<usize>); 7] = [
    ("per_tensor_symmetric_qint8", true, false, None),
    ("per_tensor_affine_qint8", true, true, None),
    ("per_tensor_affine_quint8", false, true, None),
    ("per_channel_symmetric_qint8_axis0", true, false, Some(0)),
    ("per_channel_symmetric_qint8_axis1", true, false, Some(1)),
    ("per_channel_affine_qint8_axis0", true, true, Some(0)),
    ("conv_per_channel_affine_quint8_axis0", false, true, Some(0)),
];

#[test]
fn reproduces_torch_scales_zero_points_codes_and_dequantized() {
    for (name, signed, affine, axis) in CASES {
        let x: ArrayD<f32> = read_npy(data(name, "input")).unwrap();
        let scale: ArrayD<f32> = read_npy(data(name, "scale")).unwrap();
        let zero_point: ArrayD<i32> = read_npy(data(name, "zero_point")).unwrap();
        let codes: ArrayD<i32> = read_npy(data(name, "quantized")).unwrap();
        let deq: ArrayD<f32> = read_npy(data(name, "dequantized")).unwrap();

        let mut scheme = QuantScheme::torch(signed, affine);
        if let Some(a) = axis {
            scheme = scheme.per_channel(a);
        }
        let q = scheme.quantize(&x).unwrap();

        let got_scales: Vec<f32> = q.scales().iter().copied().collect();
        let want_scales: Vec<f32> = scale.iter().copied().collect();
        assert_eq!(got_scales.len(), want_scales.len(), "{name}");
        for (i, (g, w)) in got_scales.iter().zip(&want_scales).enumerate() {
            assert!(
                ulp_distance(*g, *w) == 0,
                "{name}: scale {i}: {g} vs torch {w}"
            );
        }
        let got_zp: Vec<i32> = q.zero_points().iter().copied().collect();
        assert_eq!(
            got_zp,
            zero_point.iter().copied().collect::<Vec<_>>(),
            "{name}: zero points"
        );
        assert_eq!(q.codes().into_dyn(), codes, "{name}: codes");
        let ours = q.dequantize();
        for (i, (g, w)) in ours.iter().zip(deq.iter()).enumerate() {
            assert!(
                ulp_distance(*g, *w) == 0,
                "{name}: dequantized {i}: {g} vs torch {w}"
            );
        }
        assert_eq!(ours.shape(), deq.shape());
    }
}

#[test]
fn all_zero_channel_of_the_reference_is_exact() {
    // The per-channel cases include an all-zero channel: scale falls back to eps, codes are 0.
    let name = "per_channel_symmetric_qint8_axis0";
    let x: ArrayD<f32> = read_npy(data(name, "input")).unwrap();
    let q = QuantScheme::torch(true, false)
        .per_channel(0)
        .quantize(&x)
        .unwrap();
    let deq = q.dequantize();
    let zero_rows: Vec<usize> = (0..x.shape()[0])
        .filter(|&r| x.index_axis(ndarray::Axis(0), r).iter().all(|&v| v == 0.0))
        .collect();
    assert!(
        !zero_rows.is_empty(),
        "reference should contain an all-zero channel"
    );
    for r in zero_rows {
        assert_eq!(q.scales()[IxDyn(&[r])], f32::EPSILON);
        assert!(
            deq.index_axis(ndarray::Axis(0), r)
                .iter()
                .all(|&v| v == 0.0)
        );
    }
}
