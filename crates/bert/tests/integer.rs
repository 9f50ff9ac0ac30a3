//! The tiny BERT with quantized linear weights run through the integer kernels: every linear
//! layer takes the kernel of its stored format, and the embeddings stay those of the same
//! weights run in f32 up to the activations' 8-bit rounding.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use modelopt_bert::{Execution, SentenceEncoder};
use modelopt_io::{Checkpoint, DType, QuantLayout, SafetensorsWriter, TensorInfo, f32_to_bytes};
use modelopt_quantize::ggml::GgmlType;
use modelopt_tensor_core::Par;

const SENTENCES: [&str; 6] = [
    "the cat sat on the mat",
    "a dog ran in the park",
    "stocks fell on monday",
    "it rained all day long",
    "the cat ran",
    "a mat",
];

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny")
}

fn is_linear(name: &str) -> bool {
    name.starts_with("encoder.layer.") && name.ends_with(".weight") && !name.contains("LayerNorm")
}

/// How a test stores one linear weight `[rows, cols]`: the stored bytes and companions.
enum Store {
    F32,
    Ggml(GgmlType),
    Int8,
    Int4(usize),
}

/// Symmetric codes with one scale per `group` values of a row, written out here (not by the
/// code under test): scale = max |w| / qmax, code = round(w / scale).
fn symmetric(w: &[f32], group: usize, qmax: f32) -> (Vec<i8>, Vec<f32>) {
    let mut codes = Vec::new();
    let mut scales = Vec::new();
    for g in w.chunks(group) {
        let amax = g.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = if amax > 0.0 { amax / qmax } else { 1.0 };
        codes.extend(g.iter().map(|v| (v / s).round() as i8));
        scales.push(s);
    }
    (codes, scales)
}

/// The tiny model's linear weights are drawn with std 0.02, so small that the residual stream
/// and LayerNorm shifts swamp them; scaled up, the products decide the hidden states and a
/// wrong product shows.
const GAIN: f32 = 5.0;

/// The tiny model's weights with every linear weight times [`GAIN`], stored as `store` says.
fn quantized_copy(store: &Store, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("modelopt-bert-int-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = Checkpoint::open(tiny().join("model.safetensors")).unwrap();
    let (mut infos, mut data, mut meta) = (Vec::new(), Vec::new(), BTreeMap::new());
    for t in src.tensors() {
        let name = t.info.name.clone();
        if !t.info.dtype.is_float() {
            infos.push(t.info.clone());
            data.push(vec![(
                name.clone(),
                src.tensor_bytes(&name).unwrap().to_vec(),
            )]);
            continue;
        }
        let mut w = src.tensor_f32(&name).unwrap();
        let shape = t.info.shape.clone();
        if is_linear(&name) {
            w.iter_mut().for_each(|v| *v *= GAIN);
        }
        if !is_linear(&name) || matches!(store, Store::F32) {
            infos.push(TensorInfo::new(name.clone(), DType::F32, shape));
            data.push(vec![(name, f32_to_bytes(&w))]);
            continue;
        }
        let cols = shape[1];
        let (layout, parts) = match store {
            Store::F32 => unreachable!("stored as f32 above"),
            Store::Ggml(ty) => (
                QuantLayout::Ggml {
                    ggml_type: *ty,
                    shape: shape.clone(),
                },
                vec![modelopt_quantize::ggml::quantize(*ty, &w).unwrap()],
            ),
            Store::Int8 => {
                let (c, s) = symmetric(&w, cols, 127.0);
                (
                    QuantLayout::Int8PerChannel {
                        shape: shape.clone(),
                    },
                    vec![c.iter().map(|&c| c as u8).collect(), f32_to_bytes(&s)],
                )
            }
            Store::Int4(group) => {
                let (c, s) = symmetric(&w, *group, 7.0);
                // Element 2i in the low nibble, two's complement.
                let packed = c
                    .chunks(2)
                    .map(|p| (p[0] as u8 & 15) | ((p[1] as u8 & 15) << 4))
                    .collect();
                (
                    QuantLayout::Int4Grouped {
                        shape: shape.clone(),
                        group_size: *group,
                    },
                    vec![packed, f32_to_bytes(&s)],
                )
            }
        };
        let (entries, (key, value)) = layout.safetensors_entries(&name).unwrap();
        meta.insert(key, value);
        data.push(entries.iter().map(|e| e.name.clone()).zip(parts).collect());
        infos.extend(entries);
    }
    meta.insert(
        modelopt_io::FORMAT_KEY.to_string(),
        modelopt_io::FORMAT_VERSION.to_string(),
    );
    let path = dir.join("model.safetensors");
    let mut out = SafetensorsWriter::create(&path, infos, meta).unwrap();
    for (n, bytes) in data.into_iter().flatten() {
        out.write_tensor(&n, &bytes).unwrap();
    }
    out.finish().unwrap();
    path
}

fn encoder(weights: &Path, execution: Execution) -> SentenceEncoder {
    SentenceEncoder::with_weights_and(tiny(), weights, execution).unwrap()
}

/// Relative error of `a`'s last hidden states against `b`'s, measured against how much `b`'s
/// states vary (each column's mean removed): the tiny random model maps every sentence to
/// nearly the same pooled embedding, so cosines of embeddings would say little.
fn relative_error(a: &SentenceEncoder, b: &SentenceEncoder) -> f32 {
    let batch = b.tokenizer().encode(&SENTENCES).unwrap().batch;
    let (x, y) = (
        a.model().hidden_states(&batch, Par::Seq).unwrap(),
        b.model().hidden_states(&batch, Par::Seq).unwrap(),
    );
    let mean = y.mean_axis(ndarray::Axis(0)).unwrap();
    let spread = (&y - &mean).mapv(|v| v * v).sum().sqrt();
    (&x - &y).mapv(|v| v * v).sum().sqrt() / spread
}

fn kernels(enc: &SentenceEncoder) -> Vec<String> {
    enc.model()
        .linear_kernels()
        .into_iter()
        .map(|(_, k)| k)
        .collect()
}

#[test]
fn stored_formats_run_in_integers_close_to_their_f32_path() {
    let cases = [
        (Store::Ggml(GgmlType::Q8_0), "q8_0", "Q8_0"),
        (Store::Ggml(GgmlType::Q4_0), "q4_0", "Q4_0"),
        (Store::Ggml(GgmlType::IQ4_NL), "iq4_nl", "IQ4_NL"),
        (Store::Int8, "int8", "W8A8"),
        (Store::Int4(32), "int4", "int4"),
    ];
    for (store, tag, kernel) in cases {
        let path = quantized_copy(&store, tag);
        let integer = encoder(&path, Execution::Stored);
        let float = encoder(&path, Execution::Float);
        let names = kernels(&integer);
        assert_eq!(names.len(), 12, "{tag}: 2 layers x 6 linear weights");
        assert!(
            names
                .iter()
                .all(|k| k.to_lowercase().starts_with(&kernel.to_lowercase())),
            "{tag}: {names:?}"
        );
        assert!(kernels(&float).iter().all(|k| k == "f32"), "{tag}");
        // Same weights; only the activations' 8-bit rounding differs.
        let err = relative_error(&integer, &float);
        // Measured: 0.13-0.25 (the tiny model's states barely vary across tokens, so the
        // centred measure is strict); a product without its bias gives 1.06-1.42.
        assert!(
            err < 0.4,
            "{tag}: integer vs dequantized path, relative error {err}"
        );
        // For scale: the stored weights' own error against the f32 model.
        let f32_path = quantized_copy(&Store::F32, &format!("{tag}-f32"));
        let weight_err = relative_error(&float, &encoder(&f32_path, Execution::Float));
        println!("{tag}: integer path {err:.5}, weight quantization {weight_err:.5}");
        std::fs::remove_dir_all(f32_path.parent().unwrap()).unwrap();
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}

#[test]
fn int8_dynamic_quantizes_f32_weights_at_load() {
    let f32_path = quantized_copy(&Store::F32, "dynamic");
    let reference = encoder(&f32_path, Execution::Float);
    let w8a8 = encoder(&f32_path, Execution::Int8Dynamic);
    assert!(kernels(&w8a8).iter().all(|k| k.starts_with("W8A8")));
    // f32 weights under the default run in f32.
    assert!(
        kernels(&encoder(&f32_path, Execution::Stored))
            .iter()
            .all(|k| k == "f32")
    );
    let err = relative_error(&w8a8, &reference);
    assert!(err < 0.4, "W8A8 vs f32, relative error {err}");
    // Thread count does not change the integer path's results.
    let many: Vec<&str> = SENTENCES.iter().cycle().take(70).copied().collect();
    let seq = w8a8.embed(&many, Par::Seq).unwrap();
    assert_eq!(w8a8.embed(&many, Par::Rayon(3)).unwrap(), seq);
    std::fs::remove_dir_all(f32_path.parent().unwrap()).unwrap();
}

#[test]
fn execution_names_parse() {
    assert_eq!(Execution::parse("float").unwrap(), Execution::Float);
    assert_eq!(Execution::parse("stored").unwrap(), Execution::Stored);
    assert_eq!(Execution::default(), Execution::Stored);
    let err = Execution::parse("fp8").unwrap_err().to_string();
    assert!(err.contains("fp8") && err.contains("stored"), "{err}");
}
