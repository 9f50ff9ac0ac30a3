//! Sentences per second on a text file, one thread: `cargo run --release -p modelopt-bert --example embed_speed -- MODEL_DIR [WEIGHTS] [TEXT] [ROUNDS] [EXEC]`
//! (EXEC: `stored`, the default, `float` or `int8`; see `modelopt_bert::Execution`).
//! Best of ROUNDS (default 3) runs of `SentenceEncoder::embed` (tokenisation included) over the
//! text, wall and thread CPU seconds; prints one JSON line (used by benches/compare/bert.py).

use std::time::Instant;

use modelopt_bert::{Execution, SentenceEncoder};
use modelopt_tensor_core::Par;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args
        .first()
        .ok_or("usage: embed_speed MODEL_DIR [WEIGHTS] [TEXT] [ROUNDS] [EXEC]")?;
    let weights = args
        .get(1)
        .filter(|w| !w.is_empty())
        .cloned()
        .unwrap_or_else(|| format!("{dir}/model.safetensors"));
    let text = match args.get(2).filter(|t| !t.is_empty()) {
        Some(p) => std::fs::read_to_string(p)?,
        None => std::fs::read_to_string(format!(
            "{}/../cli/data/sentences.txt",
            env!("CARGO_MANIFEST_DIR")
        ))?,
    };
    let rounds: usize = args.get(3).map_or(Ok(3), |r| r.parse())?;
    let exec = Execution::parse(args.get(4).map_or("stored", String::as_str))?;
    let texts: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let enc = SentenceEncoder::with_weights_and(dir, weights, exec)?;
    let t = Instant::now();
    let tok = enc.tokenizer().encode(&texts)?;
    let tok_secs = t.elapsed().as_secs_f64();
    let (mut best, mut best_cpu) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..rounds {
        let (t, c) = (Instant::now(), cpu_time::ThreadTime::now());
        let e = enc.embed(&texts, Par::Seq)?; // tokenises and runs, 32 sentences a batch
        best_cpu = best_cpu.min(c.elapsed().as_secs_f64());
        best = best.min(t.elapsed().as_secs_f64());
        assert_eq!(e.vectors.nrows(), texts.len());
    }
    println!(
        "{{\"sentences\": {}, \"tokens\": {}, \"tokenize_seconds\": {tok_secs:.4}, \"wall_seconds\": {best:.4}, \"cpu_seconds\": {best_cpu:.4}}}",
        texts.len(),
        tok.batch.tokens(),
    );
    Ok(())
}
