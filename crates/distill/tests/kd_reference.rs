//! Hinton KD value and gradient against torch autograd (reference data from torch 2.15, float64;
//! see tests/data/kd/manifest.json). f64 must match to 1e-9 relative, f32 to 1e-5.

use std::path::PathBuf;

use modelopt_distill::{Distiller, KdLoss};
use ndarray::Array2;
use ndarray_npy::read_npy;

struct Case {
    name: &'static str,
    temperature: f64,
    alpha: f64,
    loss: f64,
    hard: f64,
    soft: f64,
}

/// Values copied from the reference manifest (`loss`, `hard_loss`, `soft_loss` as torch printed them).
const CASES: [Case; 5] = [
    Case {
        name: "b32_k100_t2_a0.5",
        temperature: 2.0,
        alpha: 0.5,
        loss: 2.9737816689741137,
        hard: 4.943765671651848,
        soft: 1.0037976662963792,
    },
    Case {
        name: "b4_k5_t20_a0.0",
        temperature: 20.0,
        alpha: 0.0,
        loss: 0.667412259082012,
        hard: 1.267011036593757,
        soft: 0.667412259082012,
    },
    Case {
        name: "b5_k12_t3_large_logits",
        temperature: 3.0,
        alpha: 0.3,
        loss: 1067.440893113895,
        hard: 404.2781005639172,
        soft: 1351.6535184924571,
    },
    Case {
        name: "b6_k7_t1_a1.0",
        temperature: 1.0,
        alpha: 1.0,
        loss: 2.0286765581581045,
        hard: 2.0286765581581045,
        soft: 0.6753083370635312,
    },
    Case {
        name: "b8_k10_t4_a0.1",
        temperature: 4.0,
        alpha: 0.1,
        loss: 1.0148012403265496,
        hard: 2.7815955610446927,
        soft: 0.8184907602467559,
    },
];

fn data(case: &str, part: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/kd/{case}_{part}.npy"))
}

fn load(case: &Case) -> (Array2<f64>, Array2<f64>, Vec<usize>, Array2<f64>) {
    let s: Array2<f64> = read_npy(data(case.name, "student")).unwrap();
    let t: Array2<f64> = read_npy(data(case.name, "teacher")).unwrap();
    let y: ndarray::Array1<i64> = read_npy(data(case.name, "labels")).unwrap();
    let g: Array2<f64> = read_npy(data(case.name, "grad")).unwrap();
    (s, t, y.iter().map(|&v| v as usize).collect(), g)
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(f64::MIN_POSITIVE)
}

#[test]
fn kd_matches_torch_f64() {
    for case in &CASES {
        let (s, t, y, g) = load(case);
        let kd = KdLoss::<f64>::new(case.temperature, case.alpha).unwrap();
        let out = kd.loss(&s, &t, &y).unwrap();
        assert!(
            rel(out.total, case.loss) < 1e-9,
            "{}: loss {} vs {}",
            case.name,
            out.total,
            case.loss
        );
        assert!(
            rel(out.hard, case.hard) < 1e-9,
            "{}: hard {} vs {}",
            case.name,
            out.hard,
            case.hard
        );
        assert!(
            rel(out.soft, case.soft) < 1e-9,
            "{}: soft {} vs {}",
            case.name,
            out.soft,
            case.soft
        );
        // Gradient: every element within 1e-9 of the largest reference magnitude (elements near 0
        // have no meaningful relative error).
        let scale = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (a, b) in out.grad.iter().zip(&g) {
            assert!(
                (a - b).abs() <= 1e-9 * scale,
                "{}: grad {a} vs {b}",
                case.name
            );
        }
    }
}

#[test]
fn kd_matches_torch_f32() {
    for case in &CASES {
        let (s, t, y, g) = load(case);
        let kd = KdLoss::<f32>::new(case.temperature, case.alpha).unwrap();
        let out = kd
            .loss(&s.mapv(|v| v as f32), &t.mapv(|v| v as f32), &y)
            .unwrap();
        assert!(
            rel(f64::from(out.total), case.loss) < 1e-5,
            "{}: loss {} vs {}",
            case.name,
            out.total,
            case.loss
        );
        assert!(
            rel(f64::from(out.hard), case.hard) < 1e-5,
            "{}: hard",
            case.name
        );
        assert!(
            rel(f64::from(out.soft), case.soft) < 1e-5,
            "{}: soft",
            case.name
        );
        let scale = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (a, b) in out.grad.iter().zip(&g) {
            assert!(
                (f64::from(*a) - b).abs() <= 1e-5 * scale,
                "{}: grad {a} vs {b}",
                case.name
            );
        }
    }
}

#[test]
fn kd_is_stable_for_logits_of_magnitude_1e3() {
    let (s, t, y, _) = load(&CASES[2]);
    for factor in [1.0, 3.0, 10.0] {
        let kd = KdLoss::<f32>::new(3.0, 0.3).unwrap();
        let out = kd
            .loss(
                &s.mapv(|v| (v * factor) as f32),
                &t.mapv(|v| (v * factor) as f32),
                &y,
            )
            .unwrap();
        let max = s.iter().fold(0.0f64, |m, v| m.max((v * factor).abs()));
        assert!(
            out.total.is_finite() && out.grad.iter().all(|g| g.is_finite()),
            "max |logit| {max}"
        );
    }
}

#[test]
fn kd_parameters_are_checked_at_construction() {
    assert!(KdLoss::<f32>::new(0.0, 0.5).is_err());
    assert!(KdLoss::<f32>::new(-2.0, 0.5).is_err());
    assert!(KdLoss::<f32>::new(f64::NAN, 0.5).is_err());
    assert!(KdLoss::<f32>::new(f64::INFINITY, 0.5).is_err());
    assert!(KdLoss::<f32>::new(2.0, -0.1).is_err());
    assert!(KdLoss::<f32>::new(2.0, 1.1).is_err());
    assert!(KdLoss::<f32>::new(2.0, f64::NAN).is_err());
    assert!(KdLoss::<f32>::new(2.0, 0.0).is_ok() && KdLoss::<f32>::new(2.0, 1.0).is_ok());
}

#[test]
fn kd_reader_agrees_with_ndarray_npy() {
    // Our own .npy reader (for stored teacher logits) reads the torch files the same way.
    let (s, _, y, _) = load(&CASES[0]);
    let ours = modelopt_distill::read_npy_2d::<f64>(data(CASES[0].name, "student")).unwrap();
    assert_eq!(ours, s);
    assert_eq!(
        modelopt_distill::read_npy_labels(data(CASES[0].name, "labels")).unwrap(),
        y
    );
}
