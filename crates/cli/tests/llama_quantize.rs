//! `modelopt quantize MODEL.gguf --type PRESET` against llama-quantize's own output
//! (`tests/data/llama_quantize/truth.json`, llama.cpp c392e509): for the small llama GGUF that
//! `make_llama_gguf.py --seed 1` writes, every tensor's type and SHA-256, preset by preset.

mod common;

use std::path::{Path, PathBuf};

use common::{modelopt, ok, python, python_has, temp_dir};
use serde_json::{Value, json};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/llama_quantize")
}

fn truth() -> Value {
    serde_json::from_str(&std::fs::read_to_string(data().join("truth.json")).unwrap()).unwrap()
}

/// Prints a GGUF file as JSON: its SHA-256, metadata ([key, type, value] in file order), tensors in file order
/// ([name, GGML type name, SHA-256 of the data]).
const DUMP: &str = r#"
import sys, json, hashlib, gguf
path = sys.argv[1]
r = gguf.GGUFReader(path)
kv = []
for f in r.fields.values():
    if f.name.startswith("GGUF."):
        continue
    kv.append([f.name, f.types[0].name, f.contents()])
ts = [[t.name, t.tensor_type.name, hashlib.sha256(t.data.tobytes()).hexdigest()] for t in r.tensors]
sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
print(json.dumps({"sha256": sha, "kv": kv, "tensors": ts}))
"#;

fn dump(path: &Path) -> Value {
    serde_json::from_str(&python(DUMP, &[path.to_str().unwrap()])).unwrap()
}

/// The reference model and imatrix, generated into `dir` and checked against the SHA-256 in
/// truth.json; `None` (test skipped) without python3 + gguf + numpy.
fn reference_model(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    if !python_has("gguf, numpy") {
        return None;
    }
    let (m, im) = (dir.join("ll.gguf"), dir.join("ll_imatrix.dat"));
    let script = std::fs::read_to_string(data().join("make_llama_gguf.py")).unwrap();
    let args = [m.to_str().unwrap(), im.to_str().unwrap(), "--seed", "1"];
    // `python -c` has no __file__; the script only reads its arguments.
    python(&script, &args);
    let t = truth();
    assert_eq!(
        dump(&m)["sha256"],
        t["input_sha256"],
        "make_llama_gguf.py wrote another model than llama-quantize read (gguf-py version?)"
    );
    Some((m, im))
}

/// The cases of truth.json this build reproduces (`+imatrix`: run with `--imatrix`).
const CASES: [&str; 22] = [
    "Q4_K_M",
    "Q5_K_M",
    "Q3_K_M",
    "Q2_K",
    "Q4_K_S",
    "Q6_K",
    "Q8_0",
    "Q4_0",
    "Q3_K_L",
    "Q4_K_M+imatrix",
    "Q5_K_M+imatrix",
    "Q3_K_M+imatrix",
    "Q2_K+imatrix",
    "Q4_K_S+imatrix",
    "Q6_K+imatrix",
    "Q8_0+imatrix",
    "Q4_0+imatrix",
    "Q3_K_L+imatrix",
    "IQ4_NL",
    "IQ4_XS",
    "IQ4_NL+imatrix",
    "IQ4_XS+imatrix",
];

/// The cases run by default (one per family of rules; each K-quant preset costs seconds in a
/// debug build); `MODELOPT_ALL_PRESETS=1` runs every case of [`CASES`].
const QUICK: [&str; 5] = ["Q3_K_M", "Q4_K_M", "Q4_0", "Q4_0+imatrix", "IQ4_XS"];

/// The tensor names of a case in llama-quantize's order (truth.json keeps it; serde_json's map
/// does not).
fn truth_order(case: &str) -> Vec<String> {
    let script = "import sys, json; print(json.dumps(list(json.load(open(sys.argv[1]))['presets'][sys.argv[2]]['tensors'])))";
    let truth = data().join("truth.json");
    serde_json::from_str(&python(script, &[truth.to_str().unwrap(), case])).unwrap()
}

#[test]
fn presets_match_llama_quantize_tensor_for_tensor() {
    let dir = temp_dir("llamaq");
    let Some((model, imatrix)) = reference_model(&dir) else {
        return;
    };
    let t = truth();
    let input = dump(&model);
    let all = std::env::var_os("MODELOPT_ALL_PRESETS").is_some();
    for case in CASES.into_iter().filter(|c| all || QUICK.contains(c)) {
        let (preset, withimatrix) = match case.strip_suffix("+imatrix") {
            Some(p) => (p, true),
            None => (case, false),
        };
        let want = &t["presets"][case];
        let out = dir.join(format!("{case}.gguf"));
        let mut args = vec![
            "quantize",
            model.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--type",
            preset,
        ];
        if withimatrix {
            args.extend(["--imatrix", imatrix.to_str().unwrap()]);
        }
        ok(&args);
        let got = dump(&out);
        // Tensors: llama-quantize's order (truth.json keeps it), types and bytes.
        let want_tensors: Vec<(String, String, String)> = truth_order(case)
            .into_iter()
            .map(|n| {
                let v = &want["tensors"][&n];
                (
                    n,
                    v[0].as_str().unwrap().into(),
                    v[1].as_str().unwrap().into(),
                )
            })
            .collect();
        let got_tensors: Vec<(String, String, String)> = got["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v[0].as_str().unwrap().into(),
                    v[1].as_str().unwrap().into(),
                    v[2].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(got_tensors.len(), want_tensors.len(), "{case}");
        for (g, w) in got_tensors.iter().zip(&want_tensors) {
            assert_eq!(g, w, "{case}: tensor differs from llama-quantize's");
        }
        // Metadata: the input's, with the file type and quantization version set last.
        let kv_list = |d: &Value| -> Vec<(String, Value)> {
            d["kv"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e[0].as_str().unwrap().to_string(), json!([e[1], e[2]])))
                .collect()
        };
        let (kv, kv_in) = (kv_list(&got), kv_list(&input));
        // With an imatrix llama-quantize appends its description last.
        let mut n = kv.len();
        if withimatrix {
            n -= 4;
            let tail: Vec<(String, Value)> = kv[n..].to_vec();
            assert_eq!(
                tail,
                [
                    (
                        "quantize.imatrix.file".to_string(),
                        json!(["STRING", imatrix.to_str().unwrap()])
                    ),
                    (
                        "quantize.imatrix.dataset".to_string(),
                        json!(["STRING", "synthetic-activations"])
                    ),
                    (
                        "quantize.imatrix.entries_count".to_string(),
                        json!(["UINT32", 57])
                    ),
                    (
                        "quantize.imatrix.chunks_count".to_string(),
                        json!(["UINT32", 100])
                    ),
                ],
                "{case}"
            );
        }
        assert_eq!(
            kv[..n - 2],
            kv_in[..kv_in.len() - 1],
            "{case}: the input's metadata, in order (general.file_type is its last key)"
        );
        assert_eq!(kv_in[kv_in.len() - 1].0, "general.file_type");
        assert_eq!(
            kv[n - 2..n],
            [
                (
                    "general.quantization_version".to_string(),
                    json!(["UINT32", 2])
                ),
                (
                    "general.file_type".to_string(),
                    json!(["UINT32", want["file_type"]])
                ),
            ],
            "{case}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Presets on safetensors input are their base type; lower-case names still work; `--pure`
/// keeps every quantized tensor at the base type.
#[test]
fn preset_names_pure_and_requantize() {
    let dir = temp_dir("llamaq-pure");
    let Some((model, _)) = reference_model(&dir) else {
        return;
    };
    let m = model.to_str().unwrap();
    let pure = dir.join("pure.gguf");
    ok(&[
        "quantize",
        m,
        "-o",
        pure.to_str().unwrap(),
        "--type",
        "q4_k_m",
        "--pure",
    ]);
    let got = dump(&pure);
    for t in got["tensors"].as_array().unwrap() {
        let name = t[0].as_str().unwrap();
        let want = if name.ends_with("_norm.weight") {
            "F32"
        } else {
            "Q4_K"
        };
        assert_eq!(t[1], want, "{name}");
    }
    // A quantized model is copied as it is, unless --allow-requantize.
    let again = dir.join("again.gguf");
    let a = again.to_str().unwrap();
    let rep: Value = serde_json::from_str(&ok(&[
        "quantize",
        pure.to_str().unwrap(),
        "-o",
        a,
        "--type",
        "Q8_0",
        "--json",
    ]))
    .unwrap();
    let out = dump(&again);
    let first = |d: &Value| d["tensors"][3].clone();
    assert_eq!(first(&out), first(&dump(&pure)));
    assert!(
        rep["tensors"][3]["note"]
            .as_str()
            .unwrap()
            .contains("--allow-requantize")
    );
    ok(&[
        "quantize",
        pure.to_str().unwrap(),
        "-o",
        a,
        "--type",
        "Q8_0",
        "--allow-requantize",
    ]);
    assert_eq!(dump(&again)["tensors"][3][1], "Q8_0");
    // IQ4 presets or unknown names: usage errors.
    let e = modelopt(&["quantize", m, "-o", a, "--type", "Q4_K_X"]);
    assert_eq!(e.status.code(), Some(2));
    std::fs::remove_dir_all(dir).unwrap();
}

/// `--bpw` at Q4_K_M's bits per weight (with the imatrix): the greedy allocation over
/// Q2_K..Q8_0 has a lower total importance-weighted squared error than Q4_K_M's own mixture,
/// within the budget; the file holds the reported types.
#[test]
fn size_budget_beats_q4_k_m_at_its_own_size() {
    let dir = temp_dir("llamaq-bpw");
    let Some((model, imatrix)) = reference_model(&dir) else {
        return;
    };
    let (m, im) = (model.to_str().unwrap(), imatrix.to_str().unwrap());
    let preset = dir.join("q4km.gguf");
    let rep: Value = serde_json::from_str(&ok(&[
        "quantize",
        m,
        "-o",
        preset.to_str().unwrap(),
        "--type",
        "Q4_K_M",
        "--imatrix",
        im,
        "--json",
    ]))
    .unwrap();
    let bpw = rep["totals"]["bits_per_weight"].as_f64().unwrap();
    let out = dir.join("budget.gguf");
    let bpw_arg = format!("{bpw}");
    let rep: Value = serde_json::from_str(&ok(&[
        "quantize",
        m,
        "-o",
        out.to_str().unwrap(),
        "--type",
        "Q4_K_M",
        "--imatrix",
        im,
        "--bpw",
        &bpw_arg,
        "--json",
    ]))
    .unwrap();
    let b = &rep["budget"];
    let (err, preset_err) = (
        b["weighted_error"].as_f64().unwrap(),
        b["preset_weighted_error"].as_f64().unwrap(),
    );
    assert!(err < preset_err, "allocation {err} vs Q4_K_M {preset_err}");
    let achieved = b["achieved_bpw"].as_f64().unwrap();
    assert!(achieved <= bpw, "{achieved} > {bpw}");
    assert_eq!(rep["totals"]["bits_per_weight"].as_f64().unwrap(), achieved);
    let got = dump(&out);
    for t in got["tensors"].as_array().unwrap() {
        if let Some(ty) = b["types"][t[0].as_str().unwrap()].as_str() {
            assert!(t[1].as_str().unwrap().eq_ignore_ascii_case(ty), "{t}");
        }
    }
    // A budget below the cheapest types is an error, and leaves no file.
    let small = dir.join("small.gguf");
    let e = modelopt(&[
        "quantize",
        m,
        "-o",
        small.to_str().unwrap(),
        "--type",
        "Q4_K_M",
        "--bpw",
        "0.5",
    ]);
    assert_eq!(e.status.code(), Some(1));
    assert!(!small.exists());
    std::fs::remove_dir_all(dir).unwrap();
}

/// A mismatched or hostile imatrix on a GGUF model: exit 1, the entry named, no output file.
#[test]
fn bad_imatrix_on_a_gguf_model_is_an_error_naming_the_entry() {
    let dir = temp_dir("llamaq-badimat");
    let Some((model, _)) = reference_model(&dir) else {
        return;
    };
    let bad = dir.join("bad.dat");
    let out = dir.join("out.gguf");
    // 100 values for a tensor with rows of 256.
    let entry = modelopt_io::ImatrixEntry::new("blk.3.attn_q.weight", 4, vec![1.0; 100]).unwrap();
    modelopt_io::Imatrix::new(vec![entry])
        .unwrap()
        .write(&bad)
        .unwrap();
    let e = modelopt(&[
        "quantize",
        model.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--type",
        "Q4_K_M",
        "--imatrix",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(e.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(msg.contains("blk.3.attn_q.weight"), "{msg}");
    assert!(!out.exists());
    // A truncated file.
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() - 7]).unwrap();
    let e = modelopt(&[
        "quantize",
        model.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--type",
        "Q4_K_M",
        "--imatrix",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(e.status.code(), Some(1));
    assert!(!out.exists());
    std::fs::remove_dir_all(dir).unwrap();
}
