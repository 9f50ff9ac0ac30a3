//! The `modelopt` binary end to end: inspect, quantize, compare, exit statuses, atomic output.

mod common;

use common::{files_in, modelopt, ok, ok_json, small_model, temp_dir};
use modelopt_io::{Checkpoint, DType};
use modelopt_quantize::ggml::GgmlType;

const GGML_TYPES: [&str; 12] = [
    "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl",
    "iq4_xs",
];

#[test]
fn inspect_lists_every_tensor_and_totals() {
    let dir = temp_dir("inspect");
    let input = dir.join("m.safetensors");
    small_model(&input);
    let p = input.to_str().unwrap();
    let text = ok(&["inspect", p]);
    for name in ["blk.0.w", "blk.0.h", "blk.0.bias", "ids", "odd"] {
        assert!(text.contains(name), "{text}");
    }
    assert!(text.contains("total: 5 tensors"), "{text}");
    let j = ok_json(&["inspect", p, "--json"]);
    assert_eq!(j["format"], "safetensors");
    assert_eq!(j["total_tensors"], 5);
    let params = 64 * 512 + 32 * 384 + 64 + 5 + 8 * 40;
    assert_eq!(j["total_parameters"], params);
    let h = j["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "blk.0.h")
        .unwrap();
    assert_eq!(
        (h["dtype"].as_str(), h["bytes"].as_u64()),
        (Some("F16"), Some(32 * 384 * 2))
    );
    assert_eq!(h["shape"], serde_json::json!([32, 384]));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn quantize_every_ggml_type_to_both_formats_and_compare_agrees() {
    let dir = temp_dir("quantize");
    let input = dir.join("m.safetensors");
    small_model(&input);
    let p = input.to_str().unwrap();
    for ty in GGML_TYPES {
        for ext in ["gguf", "safetensors"] {
            let out = dir.join(format!("m-{ty}.{ext}"));
            let o = out.to_str().unwrap();
            let rep = ok_json(&["quantize", p, "-o", o, "--type", ty, "--json"]);
            let rows = rep["tensors"].as_array().unwrap();
            let row = |n: &str| rows.iter().find(|r| r["name"] == n).unwrap().clone();
            // The reader sees the declared types.
            let c = Checkpoint::open(&out).unwrap();
            let w = c
                .tensors()
                .into_iter()
                .find(|t| t.info.name == "blk.0.w")
                .unwrap();
            let want = GgmlType::ALL
                .into_iter()
                .find(|t| t.name().eq_ignore_ascii_case(ty))
                .unwrap();
            assert_eq!(w.info.dtype, DType::Ggml(want), "{ty} {ext}");
            assert_eq!(w.info.shape, vec![64, 512]);
            // K types fall back on the 384-wide rows and say so.
            let h = row("blk.0.h");
            match ty {
                "q4_k" => assert_eq!(
                    (
                        h["type"].as_str(),
                        h["note"].as_str().unwrap().contains("q5_0")
                    ),
                    (Some("q5_0"), true)
                ),
                "q6_k" => assert_eq!(h["type"], "q8_0"),
                "q5_k" => assert_eq!(h["type"], "q5_1"),
                // As llama.cpp: q2_K, q3_K and iq4_xs fall back to iq4_nl.
                "q2_k" | "q3_k" | "iq4_xs" => assert_eq!(h["type"], "iq4_nl"),
                _ => assert_eq!(h["type"].as_str().unwrap().to_lowercase(), ty),
            }
            // 1-D, integer and odd-row tensors are copied: F32 in GGUF, as stored in safetensors.
            assert_eq!(row("ids")["type"], "I64"); // GGUF has I64: kept as it is

            assert_eq!(row("odd")["type"], "F32");
            assert!(row("odd")["sqnr_db"].is_null());
            // compare reads the output back through an independent path: same SQNR.
            let cmp = ok_json(&["compare", p, o, "--json"]);
            let ct = cmp["tensors"].as_array().unwrap();
            for name in ["blk.0.w", "blk.0.h"] {
                let a = row(name)["sqnr_db"].as_f64().unwrap();
                let b = ct.iter().find(|r| r["name"] == name).unwrap()["sqnr_db"]
                    .as_f64()
                    .unwrap();
                assert!(
                    (a - b).abs() < 1e-6 * a.abs(),
                    "{ty} {ext} {name}: {a} vs {b}"
                );
                let floor = match ty {
                    "q8_0" | "q6_k" => 35.0,
                    // Q2_K/Q3_K on the 512-wide rows; the 384-wide rows fall back to iq4_nl.
                    "q2_k" if name == "blk.0.w" => 5.0,
                    "q3_k" if name == "blk.0.w" => 10.0,
                    _ => 15.0,
                };
                assert!(a > floor, "{ty} {name}: {a} dB");
            }
            let bias = ct.iter().find(|r| r["name"] == "blk.0.bias").unwrap();
            assert_eq!(bias["max_abs_error"], 0.0);
            let t = &rep["totals"];
            assert!(t["compression_ratio"].as_f64().unwrap() > 1.5, "{ty}: {t}");
            assert_eq!(t["quantized"], 2);
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn int8_and_int4_to_safetensors_read_back_losslessly() {
    let dir = temp_dir("uniform");
    let input = dir.join("m.safetensors");
    small_model(&input);
    let p = input.to_str().unwrap();
    for (ty, floor) in [("int8", 35.0), ("int4", 12.0)] {
        let out = dir.join(format!("m-{ty}.safetensors"));
        let o = out.to_str().unwrap();
        let rep = ok_json(&[
            "quantize",
            p,
            "-o",
            o,
            "--type",
            ty,
            "--group-size",
            "64",
            "--json",
        ]);
        let cmp = ok_json(&["compare", p, o, "--json"]);
        for name in ["blk.0.w", "blk.0.h"] {
            let r = rep["tensors"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .unwrap();
            assert_eq!(r["type"], ty);
            let a = r["sqnr_db"].as_f64().unwrap();
            let c = cmp["tensors"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .unwrap();
            assert_eq!(c["dtype_b"], ty);
            let b = c["sqnr_db"].as_f64().unwrap();
            assert!((a - b).abs() < 1e-6 * a, "{ty} {name}: {a} vs {b}");
            assert!(a > floor, "{ty} {name}: {a}");
        }
        let insp = ok_json(&["inspect", o, "--json"]);
        assert_eq!(
            insp["total_tensors"], 5,
            "companion .scale tensors are folded into their tensor"
        );
        // Re-quantizing a quantized file into GGUF works (dequantize, then quantize).
        let g = dir.join(format!("m-{ty}.gguf"));
        ok(&["quantize", o, "-o", g.to_str().unwrap(), "--type", "q8_0"]);
    }
    let e = modelopt(&[
        "quantize",
        p,
        "-o",
        dir.join("x.gguf").to_str().unwrap(),
        "--type",
        "int8",
    ]);
    assert_eq!(e.status.code(), Some(2));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn keep_patterns_and_threads() {
    let dir = temp_dir("keep");
    let input = dir.join("m.safetensors");
    small_model(&input);
    let p = input.to_str().unwrap();
    let o1 = dir.join("a.gguf");
    let rep = ok_json(&[
        "quantize",
        p,
        "-o",
        o1.to_str().unwrap(),
        "--type",
        "q4_0",
        "--keep",
        "*.h",
        "--keep",
        "nothing",
        "--threads",
        "1",
        "--json",
    ]);
    let h = rep["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "blk.0.h")
        .unwrap()
        .clone();
    assert_eq!(h["type"], "F32");
    assert!(h["note"].as_str().unwrap().contains("--keep *.h"));
    let o2 = dir.join("b.gguf");
    ok(&[
        "quantize",
        p,
        "-o",
        o2.to_str().unwrap(),
        "--type",
        "q4_0",
        "--keep",
        "*.h",
        "--threads",
        "2",
    ]);
    assert_eq!(
        std::fs::read(&o1).unwrap(),
        std::fs::read(&o2).unwrap(),
        "thread count changed the output"
    );
    // --format overrides the extension
    let o3 = dir.join("c.bin");
    ok(&[
        "quantize",
        p,
        "-o",
        o3.to_str().unwrap(),
        "--type",
        "q8_0",
        "--format",
        "gguf",
    ]);
    assert_eq!(&std::fs::read(&o3).unwrap()[..4], b"GGUF");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn usage_errors_exit_2() {
    let dir = temp_dir("usage");
    let input = dir.join("m.safetensors");
    small_model(&input);
    let p = input.to_str().unwrap();
    let o = dir.join("o.gguf");
    let o = o.to_str().unwrap();
    for args in [
        vec!["quantize", p, "-o", o, "--type", "q3_x"],
        vec!["quantize", p, "--type", "q8_0"],
        vec![
            "quantize",
            p,
            "-o",
            dir.join("o.bin").to_str().unwrap(),
            "--type",
            "q8_0",
        ],
        vec!["quantize", p, "-o", o, "--type", "q8_0", "--threads", "0"],
        vec![
            "quantize",
            p,
            "-o",
            o,
            "--type",
            "int4",
            "--group-size",
            "0",
            "--format",
            "safetensors",
        ],
        vec!["frobnicate"],
        vec![],
        vec!["inspect"],
        vec!["compare", p],
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

#[test]
fn refuses_to_write_over_its_input() {
    let dir = temp_dir("overwrite");
    let input = dir.join("m.safetensors");
    small_model(&input);
    let before = std::fs::read(&input).unwrap();
    let p = input.to_str().unwrap();
    let out = modelopt(&[
        "quantize",
        p,
        "-o",
        p,
        "--type",
        "q8_0",
        "--format",
        "safetensors",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("over the input") && e.contains("m.safetensors"),
        "{e}"
    );
    // through another spelling of the same path, too
    let other = dir.join(".").join("m.safetensors");
    let out = modelopt(&[
        "quantize",
        p,
        "-o",
        other.to_str().unwrap(),
        "--type",
        "q8_0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read(&input).unwrap(), before);
    assert_eq!(files_in(&dir), ["m.safetensors"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn corrupt_input_exits_1_with_one_line_naming_the_file() {
    let dir = temp_dir("corrupt");
    let input = dir.join("m.safetensors");
    small_model(&input);
    let good = std::fs::read(&input).unwrap();
    let bad = dir.join("bad.safetensors");
    std::fs::write(&bad, &good[..good.len() - 3]).unwrap(); // truncated
    let b = bad.to_str().unwrap();
    let p = input.to_str().unwrap();
    let o = dir.join("o.gguf");
    for args in [
        vec!["inspect", b],
        vec!["quantize", b, "-o", o.to_str().unwrap(), "--type", "q4_0"],
        vec!["compare", p, b],
        vec!["inspect", dir.join("missing.gguf").to_str().unwrap()],
    ] {
        let out = modelopt(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
        assert!(
            e.contains(".safetensors") || e.contains("missing.gguf"),
            "{e}"
        );
    }
    let mut gguf = b"GGUF".to_vec();
    gguf.extend_from_slice(&3u32.to_le_bytes());
    gguf.extend_from_slice(&u64::MAX.to_le_bytes());
    gguf.extend_from_slice(&0u64.to_le_bytes());
    let g = dir.join("bad.gguf");
    std::fs::write(&g, gguf).unwrap();
    let out = modelopt(&["inspect", g.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("absurd tensor count"));
    assert_eq!(
        files_in(&dir),
        ["bad.gguf", "bad.safetensors", "m.safetensors"]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_failure_midway_leaves_no_partial_output() {
    use modelopt_io::{SafetensorsWriter, TensorInfo, f32_to_bytes};
    let dir = temp_dir("midway");
    let input = dir.join("nan.safetensors");
    let tensors = vec![
        TensorInfo::new("good", DType::F32, vec![4, 64]),
        TensorInfo::new("bad", DType::F32, vec![4, 64]),
    ];
    let mut w = SafetensorsWriter::create(&input, tensors, Default::default()).unwrap();
    w.write_tensor("good", &f32_to_bytes(&common::values(256, 9, 1.0)))
        .unwrap();
    let mut v = common::values(256, 10, 1.0);
    v[77] = f32::NAN;
    w.write_tensor("bad", &f32_to_bytes(&v)).unwrap();
    w.finish().unwrap();
    let out_path = dir.join("out.gguf");
    std::fs::write(&out_path, b"old").unwrap();
    for ty in ["q4_0", "int8"] {
        let o = if ty == "int8" {
            dir.join("out.safetensors")
        } else {
            out_path.clone()
        };
        let out = modelopt(&[
            "quantize",
            input.to_str().unwrap(),
            "-o",
            o.to_str().unwrap(),
            "--type",
            ty,
        ]);
        assert_eq!(out.status.code(), Some(1), "{ty}");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains("`bad`") && e.contains("nan.safetensors"), "{e}");
    }
    assert_eq!(std::fs::read(&out_path).unwrap(), b"old");
    assert_eq!(files_in(&dir), ["nan.safetensors", "out.gguf"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn gguf_py_dequantizes_our_output_to_the_values_we_read() {
    if !common::python_has("gguf, numpy, safetensors") {
        return;
    }
    use modelopt_io::{SafetensorsWriter, TensorInfo, f32_to_bytes};
    let dir = temp_dir("ggufpy");
    let input = dir.join("m.safetensors");
    small_model(&input);
    for ty in GGML_TYPES {
        let out = dir.join(format!("{ty}.gguf"));
        ok(&[
            "quantize",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--type",
            ty,
        ]);
        // Our reading of every tensor, as f32, for python to compare with.
        let c = Checkpoint::open(&out).unwrap();
        let floats: Vec<_> = c.tensors().into_iter().filter(|t| t.is_float()).collect();
        let infos: Vec<TensorInfo> = floats
            .iter()
            .map(|t| TensorInfo::new(t.info.name.clone(), DType::F32, t.info.shape.clone()))
            .collect();
        let ours = dir.join(format!("{ty}-ours.safetensors"));
        let mut w = SafetensorsWriter::create(&ours, infos, Default::default()).unwrap();
        for t in &floats {
            w.write_tensor(
                &t.info.name,
                &f32_to_bytes(&c.tensor_f32(&t.info.name).unwrap()),
            )
            .unwrap();
        }
        w.finish().unwrap();
        let script = r#"
import sys, numpy as np, gguf
from safetensors.numpy import load_file
r = gguf.GGUFReader(sys.argv[1])
ours = load_file(sys.argv[2])
assert r.fields['general.quantization_version'].contents() == 2
seen = 0
for t in r.tensors:
    if t.name not in ours:
        continue
    x = gguf.quants.dequantize(t.data, t.tensor_type).reshape(ours[t.name].shape)
    assert np.array_equal(x.astype(np.float32), ours[t.name]), t.name
    seen += 1
print(seen)
"#;
        let n = common::python(script, &[out.to_str().unwrap(), ours.to_str().unwrap()]);
        assert_eq!(n.trim(), "4", "{ty}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
