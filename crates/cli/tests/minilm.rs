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
