//! A tiny BERT (2 layers, 32 wide, seeded random weights) against transformers' outputs
//! (tests/data/tiny, written by make_tiny.py), and every bad input the loader must name.

use std::path::{Path, PathBuf};

use modelopt_bert::{BertError, SentenceEncoder, SquaredSums};
use modelopt_io::{Checkpoint, DType, SafetensorsWriter, TensorInfo, f32_to_bytes};
use modelopt_tensor_core::Par;

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny")
}

struct Reference {
    sentences: Vec<String>,
    ids: Vec<Vec<u32>>,
    embeddings: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(tiny().join("reference.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let list = |key: &str| v[key].as_array().unwrap().clone();
    Reference {
        sentences: list("sentences")
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect(),
        ids: list("ids")
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect()
            })
            .collect(),
        embeddings: list("embeddings")
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect(),
    }
}

/// A fresh copy of the tiny folder, to break one file of.
fn copy_of_tiny(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("modelopt-bert-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(tiny().join(f), dir.join(f)).unwrap();
    }
    dir
}

/// Rewrites `dir/model.safetensors` with tensor `name` changed by `edit` (None drops it).
fn rewrite_weights(dir: &Path, name: &str, edit: impl Fn(Vec<usize>) -> Option<Vec<usize>>) {
    let src = Checkpoint::open(tiny().join("model.safetensors")).unwrap();
    let mut infos = Vec::new();
    let mut data = Vec::new();
    for t in src.tensors() {
        let mut shape = t.info.shape.clone();
        let mut values = src.tensor_f32(&t.info.name).unwrap();
        if t.info.name == name {
            match edit(shape) {
                None => continue,
                Some(s) => shape = s,
            }
            values.resize(shape.iter().product(), 0.0);
        }
        infos.push(TensorInfo::new(t.info.name.clone(), DType::F32, shape));
        data.push((t.info.name.clone(), f32_to_bytes(&values)));
    }
    let path = dir.join("model.safetensors");
    let mut w = SafetensorsWriter::create(&path, infos, Default::default()).unwrap();
    for (n, bytes) in data {
        w.write_tensor(&n, &bytes).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn tokens_and_embeddings_match_transformers() {
    let r = reference();
    let enc = SentenceEncoder::from_dir(tiny()).unwrap();
    assert_eq!(enc.tokenizer().max_tokens(), 16); // max_position_embeddings
    let t = enc.tokenizer().encode(&r.sentences).unwrap();
    for (i, want) in r.ids.iter().enumerate() {
        assert_eq!(
            &t.batch.ids()[t.batch.range(i)],
            want.as_slice(),
            "sentence {i}"
        );
    }
    assert_eq!(t.truncated, vec![3, 5]); // longer than 16 tokens: cut, and said so
    let e = enc.embed(&r.sentences, Par::Seq).unwrap();
    assert_eq!(e.truncated, vec![3, 5]);
    for (i, want) in r.embeddings.iter().enumerate() {
        let got = e.vectors.row(i);
        let cos: f64 = got
            .iter()
            .zip(want)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        let abs = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            cos >= 0.99999 && abs <= 1e-5,
            "sentence {i}: cosine {cos}, abs {abs}"
        );
    }
}

#[test]
fn same_results_for_any_thread_count() {
    let r = reference();
    let enc = SentenceEncoder::from_dir(tiny()).unwrap();
    let many: Vec<&str> = r
        .sentences
        .iter()
        .cycle()
        .take(100)
        .map(String::as_str)
        .collect();
    let seq = enc.embed(&many, Par::Seq).unwrap();
    for n in [1, 2, 4] {
        assert_eq!(enc.embed(&many, Par::Rayon(n)).unwrap(), seq, "{n} threads");
    }
}

#[test]
fn hooks_get_each_linear_input_once_per_batch() {
    let r = reference();
    let enc = SentenceEncoder::from_dir(tiny()).unwrap();
    let mut seen = Vec::new();
    let e = enc
        .embed_with_hook(&r.sentences, Par::Seq, &mut |name: &str,
                                                       x: ndarray::ArrayView2<
            f32,
        >| {
            seen.push((name.to_string(), x.dim()));
        })
        .unwrap();
    let names = enc.model().linear_names();
    assert_eq!(names.len(), 12);
    assert_eq!(seen.len(), 12);
    for ((name, (rows, cols)), want) in seen.iter().zip(&names) {
        assert_eq!(name, want);
        assert_eq!(*rows, e.tokens);
        let ffn_out = name.ends_with(".output.dense.weight") && !name.contains("attention");
        assert_eq!(*cols, if ffn_out { 64 } else { 32 }, "{name}");
    }
    assert_eq!(names[0], "encoder.layer.0.attention.self.query.weight");
    assert_eq!(names[5], "encoder.layer.0.output.dense.weight");
    let mut sums = SquaredSums::default();
    let many: Vec<&str> = r
        .sentences
        .iter()
        .cycle()
        .take(40)
        .map(String::as_str)
        .collect();
    enc.embed_with_hook(&many, Par::Seq, &mut sums).unwrap();
    let q = &sums.layers()[names[0]];
    assert_eq!(q.calls, 2); // 40 sentences = batches of 32 and 8
    assert!(q.sums.iter().all(|&s| s > 0.0));
}

fn err_of(dir: &Path) -> String {
    let e = SentenceEncoder::from_dir(dir).unwrap_err();
    e.to_string()
}

#[test]
fn missing_or_malformed_files_are_named() {
    let dir = copy_of_tiny("files");
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let e = err_of(&dir);
    assert!(
        e.contains("tokenizer.json") && e.contains("cannot read"),
        "{e}"
    );
    std::fs::write(dir.join("tokenizer.json"), "{\"model\": 3}").unwrap();
    let e = err_of(&dir);
    assert!(
        e.contains("tokenizer.json") && e.contains("not a valid tokenizer.json"),
        "{e}"
    );

    let dir = copy_of_tiny("config");
    for (text, says) in [
        ("not json", "not valid JSON"),
        ("[1]", "not a JSON object"),
        (r#"{"hidden_size": 32}"#, "missing `vocab_size`"),
        (
            r#"{"vocab_size": 40, "hidden_size": 30, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 16}"#,
            "not a multiple",
        ),
        (
            r#"{"vocab_size": 40, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 16, "hidden_act": "swish"}"#,
            "hidden_act \"swish\"",
        ),
        (
            r#"{"vocab_size": -1, "hidden_size": 32}"#,
            "`vocab_size` must be a positive integer",
        ),
    ] {
        std::fs::write(dir.join("config.json"), text).unwrap();
        let e = err_of(&dir);
        assert!(e.contains("config.json") && e.contains(says), "{text}: {e}");
    }
    std::fs::remove_file(dir.join("config.json")).unwrap();
    assert!(err_of(&dir).contains("config.json"));
    assert!(err_of(Path::new("/nonexistent/model")).contains("does not exist"));

    let dir = copy_of_tiny("weights");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    assert!(err_of(&dir).contains("model.safetensors"));
    std::fs::write(
        dir.join("model.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":",
    )
    .unwrap();
    assert!(err_of(&dir).contains("model.safetensors"));
}

#[test]
fn wrong_shape_or_missing_tensor_is_named() {
    let dir = copy_of_tiny("shape");
    let name = "encoder.layer.1.intermediate.dense.weight";
    rewrite_weights(&dir, name, |_| Some(vec![64, 31]));
    let e = SentenceEncoder::from_dir(&dir).unwrap_err();
    assert!(matches!(e, BertError::Weight { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("model.safetensors") && msg.contains(name),
        "{msg}"
    );
    assert!(
        msg.contains("[64, 31]") && msg.contains("[64, 32]"),
        "{msg}"
    );

    let dir = copy_of_tiny("missing");
    rewrite_weights(&dir, "embeddings.LayerNorm.bias", |_| None);
    let msg = SentenceEncoder::from_dir(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("embeddings.LayerNorm.bias") && msg.contains("missing"),
        "{msg}"
    );
}

#[test]
fn empty_text_gives_an_empty_result() {
    let enc = SentenceEncoder::from_dir(tiny()).unwrap();
    let e = enc.embed::<&str>(&[], Par::Seq).unwrap();
    assert_eq!(e.vectors.dim(), (0, 32));
    // An empty line is still a sentence: [CLS] [SEP].
    let e = enc.embed(&[""], Par::Seq).unwrap();
    assert_eq!(e.tokens, 2);
}

#[test]
fn rescaling_a_layer_input_leaves_the_embeddings_unchanged() {
    let r = reference();
    let enc = SentenceEncoder::from_dir(tiny()).unwrap();
    let tok = enc.tokenizer().encode(&r.sentences).unwrap();
    let before = enc.model().embed(&tok.batch, Par::Seq).unwrap();
    let mut model = enc.model().clone();
    let names: Vec<String> = model.linear_names().iter().map(|s| s.to_string()).collect();
    let o = names
        .iter()
        .find(|n| n.ends_with("attention.output.dense.weight"))
        .unwrap();
    let v = model.input_producer(o).unwrap().to_string();
    assert!(v.ends_with("attention.self.value.weight"), "{v}");
    let width = model.linear_weight(o).unwrap().ncols();
    let s = ndarray::Array1::from_shape_fn(width, |j| 0.25 + j as f32 / 8.0);
    let w_before = model.linear_weight(o).unwrap().to_owned();
    let b_before = model.linear_bias(&v).unwrap().to_owned();
    assert_eq!(model.scale_linear_input(o, s.view()).unwrap(), v);
    // The weight's columns went up by s, the producer's bias down by it.
    let w_after = model.linear_weight(o).unwrap();
    assert!((w_after[[1, 3]] - w_before[[1, 3]] * s[3]).abs() < 1e-6);
    let b_after = model.linear_bias(&v).unwrap();
    assert!((b_after[5] - b_before[5] / s[5]).abs() < 1e-6);
    let after = model.embed(&tok.batch, Par::Seq).unwrap();
    let diff = (&after - &before)
        .mapv(f32::abs)
        .fold(0f32, |a, &b| a.max(b));
    assert!(diff < 1e-5, "embeddings moved by {diff}");
    // Query/key/value and the FFN layers have no producer to fold into.
    for n in names
        .iter()
        .filter(|n| !n.ends_with("attention.output.dense.weight"))
    {
        assert!(model.input_producer(n).is_none(), "{n}");
        let e = model
            .scale_linear_input(
                n,
                ndarray::Array1::ones(model.linear_weight(n).unwrap().ncols()).view(),
            )
            .unwrap_err();
        assert!(e.to_string().contains("cannot be rescaled"), "{e}");
    }
    let bad = ndarray::Array1::from_elem(width, 0.0f32);
    assert!(
        model
            .scale_linear_input(o, bad.view())
            .unwrap_err()
            .to_string()
            .contains("scale 0")
    );
    let short = ndarray::Array1::from_elem(width - 1, 1.0f32);
    assert!(model.scale_linear_input(o, short.view()).is_err());
}
