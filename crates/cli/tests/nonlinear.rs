//! `modelopt quantize --type nf4|fp4|kmeansN` end to end: report, compare, inspect, usage errors.

mod common;

use common::{files_in, modelopt, ok, ok_json, small_model, temp_dir};
use modelopt_io::Checkpoint;

fn find(v: &serde_json::Value, name: &str) -> serde_json::Value {
    v["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap()
        .clone()
}

/// (type, extra flags, name in the report, dtype compare shows, SQNR floor, bits/weight of blk.0.w)
type Case = (
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static str,
    f64,
    f64,
);

#[test]
fn nonlinear_types_round_trip_through_compare_and_inspect() {
    let dir = temp_dir("nonlinear");
    let input = dir.join("m.safetensors");
    small_model(&input);
    let p = input.to_str().unwrap();
    // (type, extra flags, name in the report, dtype compare shows, SQNR floor, bits per weight of blk.0.w)
    let cases: [Case; 5] = [
        ("nf4", &[], "nf4", "nf4", 17.0, 4.5),
        ("fp4", &["--block-size", "128"], "fp4", "fp4", 15.0, 4.25),
        (
            "nf4",
            &["--double-quant"],
            "nf4+dq",
            "nf4",
            17.0,
            4.0 + (512.0 * 8.0 + 2.0 * 32.0 + 32.0 + 256.0 * 32.0) / 32768.0,
        ),
        (
            "kmeans4",
            &[],
            "kmeans4",
            "codebook",
            18.0,
            4.5 + 16.0 * 32.0 / 32768.0,
        ),
        (
            "kmeans3",
            &[],
            "kmeans3",
            "codebook",
            12.0,
            3.5 + 8.0 * 32.0 / 32768.0,
        ),
    ];
    for (ty, extra, name, dtype, floor, bpw) in cases {
        let out = dir.join(format!("m-{ty}{}.safetensors", extra.len()));
        let o = out.to_str().unwrap();
        let mut args = vec!["quantize", p, "-o", o, "--type", ty, "--json"];
        args.extend(extra);
        let rep = ok_json(&args);
        let cmp = ok_json(&["compare", p, o, "--json"]);
        for t in ["blk.0.w", "blk.0.h", "odd"] {
            let r = find(&rep, t);
            assert_eq!(r["type"], name, "{ty} {t}");
            let a = r["sqnr_db"].as_f64().unwrap();
            let c = find(&cmp, t);
            assert_eq!(c["dtype_b"], dtype, "{ty} {t}");
            let b = c["sqnr_db"].as_f64().unwrap();
            assert!(
                (a - b).abs() < 1e-6 * a,
                "{ty} {t}: report {a} vs compare {b}"
            );
            assert!(a > floor, "{ty} {t}: {a} dB");
        }
        // blk.0.w is 64 x 512 f32: the stored bytes give the bits per weight.
        let w = find(&rep, "blk.0.w");
        let got = w["bytes_after"].as_f64().unwrap() * 8.0 / 32768.0;
        assert!(
            (got - bpw).abs() < 1e-9,
            "{ty} {extra:?}: {got} bits/weight, expected {bpw}"
        );
        let insp = ok_json(&["inspect", o, "--json"]);
        assert_eq!(
            insp["total_tensors"], 5,
            "companions fold into their tensor"
        );
        let c = Checkpoint::open(&out).unwrap();
        assert_eq!(c.tensor_f32("blk.0.w").unwrap().len(), 32768);
        // A nonlinear file re-quantizes to GGUF (dequantize, then quantize).
        ok(&[
            "quantize",
            o,
            "-o",
            dir.join(format!("{ty}.gguf")).to_str().unwrap(),
            "--type",
            "q8_0",
        ]);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn nonlinear_usage_errors_exit_2_and_write_nothing() {
    let dir = temp_dir("nonlinear-usage");
    let input = dir.join("m.safetensors");
    small_model(&input);
    let p = input.to_str().unwrap();
    let st = dir.join("o.safetensors");
    let st = st.to_str().unwrap();
    let gguf = dir.join("o.gguf");
    for args in [
        vec!["quantize", p, "-o", gguf.to_str().unwrap(), "--type", "nf4"],
        vec![
            "quantize",
            p,
            "-o",
            st,
            "--type",
            "nf4",
            "--block-size",
            "48",
        ],
        vec![
            "quantize",
            p,
            "-o",
            st,
            "--type",
            "fp4",
            "--block-size",
            "16",
        ],
        vec![
            "quantize",
            p,
            "-o",
            st,
            "--type",
            "kmeans4",
            "--block-size",
            "0",
        ],
        vec!["quantize", p, "-o", st, "--type", "kmeans9"],
    ] {
        let out = modelopt(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(files_in(&dir), ["m.safetensors"]);
    std::fs::remove_dir_all(dir).unwrap();
}
