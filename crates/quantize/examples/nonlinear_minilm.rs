//! Is nonlinear worth it? SQNR of uniform and codebook quantization on a real checkpoint, per
//! tensor and overall, at 3 and 4 bits, with the storage of scales and codebooks counted.
//!
//! ```text
//! cargo run --release -p modelopt-quantize --example nonlinear_minilm -- /work/models/minilm/model.safetensors
//! ```
//!
//! Every 2-D F32 tensor is quantized. "overall" is `10 log10(sum x^2 / sum e^2)` over all of
//! them, and its bits per weight is total storage over total weights (uniform codes counted as
//! densely packed `b`-bit codes, as the codebook indices are). Methods:
//! - `uni-ch`: symmetric uniform, one scale per row; `uni-g64` / `aff-g64`: symmetric / affine
//!   uniform, one scale (and zero point) per 64 weights of a row;
//! - `nf4` / `fp4`: bitsandbytes' formats, block 64 (4 bits only);
//! - `km-ch`: k-means, one 2^b-level codebook per row (Deep Compression);
//! - `learned`: k-means over the absmax-normalised blocks of 64, one codebook per tensor;
//! - `learned-w`: the same, each normalised weight weighted by its block's absmax squared, so
//!   the codebook minimises the error of the weights themselves (SqueezeLLM-style weighting);
//! - `log2-ch`: logarithmic levels `0, ±2^-k`, one scale per row.
//!
//! - `iq4_nl` / `iq4_xs`: llama.cpp's non-uniform 4-bit GGML types (4 bits only); rows that are
//!   not a multiple of 256 fall back from IQ4_XS to IQ4_NL, as llama-quantize does.

use std::collections::BTreeMap;

use modelopt_quantize::QuantScheme;
use modelopt_quantize::codebook::{Bnb4, CodebookScheme};
use modelopt_quantize::ggml::{self, GgmlType};
use ndarray::{Array2, Axis};
use safetensors::{Dtype, SafeTensors};

/// Squared-signal and squared-error sums and storage bits of one method over the tensors so far.
#[derive(Default, Clone, Copy)]
struct Sums {
    signal: f64,
    error: f64,
    bits: f64,
    n: f64,
}

impl Sums {
    fn add(&mut self, x: &Array2<f32>, y: &Array2<f32>, storage_bytes: usize) -> f64 {
        let (s, e) = x.iter().zip(y).fold((0.0, 0.0), |(s, e), (&a, &b)| {
            let d = f64::from(a) - f64::from(b);
            (s + f64::from(a) * f64::from(a), e + d * d)
        });
        self.signal += s;
        self.error += e;
        self.bits += storage_bytes as f64 * 8.0;
        self.n += x.len() as f64;
        10.0 * (s / e.max(f64::MIN_POSITIVE)).log10()
    }

    fn db(&self) -> f64 {
        10.0 * (self.signal / self.error.max(f64::MIN_POSITIVE)).log10()
    }

    fn bpw(&self) -> f64 {
        self.bits / self.n
    }
}

type Method = (
    &'static str,
    fn(&Array2<f32>, u8) -> Option<(Array2<f32>, usize)>,
);

fn methods() -> Vec<Method> {
    vec![
        ("uni-ch", |w, b| {
            let q = QuantScheme::new(b).per_channel(0).quantize(w).ok()?;
            Some((
                q.dequantize(),
                dense(q.storage_bytes(), q.packed_codes().len(), w.len(), b),
            ))
        }),
        ("uni-g64", |w, b| {
            let q = QuantScheme::new(b).per_group(1, 64).quantize(w).ok()?;
            Some((
                q.dequantize(),
                dense(q.storage_bytes(), q.packed_codes().len(), w.len(), b),
            ))
        }),
        ("aff-g64", |w, b| {
            let q = QuantScheme::new(b)
                .affine()
                .signed(false)
                .per_group(1, 64)
                .quantize(w)
                .ok()?;
            Some((
                q.dequantize(),
                dense(q.storage_bytes(), q.packed_codes().len(), w.len(), b),
            ))
        }),
        ("nf4", |w, b| {
            let q = (b == 4).then(Bnb4::nf4)?.quantize(w).ok()?;
            Some((q.dequantize(), q.storage_bytes()))
        }),
        ("fp4", |w, b| {
            let q = (b == 4).then(Bnb4::fp4)?.quantize(w).ok()?;
            Some((q.dequantize(), q.storage_bytes()))
        }),
        ("km-ch", |w, b| {
            let q = CodebookScheme::kmeans(b).per_channel(0).quantize(w).ok()?;
            Some((q.dequantize(), q.storage_bytes()))
        }),
        ("learned", |w, b| {
            let q = CodebookScheme::learned_nf4(b, 64).quantize(w).ok()?;
            Some((q.dequantize(), q.storage_bytes()))
        }),
        ("learned-w", |w, b| {
            let q = CodebookScheme::learned_nf4(b, 64)
                .scale_weighted(true)
                .quantize(w)
                .ok()?;
            Some((q.dequantize(), q.storage_bytes()))
        }),
        ("log2-ch", |w, b| {
            let q = CodebookScheme::logarithmic(b)
                .per_channel(0)
                .quantize(w)
                .ok()?;
            Some((q.dequantize(), q.storage_bytes()))
        }),
        ("iq4_nl", |w, b| {
            (b == 4).then(|| ggml_rows(GgmlType::IQ4_NL, w))?
        }),
        ("iq4_xs", |w, b| {
            (b == 4).then(|| ggml_rows(GgmlType::IQ4_XS, w))?
        }),
    ]
}

/// Quantizes `w` row by row to a GGML type (IQ4_XS falls back to IQ4_NL on rows that are not a
/// multiple of its 256-weight super-block, as llama-quantize does): dequantized values and bytes.
fn ggml_rows(ty: GgmlType, w: &Array2<f32>) -> Option<(Array2<f32>, usize)> {
    let cols = w.ncols();
    let ty = if cols.is_multiple_of(ty.block_size()) {
        ty
    } else {
        GgmlType::IQ4_NL
    };
    let x: Vec<f32> = w.iter().copied().collect();
    let q = ggml::quantize(ty, &x).ok()?;
    let y = ggml::dequantize(ty, &q, x.len()).ok()?;
    Some((Array2::from_shape_vec(w.raw_dim(), y).ok()?, q.len()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: nonlinear_minilm MODEL.safetensors")?;
    let bytes = std::fs::read(&path)?;
    let st = SafeTensors::deserialize(&bytes)?;
    let mut names: Vec<String> = st
        .tensors()
        .into_iter()
        .filter(|(_, v)| v.dtype() == Dtype::F32 && v.shape().len() == 2)
        .map(|(n, _)| n)
        .collect();
    names.sort();
    let methods = methods();
    for bits in [4u8, 3] {
        let mut total: BTreeMap<&str, Sums> = BTreeMap::new();
        println!("\n### {bits} bits: SQNR (dB) per tensor\n");
        println!(
            "| tensor | {} |",
            methods.iter().map(|m| m.0).collect::<Vec<_>>().join(" | ")
        );
        println!("|---|{}", "---:|".repeat(methods.len()));
        for name in &names {
            let v = st.tensor(name)?;
            let data: Vec<f32> = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let w = Array2::from_shape_vec((v.shape()[0], v.shape()[1]), data)?;
            // Tensors whose rows are shorter than a group are left out of every method.
            if w.len_of(Axis(1)) % 64 != 0 {
                continue;
            }
            let cells: Vec<String> = methods
                .iter()
                .map(|(m, f)| match f(&w, bits) {
                    Some((y, storage)) => {
                        format!("{:.2}", total.entry(m).or_default().add(&w, &y, storage))
                    }
                    None => "-".into(),
                })
                .collect();
            println!("| {} | {} |", short(name), cells.join(" | "));
        }
        println!("\n### {bits} bits: overall\n");
        println!("| method | bits/weight | SQNR dB |\n|---|---:|---:|");
        for (m, _) in &methods {
            if let Some(s) = total.get(m) {
                println!("| {m} | {:.3} | {:.2} |", s.bpw(), s.db());
            }
        }
    }
    Ok(())
}

/// Storage with the uniform codes packed densely at `b` bits (modelopt's uniform format keeps
/// codes of 3 or 4 bits in nibbles), so every method is charged `b` bits per code.
fn dense(storage: usize, packed_codes: usize, n: usize, b: u8) -> usize {
    storage - packed_codes + (n * usize::from(b)).div_ceil(8)
}

/// `encoder.layer.3.attention.self.query.weight` -> `3.attention.self.query`.
fn short(name: &str) -> String {
    name.trim_start_matches("encoder.layer.")
        .trim_end_matches(".weight")
        .to_string()
}
