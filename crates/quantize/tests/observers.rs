//! Observer semantics: torch's moving average, running min-max, histogram calibrators.

use modelopt_quantize::QuantScheme;
use modelopt_quantize::observer::{
    HistogramObserver, MinMaxObserver, MovingAverageMinMaxObserver, Observer,
};
use ndarray::{Array1, array};
use rand::{RngExt, SeedableRng, rngs::StdRng};

#[test]
fn moving_average_follows_torch_update_rule() {
    // torch: min = min + c * (batch_min - min), first batch taken as is (c = 0.01).
    let mut o = MovingAverageMinMaxObserver::torch_default();
    let batches = [
        array![-1.0f32, 2.0],
        array![-3.0f32, 4.0],
        array![0.5f32, 1.0],
    ];
    let (mut lo, mut hi) = (0f32, 0f32);
    for (i, b) in batches.iter().enumerate() {
        o.observe(b).unwrap();
        let (bl, bh) = (
            b.iter().copied().fold(f32::INFINITY, f32::min),
            b.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        );
        if i == 0 {
            (lo, hi) = (bl, bh);
        } else {
            lo += 0.01 * (bl - lo);
            hi += 0.01 * (bh - hi);
        }
    }
    assert_eq!(o.range().unwrap(), (vec![lo], vec![hi]));
}

#[test]
fn min_max_observer_params_equal_direct_quantization() {
    let x = array![[0.1f32, -0.7, 0.3], [1.2, 0.0, -0.2]];
    let mut o = MinMaxObserver::per_channel(0);
    o.observe(&x.slice(ndarray::s![.., ..2])).unwrap();
    o.observe(&x.slice(ndarray::s![.., 2..])).unwrap();
    let s = QuantScheme::torch(true, true)
        .per_channel(0)
        .check()
        .unwrap();
    assert_eq!(
        &o.quant_params(&s).unwrap(),
        s.quantize(&x).unwrap().params()
    );
}

fn gaussian(n: usize, seed: u64) -> Array1<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array1::from_shape_fn(n, |_| {
        // Box-Muller
        let (u, v): (f32, f32) = (rng.random::<f32>().max(1e-12), rng.random());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    })
}

#[test]
fn histogram_calibrators_clip_gaussian_tails_sensibly() {
    let mut kl = HistogramObserver::entropy();
    let mut mse = HistogramObserver::mse();
    let mut pct = HistogramObserver::percentile(99.99).unwrap();
    let mut max = 0f32;
    for seed in 0..4 {
        let b = gaussian(50_000, seed);
        max = max.max(b.iter().fold(0f32, |m, x| m.max(x.abs())));
        kl.observe(&b).unwrap();
        mse.observe(&b).unwrap();
        pct.observe(&b).unwrap();
    }
    let (k, m, p) = (kl.amax().unwrap(), mse.amax().unwrap(), pct.amax().unwrap());
    let max = f64::from(max);
    // Each clips below the absolute maximum but keeps the bulk (|x| < 2.5 sigma) unclipped.
    for (name, a) in [("entropy", k), ("mse", m), ("percentile", p)] {
        assert!(a > 2.5 && a <= max, "{name}: amax {a}, max {max}");
    }
    // 99.99th percentile of |N(0,1)| is about 3.89.
    assert!((p - 3.89).abs() < 0.2, "percentile amax {p}");
    // With 4 bits the MSE-optimal clip is much tighter than with 8 bits.
    let m4 = mse.amax_for(&QuantScheme::int4().check().unwrap()).unwrap();
    assert!(m4 < m, "int4 {m4} vs int8 {m}");
}

#[test]
fn histogram_grows_with_larger_batches() {
    let mut o = HistogramObserver::percentile(100.0).unwrap();
    o.observe(&array![1.0f32, -0.5]).unwrap();
    let w = o.bin_width();
    o.observe(&array![3.0f32]).unwrap();
    assert_eq!(o.bin_width(), w);
    assert!(o.counts().len() >= 3 * 2048);
    assert_eq!(o.counts().iter().sum::<u64>(), 3);
}

/// Reference thresholds computed by NVIDIA pytorch-quantization's `_compute_amax_entropy`,
/// `_compute_amax_percentile` and `_compute_amax_mse` (calib/histogram.py, run with numpy in place
/// of scipy/torch) on a 2048-bin histogram of |x| for 200k N(0,1) + 20k 2*t(3) samples.
/// tests/data/hist_expected.npy = [bin width, entropy 8-bit signed, entropy 4-bit signed,
/// entropy 8-bit unsigned, percentile 99.9, percentile 99.99, mse 8-bit signed, mse 4-bit signed].
#[test]
fn histogram_methods_match_pytorch_quantization() {
    use modelopt_quantize::observer::HistogramMethod;
    use ndarray_npy::read_npy;
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let counts: ndarray::Array1<i64> = read_npy(dir.join("hist_counts.npy")).unwrap();
    let expected: ndarray::Array1<f64> = read_npy(dir.join("hist_expected.npy")).unwrap();
    let counts: Vec<u64> = counts.iter().map(|&c| c as u64).collect();
    let width = expected[0];
    let int8 = QuantScheme::int8().check().unwrap();
    let int4 = QuantScheme::int4().check().unwrap();
    let uint8 = QuantScheme::int8().signed(false).check().unwrap();
    let cases = [
        (HistogramMethod::Entropy, int8, expected[1]),
        (HistogramMethod::Entropy, int4, expected[2]),
        (HistogramMethod::Entropy, uint8, expected[3]),
        (HistogramMethod::Percentile(99.9), int8, expected[4]),
        (HistogramMethod::Percentile(99.99), int8, expected[5]),
        (HistogramMethod::Mse, int8, expected[6]),
        (HistogramMethod::Mse, int4, expected[7]),
    ];
    for (method, scheme, want) in cases {
        let o = HistogramObserver::from_counts(method, counts.clone(), width).unwrap();
        let got = o.amax_for(&scheme).unwrap();
        assert!(
            (got - want).abs() <= 1e-9 * want,
            "{method:?} {} bits: {got} vs reference {want} (bins {} vs {})",
            scheme.bits(),
            got / width,
            want / width
        );
    }
}
