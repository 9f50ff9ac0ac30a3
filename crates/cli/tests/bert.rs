//! `modelopt eval` and `modelopt imatrix` on the tiny BERT fixture of modelopt-bert
//! (crates/bert/tests/data/tiny: 2 layers, 32 wide, random weights).

mod common;

use std::path::PathBuf;

use common::{modelopt, ok, ok_json, temp_dir};
use modelopt_io::Imatrix;

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bert/tests/data/tiny")
}

fn text_file(dir: &std::path::Path, lines: &[&str]) -> PathBuf {
    let p = dir.join("text.txt");
    std::fs::write(&p, lines.join("\n")).unwrap();
    p
}

const LINES: [&str; 6] = [
    "The cat sat on the mat.",
    "A big red dog runs very fast!",
    "python code",
    "",
    "the new list is very small",
    "the cat and the dog and the mat and the rug and the code and the list and the value",
];

#[test]
fn eval_reports_cosine_neighbours_and_bits_per_weight() {
    let dir = temp_dir("bert-eval");
    let text = text_file(&dir, &LINES);
    let (m, t) = (tiny(), text.to_str().unwrap().to_string());
    let m = m.to_str().unwrap();
    // The f32 weights against themselves: identical.
    let same = ok_json(&["eval", m, "--text", &t, "--json"]);
    assert_eq!(same["sentences"], 5); // the blank line is skipped
    assert_eq!(same["truncated"], 1);
    assert_eq!(same["mean_cosine"], 1.0);
    assert_eq!(same["nearest_neighbour_unchanged"], 1.0);
    let f32_bpw = same["bits_per_weight"].as_f64().unwrap();
    assert!((32.0..36.0).contains(&f32_bpw), "{f32_bpw}"); // the header weighs on a tiny file
    for (ty, ext, floor, bpw) in [
        ("q8_0", "gguf", 0.999, 8.5),
        ("int8", "safetensors", 0.999, 8.0),
        ("q4_0", "gguf", 0.9, 4.5),
    ] {
        let out = dir.join(format!("tiny-{ty}.{ext}"));
        let o = out.to_str().unwrap();
        ok(&[
            "quantize",
            &format!("{m}/model.safetensors"),
            "-o",
            o,
            "--type",
            ty,
        ]);
        let r = ok_json(&["eval", m, "--weights", o, "--text", &t, "--json"]);
        let (mean, min) = (
            r["mean_cosine"].as_f64().unwrap(),
            r["min_cosine"].as_f64().unwrap(),
        );
        assert!(min <= mean && mean < 1.0 && min > floor, "{ty}: {r}");
        let got_bpw = r["bits_per_weight"].as_f64().unwrap();
        assert!(got_bpw > bpw && got_bpw < bpw + 6.0, "{ty}: {got_bpw}"); // headers weigh on a tiny file
        let nn = r["nearest_neighbour_unchanged"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&nn));
        // Run as stored: every linear layer of the 2-layer model on an integer kernel...
        assert_eq!(
            (r["integer_layers"].as_u64(), r["linear_layers"].as_u64()),
            (Some(12), Some(12)),
            "{ty}"
        );
        // ... or, asked, dequantized to f32.
        let f = ok_json(&[
            "eval",
            m,
            "--weights",
            o,
            "--text",
            &t,
            "--exec",
            "float",
            "--json",
        ]);
        assert_eq!(f["integer_layers"], 0, "{ty}");
    }
    assert_eq!(same["integer_layers"], 0); // f32 weights run in f32
    let bad = modelopt(&["eval", m, "--text", &t, "--exec", "fp8"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("fp8"));
    // The table form says the same things.
    let table = ok(&["eval", m, "--text", &t]);
    for word in [
        "mean cosine to f32",
        "nearest neighbour unchanged",
        "bits/weight",
        "sentences/s",
    ] {
        assert!(table.contains(word), "{table}");
    }
}

#[test]
fn eval_says_what_was_truncated_and_rejects_bad_input() {
    let dir = temp_dir("bert-bad");
    let text = text_file(&dir, &LINES);
    let m = tiny();
    let m = m.to_str().unwrap();
    let out = modelopt(&["eval", m, "--text", text.to_str().unwrap()]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("truncated") && err.contains("16 tokens") && err.contains("line(s) 6"),
        "{err}"
    );

    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "\n  \n").unwrap();
    let out = modelopt(&["eval", m, "--text", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("empty.txt") && err.contains("empty"), "{err}");

    let out = modelopt(&[
        "eval",
        dir.to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("config.json"));

    let bad = dir.join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00").unwrap();
    let out = modelopt(&[
        "eval",
        m,
        "--weights",
        bad.to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.gguf"));
}

#[test]
fn imatrix_writes_llama_cpp_entries_under_checkpoint_names() {
    let dir = temp_dir("bert-imatrix");
    let text = text_file(&dir, &LINES);
    let out = dir.join("imatrix.dat");
    let m = tiny();
    ok(&[
        "imatrix",
        m.to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let im = Imatrix::read(&out).unwrap();
    assert_eq!(im.entries().len(), 12);
    let q = im
        .get("encoder.layer.0.attention.self.query.weight")
        .unwrap();
    assert_eq!(q.ncall(), 1); // 5 sentences: one batch
    assert_eq!(q.sums().len(), 32);
    // The query's input is LayerNorm output with random gamma/beta: positive mean squares.
    assert!(q.sums().iter().all(|&v| v > 0.0 && v.is_finite()));
    let ffn = im.get("encoder.layer.1.output.dense.weight").unwrap();
    assert_eq!(ffn.sums().len(), 64);
    assert_eq!(im.last_chunk(), 1);
    assert!(im.dataset().ends_with("text.txt"));
    // q, k and v share their input: identical rows.
    let k = im.get("encoder.layer.0.attention.self.key.weight").unwrap();
    assert_eq!(q.sums(), k.sums());
    // llama.cpp's semantics: what llama-quantize loads (sums / ncall) is the mean square per token.
    let enc = modelopt_bert::SentenceEncoder::from_dir(&m).unwrap();
    let mut stats = modelopt_bert::SquaredSums::default();
    let texts: Vec<&str> = LINES.iter().copied().filter(|l| !l.is_empty()).collect();
    let e = enc
        .embed_with_hook(&texts, modelopt_tensor_core::Par::Seq, &mut stats)
        .unwrap();
    for name in enc.model().linear_names() {
        let want = &stats.layers()[name];
        let got = im.get(name).unwrap().means();
        for (g, w) in got.iter().zip(&want.sums) {
            let w = w / e.tokens as f64;
            assert!(
                (f64::from(*g) - w).abs() <= 1e-6 * w.max(1.0),
                "{name}: {g} vs {w}"
            );
        }
    }
}

/// `quantize --method awq` writes what the calibration computed: the file, run in f32, gives
/// the embeddings of the model `Calibrator` returns (the value projections' rows and biases
/// carry the folded scales), and only attention output projections get scales.
#[test]
fn awq_output_runs_as_the_calibrated_model() {
    use modelopt_bert::{Execution, SentenceEncoder};
    use modelopt_calibrate::{Calibrator, Format, Method, batches};
    use modelopt_quantize::ggml::GgmlType;
    use modelopt_tensor_core::Par;

    let dir = temp_dir("awq");
    let lines: Vec<&str> = LINES.iter().copied().filter(|l| !l.is_empty()).collect();
    let text = text_file(&dir, &lines);
    let out = dir.join("awq.safetensors");
    let report = ok_json(&[
        "quantize",
        tiny().join("model.safetensors").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--type",
        "q4_0",
        "--calibrate",
        tiny().to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
        "--method",
        "awq",
        "--keep",
        "*embeddings*",
        "--json",
    ]);
    let notes: Vec<(String, String)> = report["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("note"))
        })
        .collect();
    for (name, note) in &notes {
        if note.contains("AWQ alpha") {
            assert!(
                name.ends_with("attention.output.dense.weight"),
                "{name}: {note}"
            );
        }
    }

    let enc = SentenceEncoder::from_dir(tiny()).unwrap();
    let b = batches(enc.tokenizer(), &lines).unwrap();
    let mut model = enc.model().clone();
    let cal = Calibrator::new(Method::Awq, Format::Ggml(GgmlType::Q4_0))
        .calibrate(&mut model, &b)
        .unwrap();
    // The tiny model's attention outputs do get scales (so the fold is exercised), and every
    // folded bias is in the report as written from the calibration.
    assert!(!cal.biases.is_empty());
    for name in cal.biases.keys() {
        assert!(
            notes
                .iter()
                .any(|(n, note)| n == name && note.contains("AWQ")),
            "{name}"
        );
    }
    let tok = enc.tokenizer().encode(&lines).unwrap();
    let want = model.embed(&tok.batch, Par::Seq).unwrap();
    let file = SentenceEncoder::with_weights_and(tiny(), &out, Execution::Float).unwrap();
    let got = file.model().embed(&tok.batch, Par::Seq).unwrap();
    let diff = (&got - &want).mapv(f32::abs).fold(0f32, |a, &b| a.max(b));
    assert!(diff < 1e-5, "file vs calibrated model: {diff}");
}

/// `--token-embedding-type` gives the word embeddings their own type (as llama-quantize's
/// option of that name) and is checked against the output format like --type.
#[test]
fn token_embedding_type_applies_to_the_word_embeddings_only() {
    let dir = temp_dir("token-embedding-type");
    let model = tiny().join("model.safetensors");
    let out = dir.join("mixed.safetensors");
    let report = ok_json(&[
        "quantize",
        model.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--type",
        "q4_0",
        "--token-embedding-type",
        "kmeans3",
        "--block-size",
        "32",
        "--json",
    ]);
    let type_of = |name: &str| {
        report["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .map(|t| t["type"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(type_of("embeddings.word_embeddings.weight"), "kmeans3");
    assert_eq!(type_of("embeddings.position_embeddings.weight"), "q4_0");
    assert_eq!(
        type_of("encoder.layer.0.attention.self.query.weight"),
        "q4_0"
    );
    // GGUF cannot hold a codebook: a usage error, no file.
    let gguf = dir.join("mixed.gguf");
    let o = modelopt(&[
        "quantize",
        model.to_str().unwrap(),
        "-o",
        gguf.to_str().unwrap(),
        "--type",
        "q4_0",
        "--token-embedding-type",
        "kmeans3",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--token-embedding-type"), "{err}");
    assert!(!gguf.exists());
}

/// `prune --criterion sparsegpt` writes the library's pruned weights: 2:4 in every group of
/// every linear layer, the kept weights reconstructed (not the input's), the rest copied.
#[test]
fn sparsegpt_prunes_linear_layers_with_reconstruction() {
    use modelopt_io::Checkpoint;

    let dir = temp_dir("sparsegpt");
    let lines: Vec<&str> = LINES.iter().copied().filter(|l| !l.is_empty()).collect();
    let text = text_file(&dir, &lines);
    let input = tiny().join("model.safetensors");
    let out = dir.join("sg.safetensors");
    ok(&[
        "prune",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--criterion",
        "sparsegpt",
        "--structure",
        "2:4",
        "--calibrate",
        tiny().to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
    ]);
    let a = Checkpoint::open(&input).unwrap();
    let b = Checkpoint::open(&out).unwrap();
    let mut linear = 0;
    for t in a.tensors() {
        let name = &t.info.name;
        let (x, y) = (a.tensor_f32(name).unwrap(), b.tensor_f32(name).unwrap());
        let is_linear = name.starts_with("encoder.") && name.ends_with("dense.weight")
            || name.contains("attention.self.") && name.ends_with(".weight");
        if !is_linear {
            assert_eq!(x, y, "{name} changed");
            continue;
        }
        linear += 1;
        let y: Vec<f32> = y.to_vec();
        for g in y.chunks(4) {
            assert!(g.iter().filter(|v| **v == 0.0).count() >= 2, "{name}");
        }
        // Some kept weight moved: the reconstruction, not a mask.
        let moved = x.iter().zip(&y).any(|(p, q)| *q != 0.0 && p != q);
        assert!(moved, "{name}: kept weights unchanged");
    }
    assert_eq!(linear, 12); // 2 layers x (q, k, v, attention output, intermediate, output)
}
