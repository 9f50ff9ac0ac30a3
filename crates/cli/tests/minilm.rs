//! Opt-in: the whole command path on a real checkpoint, all-MiniLM-L6-v2.
//!
//! `MODELOPT_MINILM=/path/to/model.safetensors cargo test -p modelopt-cli --test minilm -- --nocapture`
//! (`/work/shared/tools/fetch-minilm.sh DEST` downloads it). Prints the size/SQNR table.

mod common;

use common::{ok, ok_json, temp_dir};

#[test]
fn minilm_every_type() {
    let Some(model) = std::env::var_os("MODELOPT_MINILM") else {
        eprintln!("SKIPPED: set MODELOPT_MINILM to all-MiniLM-L6-v2's model.safetensors");
        return;
    };
    let model = std::path::PathBuf::from(model);
    let m = model.to_str().unwrap();
    let info = ok_json(&["inspect", m, "--json"]);
    assert_eq!(info["total_tensors"], 104);
    let params = info["total_parameters"].as_u64().unwrap();
    assert!((22_000_000..23_500_000).contains(&params), "{params}");
    let dir = temp_dir("minilm");
    println!(
        "| type | format | file bytes | ratio | bits/weight | quantized tensors | overall SQNR dB | min tensor SQNR dB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let cases = [
        ("q8_0", "gguf", 35.0),
        ("q6_k", "gguf", 30.0),
        ("q5_1", "gguf", 20.0),
        ("q5_0", "gguf", 20.0),
        ("q4_1", "gguf", 14.0),
        ("q4_0", "gguf", 14.0),
        ("q4_k", "gguf", 14.0),
        ("q8_0", "safetensors", 35.0),
        ("q4_0", "safetensors", 14.0),
        ("int8", "safetensors", 25.0),
        ("int4", "safetensors", 10.0),
    ];
    for (ty, ext, floor) in cases {
        let out = dir.join(format!("minilm-{ty}.{ext}"));
        let o = out.to_str().unwrap();
        let rep = ok_json(&["quantize", m, "-o", o, "--type", ty, "--json"]);
        let t = &rep["totals"];
        let insp = ok_json(&["inspect", o, "--json"]);
        assert_eq!(insp["total_tensors"], 104, "{ty} {ext}");
        let cmp = ok_json(&["compare", m, o, "--json"]);
        let min = cmp["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["sqnr_db"].as_f64())
            .fold(f64::INFINITY, f64::min);
        assert!(min > floor, "{ty} {ext}: weakest tensor {min} dB");
        let file_bytes = std::fs::metadata(&out).unwrap().len();
        println!(
            "| {ty} | {ext} | {file_bytes} | {:.2}x | {:.2} | {} | {:.2} | {min:.2} |",
            t["compression_ratio"].as_f64().unwrap(),
            t["bits_per_weight"].as_f64().unwrap(),
            t["quantized"],
            cmp["overall_sqnr_db"].as_f64().unwrap_or(f64::INFINITY),
        );
    }
    ok(&["inspect", dir.join("minilm-q4_k.gguf").to_str().unwrap()]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn minilm_prune_and_shrink_the_feed_forward_blocks() {
    let Some(model) = std::env::var_os("MODELOPT_MINILM") else {
        eprintln!("SKIPPED: set MODELOPT_MINILM to all-MiniLM-L6-v2's model.safetensors");
        return;
    };
    let model = std::path::PathBuf::from(model);
    let m = model.to_str().unwrap();
    let dir = temp_dir("minilm-prune");
    // 50% per tensor, then 50% of the rest: 75% of the pruned tensors' weights are zero.
    let (p1, p2) = (dir.join("p50.safetensors"), dir.join("p75.safetensors"));
    let r1 = ok_json(&[
        "prune",
        m,
        "-o",
        p1.to_str().unwrap(),
        "--amount",
        "0.5",
        "--json",
    ]);
    let r2 = ok_json(&[
        "prune",
        p1.to_str().unwrap(),
        "-o",
        p2.to_str().unwrap(),
        "--amount",
        "0.5",
        "--json",
    ]);
    let sp = |r: &serde_json::Value| r["totals"]["sparsity_of_pruned_tensors"].as_f64().unwrap();
    assert!((sp(&r1) - 0.5).abs() < 1e-3 && (sp(&r2) - 0.75).abs() < 1e-3);
    assert_eq!(r1["totals"]["pruned_tensors"], 40); // the 2-D float tensors
    // Physical removal of half of every layer's feed-forward channels.
    let s = dir.join("ffn50.safetensors");
    let spec = "encoder.layer.*.intermediate.dense.weight:0, encoder.layer.*.intermediate.dense.bias:0, encoder.layer.*.output.dense.weight:1";
    let rep = ok_json(&[
        "prune",
        m,
        "-o",
        s.to_str().unwrap(),
        "--amount",
        "0.5",
        "--multiple-of",
        "8",
        "--shrink",
        spec,
        "--json",
    ]);
    let groups = rep["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 6);
    assert!(
        groups
            .iter()
            .all(|g| g["channels_before"] == 1536 && g["channels_after"] == 768)
    );
    let insp = ok_json(&["inspect", s.to_str().unwrap(), "--json"]);
    let shape = |n: &str| {
        insp["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == n)
            .unwrap()["shape"]
            .clone()
    };
    assert_eq!(
        shape("encoder.layer.5.intermediate.dense.weight"),
        serde_json::json!([768, 384])
    );
    assert_eq!(
        shape("encoder.layer.5.output.dense.weight"),
        serde_json::json!([384, 768])
    );
    assert_eq!(
        insp["total_parameters"],
        22_713_728 - 6 * 768 * (384 + 1 + 384)
    );
    println!(
        "MiniLM --shrink FFN 50%: {} -> {} parameters, {} -> {} bytes",
        rep["totals"]["parameters_before"],
        rep["totals"]["parameters_after"],
        rep["totals"]["bytes_before"],
        rep["totals"]["bytes_after"]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// `modelopt eval` on the real model: q8_0 keeps the embeddings, q4_0 costs what the issue measured.
/// Run with `--release` (two passes over 780 sentences per type).
#[test]
fn minilm_eval() {
    let Some(model) = std::env::var_os("MODELOPT_MINILM") else {
        eprintln!("SKIPPED: set MODELOPT_MINILM to all-MiniLM-L6-v2's model.safetensors");
        return;
    };
    let model = std::path::PathBuf::from(model);
    let (file, dir) = if model.is_dir() {
        (model.join("model.safetensors"), model.clone())
    } else {
        (model.clone(), model.parent().unwrap().to_path_buf())
    };
    let tmp = temp_dir("minilm-eval");
    for (ty, floor, bpw) in [("q8_0", 0.999, 8.54), ("q4_0", 0.95, 4.54)] {
        let out = tmp.join(format!("minilm-{ty}.gguf"));
        let o = out.to_str().unwrap();
        ok(&["quantize", file.to_str().unwrap(), "-o", o, "--type", ty]);
        let r = ok_json(&["eval", dir.to_str().unwrap(), "--weights", o, "--json"]);
        assert_eq!(r["sentences"], 780);
        let mean = r["mean_cosine"].as_f64().unwrap();
        assert!(mean > floor && mean < 1.0, "{ty}: {r}");
        assert!(
            (r["bits_per_weight"].as_f64().unwrap() - bpw).abs() < 0.01,
            "{ty}: {r}"
        );
        println!("{ty}: {r}");
    }
}
