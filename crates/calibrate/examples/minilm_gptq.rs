//! Calibrates MiniLM's linear layers on the first 500 default sentences and compares the
//! embeddings of the other 280 with the f32 model's (the embedding tables stay f32 here; the
//! `modelopt quantize --calibrate` command quantizes them too).
//!
//! `cargo run --release -p modelopt-calibrate --features rayon --example minilm_gptq -- MODEL_DIR SENTENCES [gptq|imatrix] [q4_0|q8_0|int4]`

use std::time::Instant;

use modelopt_bert::SentenceEncoder;
use modelopt_calibrate::{Calibrator, Format, Method, batches};
use modelopt_quantize::ggml::GgmlType;
use modelopt_quantize::gptq::Gptq;
use modelopt_tensor_core::Par;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map_or("/work/models/minilm", |s| s.as_str());
    let text = args
        .get(2)
        .map_or("/work/shared/data/sentences.txt", |s| s.as_str());
    let method = match args.get(3).map_or("gptq", |s| s.as_str()) {
        "imatrix" => Method::Imatrix,
        _ => Method::Gptq,
    };
    let format = match args.get(4).map_or("q4_0", |s| s.as_str()) {
        "q8_0" => Format::Ggml(GgmlType::Q8_0),
        "int4" => Format::Int4 { group_size: 32 },
        "q4_k" => Format::Ggml(GgmlType::Q4_K),
        "q3_k" => Format::Ggml(GgmlType::Q3_K),
        _ => Format::Ggml(GgmlType::Q4_0),
    };
    let act_order = args.iter().any(|a| a == "--act-order");
    let enc = SentenceEncoder::from_dir(dir)?;
    let lines: Vec<String> = std::fs::read_to_string(text)?
        .lines()
        .map(String::from)
        .collect();
    let (cal, eval) = lines.split_at(500.min(lines.len()));
    let par = Par::all_cores();
    let b = batches(enc.tokenizer(), cal)?;
    let mut model = enc.model().clone();
    let t = Instant::now();
    let c = Calibrator::new(method, format)
        .gptq(Gptq::new().act_order(act_order))
        .par(par)
        .calibrate(&mut model, &b)?;
    let secs = t.elapsed().as_secs_f64();
    let reference = enc.embed(eval, par)?.vectors;
    let eb = batches(enc.tokenizer(), eval)?;
    let mut cos = Vec::new();
    let mut row = 0;
    for batch in &eb {
        let e = model.embed(batch, par)?;
        for r in e.rows() {
            cos.push(r.dot(&reference.row(row)));
            row += 1;
        }
    }
    let mean = cos.iter().sum::<f32>() / cos.len() as f32;
    let min = cos.iter().copied().fold(1.0f32, f32::min);
    println!(
        "{method:?} {format:?} act_order={act_order}: {} tensors, {} tokens, {secs:.1} s; mean cosine {mean:.4}, min {min:.4}",
        c.tensors.len(),
        c.tokens
    );
    Ok(())
}
