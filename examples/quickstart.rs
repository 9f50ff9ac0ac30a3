//! Quantize a realistic heavy-tailed weight matrix with each uniform scheme and print a table.
//!
//! `cargo run --release --example quickstart`

use std::time::Instant;

use modelopt::ndarray::Array2;
use modelopt::quantize::observer::{HistogramObserver, Observer};
use modelopt::quantize::{QuantScheme, Result};
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// A 1024x1024 weight with Student-t (4 degrees of freedom) entries and per-row magnitudes that
/// vary 4x, like the outlier-heavy rows of a transformer projection.
fn heavy_tailed_weights(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut normal = move || {
        let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    };
    let row_scale: Vec<f64> = (0..rows)
        .map(|r| 0.01 * (1.0 + 3.0 * ((r * 37) % 101) as f64 / 100.0))
        .collect();
    Array2::from_shape_fn((rows, cols), |(r, _)| {
        let z = normal();
        let chi2: f64 = (0..4).map(|_| normal().powi(2)).sum();
        (row_scale[r] * z / (chi2 / 4.0).sqrt()) as f32
    })
}

fn main() -> Result<()> {
    let w = heavy_tailed_weights(1024, 1024, 42);
    println!(
        "weights: 1024x1024 f32, Student-t(4) entries, {} bytes\n",
        w.len() * 4
    );
    println!(
        "{:<40} {:>11} {:>10} {:>9} {:>9}",
        "scheme", "bits/weight", "bytes", "SQNR dB", "time ms"
    );
    let schemes: Vec<(&str, QuantScheme)> = vec![
        ("int8 symmetric, per tensor", QuantScheme::int8()),
        (
            "int8 symmetric, per channel",
            QuantScheme::int8().per_channel(0),
        ),
        (
            "int8 affine, per channel",
            QuantScheme::int8().affine().per_channel(0),
        ),
        (
            "torch qint8 symmetric, per channel",
            QuantScheme::torch_qint8_symmetric().per_channel(0),
        ),
        (
            "int4 symmetric, per channel",
            QuantScheme::int4().per_channel(0),
        ),
        (
            "int4 symmetric, group 128",
            QuantScheme::int4().per_group(1, 128),
        ),
        (
            "int4 symmetric, group 32",
            QuantScheme::int4().per_group(1, 32),
        ),
        (
            "uint4 affine, group 32",
            QuantScheme::int4().signed(false).affine().per_group(1, 32),
        ),
        (
            "int3 symmetric, group 32",
            QuantScheme::new(3).per_group(1, 32),
        ),
        (
            "uint3 affine, group 32",
            QuantScheme::new(3).signed(false).affine().per_group(1, 32),
        ),
        (
            "uint2 affine, group 32",
            QuantScheme::new(2).signed(false).affine().per_group(1, 32),
        ),
    ];
    for (name, scheme) in schemes {
        scheme.quantize(&w)?; // warm-up: first-touch page faults are not the scheme's cost
        let t = Instant::now();
        let q = scheme.quantize(&w)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let m = q.error_metrics(&w)?;
        println!(
            "{name:<40} {:>11.3} {:>10} {:>9.2} {:>9.3}",
            q.bits_per_weight(),
            q.storage_bytes(),
            m.sqnr_db,
            ms
        );
    }
    // Calibrated clipping: the histogram observers pick a threshold below the outliers.
    for (name, mut obs) in [
        (
            "int8 per tensor, entropy (KL) clip",
            HistogramObserver::entropy(),
        ),
        ("int8 per tensor, MSE clip", HistogramObserver::mse()),
        (
            "int8 per tensor, 99.99th pct clip",
            HistogramObserver::percentile(99.99)?,
        ),
    ] {
        let scheme = QuantScheme::int8().check()?;
        let t = Instant::now();
        obs.observe(&w)?;
        let q = scheme.quantize_with(&w, &obs.quant_params(&scheme)?)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let m = q.error_metrics(&w)?;
        println!(
            "{name:<40} {:>11.3} {:>10} {:>9.2} {:>9.3}",
            q.bits_per_weight(),
            q.storage_bytes(),
            m.sqnr_db,
            ms
        );
    }
    Ok(())
}
