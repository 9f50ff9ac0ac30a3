//! Opt-in: sequential GPTQ on all-MiniLM-L6-v2 beats round-to-nearest on held-out sentences.
//!
//! `MODELOPT_MINILM_DIR=/work/models/minilm MODELOPT_SENTENCES=/work/shared/data/sentences.txt
//! cargo test --release -p modelopt-calibrate --test minilm -- --nocapture`

use modelopt_bert::SentenceEncoder;
use modelopt_calibrate::{Calibrator, Format, Method, batches};
use modelopt_quantize::ggml::{self, GgmlType};
use modelopt_tensor_core::Par;
use ndarray::Array2;

fn mean_cosine(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    a.rows()
        .into_iter()
        .zip(b.rows())
        .map(|(x, y)| x.dot(&y))
        .sum::<f32>()
        / a.nrows() as f32
}

#[test]
fn gptq_beats_round_to_nearest_on_held_out_sentences() {
    let (Some(dir), Some(text)) = (
        std::env::var_os("MODELOPT_MINILM_DIR"),
        std::env::var_os("MODELOPT_SENTENCES"),
    ) else {
        eprintln!("SKIPPED: set MODELOPT_MINILM_DIR and MODELOPT_SENTENCES");
        return;
    };
    let enc = SentenceEncoder::from_dir(&dir).unwrap();
    let lines: Vec<String> = std::fs::read_to_string(text)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let (cal, eval) = (&lines[..128], &lines[500..600]);
    let par = Par::Seq;
    let reference = enc.embed(eval, par).unwrap().vectors;
    let eb = batches(enc.tokenizer(), eval).unwrap();
    let embed = |m: &modelopt_bert::BertModel| {
        let mut rows = Vec::new();
        for b in &eb {
            rows.push(m.embed(b, par).unwrap());
        }
        ndarray::concatenate(
            ndarray::Axis(0),
            &rows.iter().map(|r| r.view()).collect::<Vec<_>>(),
        )
        .unwrap()
    };
    // Round to nearest: every linear weight through Q4_0.
    let mut rtn = enc.model().clone();
    for name in enc.model().linear_names() {
        let w = enc.model().linear_weight(name).unwrap().to_owned();
        let flat: Vec<f32> = w.iter().copied().collect();
        let q = ggml::quantize(GgmlType::Q4_0, &flat).unwrap();
        let back = ggml::dequantize(GgmlType::Q4_0, &q, flat.len()).unwrap();
        rtn.set_linear_weight(name, Array2::from_shape_vec(w.dim(), back).unwrap().view())
            .unwrap();
    }
    let mut gptq = enc.model().clone();
    let c = Calibrator::new(Method::Gptq, Format::Ggml(GgmlType::Q4_0))
        .calibrate(&mut gptq, &batches(enc.tokenizer(), cal).unwrap())
        .unwrap();
    assert_eq!(c.tensors.len(), 36);
    let (r, g) = (
        mean_cosine(&reference, &embed(&rtn)),
        mean_cosine(&reference, &embed(&gptq)),
    );
    println!("mean cosine: RTN {r:.4}, GPTQ {g:.4}");
    assert!(1.0 - g < 0.5 * (1.0 - r), "GPTQ {g} vs RTN {r}");
}
