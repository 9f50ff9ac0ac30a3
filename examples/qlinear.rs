//! Times one Linear layer (default 4096 x 4096) in f32 and through the quantized kernels, one
//! thread, at several batch sizes; prints one JSON object per (kernel, batch) with the median wall
//! and thread-CPU time per call. `benches/compare/qlinear.py` runs it beside torch.
//!
//! Run: `cargo run --release --example qlinear -- [--n 4096] [--k 4096] [--batches 1,16,64]
//! [--seconds 0.5] [--kernels f32,w8a8,int8,q8_0,q4_0,q4_K,int4,readsum]` (`readsum`, a 512 MiB
//! read-bandwidth reference, only when named)

use std::time::Instant;

use cpu_time::ThreadTime;
use modelopt::kernels::{
    ActScale, Epilogue, PackedBlocks, PackedI8, Par, QuantizedActivations, w8a8, w8a8_with,
};
use modelopt::nn::Dense;
use modelopt::quantize::ggml::{self, GgmlType};
use ndarray::{Array1, Array2};
use rand::{RngExt, SeedableRng, rngs::StdRng};

type Error = Box<dyn std::error::Error>;

/// Median wall and CPU seconds per call of `f`, run for about `seconds`.
fn measure(seconds: f64, mut f: impl FnMut()) -> (f64, f64, usize) {
    f(); // warm caches and pages
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds || walls.len() < 5 {
        let (w0, c0) = (Instant::now(), ThreadTime::now());
        f();
        cpus.push(c0.elapsed().as_secs_f64());
        walls.push(w0.elapsed().as_secs_f64());
    }
    walls.sort_by(f64::total_cmp);
    cpus.sort_by(f64::total_cmp);
    (walls[walls.len() / 2], cpus[cpus.len() / 2], walls.len())
}

fn main() -> Result<(), Error> {
    let (mut n, mut k, mut seconds) = (4096usize, 4096usize, 0.5f64);
    let mut batches = vec![1usize, 16, 64];
    let mut kernels: Option<Vec<String>> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--n" => n = v()?.parse()?,
            "--k" => k = v()?.parse()?,
            "--seconds" => seconds = v()?.parse()?,
            "--batches" => batches = v()?.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--kernels" => kernels = Some(v()?.split(',').map(String::from).collect()),
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    let wanted = |name: &str| {
        kernels
            .as_ref()
            .is_none_or(|ks| ks.iter().any(|x| x == name))
    };
    let mut rng = StdRng::seed_from_u64(0);
    let wf: Array2<f32> = Array2::from_shape_fn((n, k), |_| rng.random::<f32>() * 0.04 - 0.02);
    let dense = Dense::from_parts(wf.clone(), Array1::zeros(n))?;
    // Symmetric per-channel int8 weights.
    let mut codes = vec![0i8; n * k];
    let mut scales = vec![0f32; n];
    for (r, row) in wf.rows().into_iter().enumerate() {
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        scales[r] = amax / 127.0;
        for (c, v) in row.iter().enumerate() {
            codes[r * k + c] = (v / scales[r]).round() as i8;
        }
    }
    let packed = PackedI8::new(&codes, n, k)?;
    let epi = Epilogue::new(scales)?.bias(vec![0.0; n])?;
    let wflat: Vec<f32> = wf.iter().copied().collect();
    let mut blocks = Vec::new();
    for (name, ty) in [
        ("q8_0", GgmlType::Q8_0),
        ("q4_0", GgmlType::Q4_0),
        ("iq4_nl", GgmlType::IQ4_NL),
        ("q4_K", GgmlType::Q4_K),
    ] {
        if wanted(name) {
            let bytes = ggml::quantize(ty, &wflat)?;
            blocks.push((name, PackedBlocks::from_ggml(ty, &bytes, n, k)?));
        }
    }
    if wanted("int4") {
        let g = 32;
        let mut c4 = vec![0i8; n * k];
        let mut s4 = vec![0f32; n * k / g];
        for (b, (chunk, s)) in wflat.chunks_exact(g).zip(s4.iter_mut()).enumerate() {
            *s = chunk.iter().fold(0f32, |m, v| m.max(v.abs())) / 7.0;
            for (c, v) in chunk.iter().enumerate() {
                c4[b * g + c] = if *s > 0.0 { (v / *s).round() as i8 } else { 0 };
            }
        }
        blocks.push(("int4", PackedBlocks::int4(&c4, &s4, n, k, g)?));
    }
    let report = |name: &str, batch: usize, bytes: f64, (wall, cpu, reps): (f64, f64, usize)| {
        let ops = 2.0 * (n * k * batch) as f64;
        println!(
            "{{\"kernel\":\"{name}\",\"n\":{n},\"k\":{k},\"batch\":{batch},\"wall_ms\":{:.4},\"cpu_ms\":{:.4},\"reps\":{reps},\"weight_gb_s\":{:.2},\"gop_s\":{:.1}}}",
            wall * 1e3,
            cpu * 1e3,
            bytes / cpu / 1e9,
            ops / cpu / 1e9
        );
    };
    if kernels
        .as_ref()
        .is_some_and(|ks| ks.iter().any(|x| x == "readsum"))
    {
        // The machine's read bandwidth measured the same way (thread CPU time): a vectorized sum
        // over 512 MiB, larger than the last-level cache.
        let buf: Vec<u64> = (0..1u64 << 26).collect();
        let bytes = (buf.len() * 8) as f64;
        let (wall, cpu, reps) = measure(seconds, || {
            let mut acc = [0u64; 8];
            for c in buf.chunks_exact(8) {
                for (a, v) in acc.iter_mut().zip(c) {
                    *a = a.wrapping_add(*v);
                }
            }
            std::hint::black_box(acc);
        });
        println!(
            "{{\"kernel\":\"readsum\",\"bytes\":{bytes},\"wall_ms\":{:.4},\"cpu_ms\":{:.4},\"reps\":{reps},\"gb_s\":{:.2}}}",
            wall * 1e3,
            cpu * 1e3,
            bytes / cpu / 1e9
        );
    }
    for &b in &batches {
        let x: Array2<f32> = Array2::from_shape_fn((b, k), |_| rng.random::<f32>() * 2.0 - 1.0);
        let xs: Vec<f32> = x.iter().copied().collect();
        let mut out = vec![0f32; b * n];
        if wanted("f32") {
            report(
                "f32",
                b,
                (4 * n * k) as f64,
                measure(seconds, || {
                    std::hint::black_box(dense.forward(&x).map(|_| ()).ok());
                }),
            );
        }
        if wanted("w8a8") {
            report(
                "w8a8",
                b,
                (n * k) as f64,
                measure(seconds, || {
                    w8a8(
                        Par::Seq,
                        &xs,
                        b,
                        &packed,
                        ActScale::PerToken,
                        &epi,
                        &mut out,
                    )
                    .ok();
                }),
            );
        }
        if wanted("int8") {
            let q = QuantizedActivations::quantize(&xs, b, k, ActScale::PerToken)?;
            let isa = modelopt::kernels::Isa::best();
            report(
                "int8",
                b,
                (n * k) as f64,
                measure(seconds, || {
                    w8a8_with(isa, Par::Seq, &q, &packed, &epi, &mut out).ok();
                }),
            );
        }
        for (name, packed) in &blocks {
            report(
                name,
                b,
                packed.packed_bytes() as f64,
                measure(seconds, || {
                    packed.matmul(Par::Seq, &xs, b, &mut out).ok();
                }),
            );
        }
    }
    Ok(())
}
