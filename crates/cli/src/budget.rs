//! `quantize --bpw B` / `--size S`: per-tensor types from a ladder under a size budget, chosen
//! to minimise the total importance-weighted squared error (beyond llama.cpp).
//!
//! Each eligible tensor is quantized to every type of the ladder that fits its rows and its
//! error `sum_j w_j (x_ij - x̂_ij)^2` measured (`w` = its imatrix entry, 1 without one), then a
//! greedy marginal-gain allocation: every tensor starts at its cheapest type, and while bytes
//! remain, the upgrade with the largest error decrease per added byte that still fits is taken
//! (an upgrade may skip rungs, so a non-convex error curve does not stop a tensor early).

use modelopt_io::Checkpoint;
use modelopt_quantize::ggml::{self, GgmlType, Par};

use crate::error::{CliResult, failure};

/// The ladder, cheapest first.
pub const LADDER: [GgmlType; 6] = [
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_0,
];

/// One tensor's options: `(type, bytes, weighted error)`, cheapest first.
pub type Options = Vec<(GgmlType, usize, f64)>;

/// Measures the options of tensor `name` (rows of `row_len`) with column weights `w`.
pub fn measure(
    input: &Checkpoint,
    name: &str,
    row_len: usize,
    w: Option<&[f32]>,
) -> CliResult<Options> {
    let x = input.tensor_f32(name)?;
    let bad = |e: String| failure(input.path(), format!("tensor `{name}`: {e}"));
    let mut out = Vec::new();
    for ty in LADDER {
        if !row_len.is_multiple_of(ty.block_size()) {
            continue;
        }
        let n = ty.row_bytes(row_len).map_err(|e| bad(e.to_string()))? * (x.len() / row_len);
        let mut q = vec![0u8; n];
        match w {
            Some(w) if ty.uses_importance() => {
                ggml::quantize_rows_imatrix(ty, &x, row_len, w, &mut q, Par::all_cores())
            }
            _ => ggml::quantize_rows(ty, &x, row_len, &mut q, Par::all_cores()),
        }
        .map_err(|e| bad(e.to_string()))?;
        ggml::rederive_codes(ty, &x, &mut q).map_err(|e| bad(e.to_string()))?;
        let y = ggml::dequantize(ty, &q, x.len()).map_err(|e| bad(e.to_string()))?;
        let err: f64 = x
            .chunks_exact(row_len)
            .zip(y.chunks_exact(row_len))
            .map(|(a, b)| {
                a.iter()
                    .zip(b)
                    .enumerate()
                    .map(|(j, (p, q))| {
                        let d = f64::from(p - q);
                        w.map_or(1.0, |w| f64::from(w[j])) * d * d
                    })
                    .sum::<f64>()
            })
            .sum();
        out.push((ty, n, err));
    }
    Ok(out)
}

/// The greedy allocation: one index into each tensor's options, for at most `budget` bytes;
/// `None` when even the cheapest types exceed it.
pub fn allocate(options: &[Options], budget: usize) -> Option<Vec<usize>> {
    let mut pick = vec![0usize; options.len()];
    let mut used: usize = options.iter().map(|o| o.first().map_or(0, |c| c.1)).sum();
    if used > budget {
        return None;
    }
    loop {
        // The upgrade with the best error decrease per byte that fits.
        let mut best: Option<(f64, usize, usize)> = None;
        for (t, o) in options.iter().enumerate() {
            let (_, size, err) = o[pick[t]];
            for (k, &(_, s, e)) in o.iter().enumerate().skip(pick[t] + 1) {
                if s <= size || used - size + s > budget || e >= err {
                    continue;
                }
                let gain = (err - e) / (s - size) as f64;
                if best.is_none_or(|b| gain > b.0) {
                    best = Some((gain, t, k));
                }
            }
        }
        let Some((_, t, k)) = best else {
            return Some(pick);
        };
        used = used - options[t][pick[t]].1 + options[t][k].1;
        pick[t] = k;
    }
}

/// `--size`: bytes from `3.2GiB`, `800MiB`, `500MB`, `123456` (B/KiB/MiB/GiB/KB/MB/GB).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("--size {s}: not a number with a unit (e.g. 3.2GiB)"))?;
    let mul = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        u => {
            return Err(format!(
                "--size {s}: unknown unit `{u}` (B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("--size {s}: must be positive"));
    }
    Ok((v * mul) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_best_gain_per_byte_within_the_budget() {
        let g = GgmlType::Q4_K;
        let a: Options = vec![(g, 10, 100.0), (g, 20, 10.0), (g, 30, 9.0)];
        let b: Options = vec![(g, 10, 50.0), (g, 20, 45.0), (g, 30, 1.0)];
        assert_eq!(allocate(&[a.clone(), b.clone()], 19), None);
        assert_eq!(allocate(&[a.clone(), b.clone()], 20), Some(vec![0, 0]));
        // a: 90/10 per byte beats b's 49/20 (skipping a rung).
        assert_eq!(allocate(&[a.clone(), b.clone()], 30), Some(vec![1, 0]));
        assert_eq!(allocate(&[a.clone(), b.clone()], 50), Some(vec![1, 2]));
        assert_eq!(allocate(&[a, b], 1000), Some(vec![2, 2]));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("3GiB"), Ok(3 << 30));
        assert_eq!(parse_size("1.5 MB"), Ok(1_500_000));
        assert_eq!(parse_size("42"), Ok(42));
        assert!(parse_size("3 parsecs").is_err());
        assert!(parse_size("-1GB").is_err());
    }
}
