//! Times the teacher CNN's convolutions (Conv 1->64 3x3 on 28x28 and Conv 64->128 3x3 on 13x13,
//! batch 64 by default) in f32 and through `QuantizedConv2d`, one thread; prints one JSON object
//! per (layer, kernel) with the median wall and thread-CPU time per call.
//! `benches/compare/qconv.py` runs it beside torch's f32 and static int8 convolutions.
//!
//! Run: `cargo run --release --example qconv -- [--batch 64] [--seconds 0.5]`

use std::time::Instant;

use cpu_time::ThreadTime;
use modelopt::kernels::{ActScale, Par};
use modelopt::nn::Conv2d;
use modelopt::quantized::{LinearScheme, QuantizedConv2d};
use ndarray::Array4;
use rand::{RngExt, SeedableRng, rngs::StdRng};

type Error = Box<dyn std::error::Error>;

/// Median wall and CPU seconds per call of `f`, run for about `seconds`.
fn measure(seconds: f64, mut f: impl FnMut()) -> (f64, f64) {
    f(); // warm caches and pages
    let (mut walls, mut cpus) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds || walls.len() < 5 {
        let (w0, c0) = (Instant::now(), ThreadTime::now());
        f();
        cpus.push(c0.elapsed().as_secs_f64());
        walls.push(w0.elapsed().as_secs_f64());
    }
    walls.sort_by(f64::total_cmp);
    cpus.sort_by(f64::total_cmp);
    (walls[walls.len() / 2], cpus[cpus.len() / 2])
}

fn main() -> Result<(), Error> {
    let (mut batch, mut seconds) = (64usize, 0.5f64);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--batch" => batch = v()?.parse()?,
            "--seconds" => seconds = v()?.parse()?,
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    let mut rng = StdRng::seed_from_u64(0);
    for (name, cin, cout, size) in [
        ("conv1 1->64 28x28", 1, 64, 28),
        ("conv2 64->128 13x13", 64, 128, 13),
    ] {
        let conv = Conv2d::<f32>::builder(cin, cout, 3).build(&mut rng)?;
        // Post-ReLU-like inputs in [0, 1).
        let x = Array4::from_shape_simple_fn((batch, cin, size, size), || rng.random::<f32>());
        let report = |kernel: &str, (wall, cpu): (f64, f64)| {
            println!(
                "{{\"layer\": \"{name}\", \"kernel\": \"{kernel}\", \"batch\": {batch}, \"wall_ms\": {:.4}, \"cpu_ms\": {:.4}}}",
                wall * 1e3,
                cpu * 1e3
            );
        };
        report(
            "f32",
            measure(seconds, || drop(conv.forward(&x).expect("f32 conv"))),
        );
        let mut stat = QuantizedConv2d::from_conv(&conv, LinearScheme::W8A8Static)?;
        stat.set_input_scale(ActScale::per_tensor(1.0 / 255.0, 0)?)?;
        report(
            "w8a8-static",
            measure(seconds, || {
                drop(stat.forward(&x, Par::Seq).expect("static"))
            }),
        );
        let dynamic = QuantizedConv2d::from_conv(&conv, LinearScheme::W8A8Dynamic)?;
        report(
            "w8a8-dynamic",
            measure(seconds, || {
                drop(dynamic.forward(&x, Par::Seq).expect("dynamic"))
            }),
        );
    }
    Ok(())
}
