//! all-MiniLM-L6-v2 against Hugging Face transformers' outputs (tests/data, from
//! ../shared/reference/minilm: transformers 5.24, PyTorch, CPU, f32).
//!
//! Opt-in (the model is a 90 MB download, not in the repository):
//! `MODELOPT_MINILM=/path/to/minilm cargo test -p modelopt-bert --test minilm` (the folder with
//! config.json, tokenizer.json and model.safetensors, or its model.safetensors).

use std::path::PathBuf;

use modelopt_bert::{SentenceEncoder, SquaredSums, TokenBatch};
use modelopt_tensor_core::Par;
use ndarray::{Array2, Array3, s};
use ndarray_npy::read_npy;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn model_dir() -> Option<PathBuf> {
    let Some(p) = std::env::var_os("MODELOPT_MINILM") else {
        eprintln!(
            "SKIPPED: set MODELOPT_MINILM to the all-MiniLM-L6-v2 folder (or its model.safetensors)"
        );
        return None;
    };
    let p = PathBuf::from(p);
    Some(if p.is_file() {
        p.parent().unwrap().to_path_buf()
    } else {
        p
    })
}

fn sentences() -> Vec<String> {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("manifest.json")).unwrap()).unwrap();
    m["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn tokenisation_matches_the_reference_ids_exactly() {
    let Some(dir) = model_dir() else { return };
    let enc = SentenceEncoder::from_dir(&dir).unwrap();
    let texts = sentences();
    let ids: Array2<i64> = read_npy(data("ids.npy")).unwrap();
    let mask: Array2<i64> = read_npy(data("mask.npy")).unwrap();
    let t = enc.tokenizer().encode(&texts).unwrap();
    let want = TokenBatch::from_padded(ids.view(), mask.view(), None).unwrap();
    assert_eq!(t.batch, want);
    // The last sentence is longer than 128 tokens: truncated, and said so.
    assert_eq!(t.truncated, vec![texts.len() - 1]);
    assert_eq!(t.batch.range(texts.len() - 1).len(), 128);
}

#[test]
fn embeddings_and_hidden_states_match_transformers() {
    let Some(dir) = model_dir() else { return };
    let enc = SentenceEncoder::from_dir(&dir).unwrap();
    let texts = sentences();
    let want: Array2<f32> = read_npy(data("embeddings.npy")).unwrap();
    let got = enc.embed(&texts, Par::Seq).unwrap();
    assert_eq!(got.vectors.dim(), want.dim());
    let mut worst = (1.0f64, 0.0f32);
    for (i, (g, w)) in got.vectors.rows().into_iter().zip(want.rows()).enumerate() {
        let cos = g
            .iter()
            .zip(w)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum::<f64>()
            / (g.dot(&g) as f64).sqrt()
            / (w.dot(&w) as f64).sqrt();
        let abs = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(cos >= 0.99999, "sentence {i}: cosine {cos}");
        assert!(abs <= 1e-4, "sentence {i}: max abs difference {abs}");
        worst = (worst.0.min(cos), worst.1.max(abs));
    }
    eprintln!("worst cosine {:.8}, worst abs {:.2e}", worst.0, worst.1);
    // Last hidden states of sentences 0..3 at their real positions.
    let hidden: Array3<f32> = read_npy(data("last_hidden.npy")).unwrap();
    let t = enc.tokenizer().encode(&texts[..4]).unwrap();
    let h = enc.model().hidden_states(&t.batch, Par::Seq).unwrap();
    let mut worst_h = 0.0f32;
    for s in 0..4 {
        let r = t.batch.range(s);
        let got = h.slice(s![r.clone(), ..]);
        let want = hidden.slice(s![s, ..r.len(), ..]);
        for (a, b) in got.iter().zip(want) {
            worst_h = worst_h.max((a - b).abs());
        }
    }
    eprintln!("worst hidden-state difference {worst_h:.2e}");
    assert!(worst_h <= 1e-4, "{worst_h}");
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let Some(dir) = model_dir() else { return };
    let enc = SentenceEncoder::from_dir(&dir).unwrap();
    let texts = sentences();
    let one = enc.embed(&texts, Par::Seq).unwrap();
    for n in [1, 2, 3] {
        assert_eq!(
            enc.embed(&texts, Par::Rayon(n)).unwrap(),
            one,
            "{n} threads"
        );
    }
}

#[test]
fn hooks_see_every_linear_layer_with_real_tokens_only() {
    let Some(dir) = model_dir() else { return };
    let enc = SentenceEncoder::from_dir(&dir).unwrap();
    let texts = &sentences()[..5];
    let mut stats = SquaredSums::default();
    let e = enc.embed_with_hook(texts, Par::Seq, &mut stats).unwrap();
    let names = enc.model().linear_names();
    assert_eq!(names.len(), 36);
    assert_eq!(stats.layers().len(), 36);
    for name in names {
        let l = &stats.layers()[name];
        assert_eq!((l.calls, l.tokens), (1, e.tokens as u64), "{name}");
        let width = if name.ends_with("output.dense.weight") && !name.contains("attention") {
            1536
        } else {
            384
        };
        assert_eq!(l.sums.len(), width, "{name}");
    }
    // The query's input of layer 0 is the embedding LayerNorm output: recompute its column sums.
    let t = enc.tokenizer().encode(texts).unwrap();
    let mut first: Option<Array2<f32>> = None;
    enc.model()
        .hidden_states_with_hook(
            &t.batch,
            Par::Seq,
            &mut |name: &str, x: ndarray::ArrayView2<f32>| {
                if name == "encoder.layer.0.attention.self.query.weight" {
                    first = Some(x.to_owned());
                }
            },
        )
        .unwrap();
    let x = first.unwrap();
    let q = &stats.layers()["encoder.layer.0.attention.self.query.weight"];
    for (j, col) in x.columns().into_iter().enumerate() {
        let want: f64 = col.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        assert!(
            (q.sums[j] - want).abs() <= 1e-9 * want.max(1.0),
            "column {j}"
        );
    }
}
