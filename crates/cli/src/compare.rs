//! `modelopt compare A B [--json]`: per-tensor error metrics between two checkpoints.

use std::path::PathBuf;

use modelopt_io::Checkpoint;
use modelopt_tensor_core::ErrorMetrics;
use serde_json::json;

use crate::error::{CliResult, failure};
use crate::format::{db, json_f64, print_table};

/// Arguments of `modelopt compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Reference checkpoint (safetensors or GGUF).
    pub a: PathBuf,
    /// Checkpoint compared with it (safetensors or GGUF; dequantized as needed).
    pub b: PathBuf,
    /// Print one JSON document on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `compare`.
pub fn run(args: &CompareArgs) -> CliResult<()> {
    let a = Checkpoint::open(&args.a)?;
    let b = Checkpoint::open(&args.b)?;
    let b_tensors = b.tensors();
    let mut rows = Vec::new();
    let mut items = Vec::new();
    let (mut sum_sq_x, mut sum_sq_err) = (0.0f64, 0.0f64);
    for ta in a.tensors() {
        let name = &ta.info.name;
        let Some(tb) = b_tensors.iter().find(|t| &t.info.name == name) else {
            rows.push(vec![
                name.clone(),
                ta.info.dtype.to_string(),
                "-".into(),
                "missing in B".into(),
            ]);
            items.push(json!({"name": name, "status": "missing in B"}));
            continue;
        };
        let (da, dbt) = (ta.type_name(), tb.type_name());
        if ta.info.shape != tb.info.shape {
            let s = format!("shape {:?} vs {:?}", ta.info.shape, tb.info.shape);
            rows.push(vec![
                name.clone(),
                da.to_string(),
                dbt.to_string(),
                s.clone(),
            ]);
            items.push(json!({"name": name, "status": s}));
            continue;
        }
        if !(ta.is_float() && tb.is_float()) {
            let same = a.tensor_bytes(name)? == b.tensor_bytes(name)? && da == dbt;
            let s = if same {
                "identical"
            } else {
                "differ (not float)"
            };
            rows.push(vec![
                name.clone(),
                da.to_string(),
                dbt.to_string(),
                s.into(),
            ]);
            items.push(json!({"name": name, "dtype_a": da, "dtype_b": dbt, "status": s}));
            continue;
        }
        let x = a.tensor_f32(name)?;
        let y = b.tensor_f32(name)?;
        a.release(name)?;
        b.release(name)?;
        if x.is_empty() {
            rows.push(vec![
                name.clone(),
                da.to_string(),
                dbt.to_string(),
                "empty".into(),
            ]);
            items.push(json!({"name": name, "status": "empty"}));
            continue;
        }
        let m = ErrorMetrics::between_slices(&x, &y)
            .map_err(|e| failure(&args.b, format!("tensor `{name}`: {e}")))?;
        for (p, q) in x.iter().zip(&y) {
            let (p, q) = (f64::from(*p), f64::from(*q));
            sum_sq_x += p * p;
            sum_sq_err += (p - q) * (p - q);
        }
        rows.push(vec![
            name.clone(),
            da.to_string(),
            dbt.to_string(),
            format!(
                "SQNR {} dB, MSE {:.3e}, max |err| {:.3e}, cosine {:.6}",
                db(m.sqnr_db),
                m.mse,
                m.max_abs_error,
                m.cosine
            ),
        ]);
        items.push(
            json!({"name": name, "dtype_a": da, "dtype_b": dbt, "status": "compared",
            "sqnr_db": json_f64(m.sqnr_db), "mse": json_f64(m.mse),
            "max_abs_error": json_f64(m.max_abs_error), "cosine": json_f64(m.cosine)}),
        );
    }
    let a_tensors = a.tensors();
    for tb in &b_tensors {
        if a_tensors.iter().all(|t| t.info.name != tb.info.name) {
            rows.push(vec![
                tb.info.name.clone(),
                "-".into(),
                tb.info.dtype.to_string(),
                "missing in A".into(),
            ]);
            items.push(json!({"name": tb.info.name, "status": "missing in A"}));
        }
    }
    let overall = if sum_sq_err == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (sum_sq_x / sum_sq_err).log10()
    };
    if args.json {
        let doc = json!({"a": args.a.display().to_string(), "b": args.b.display().to_string(),
            "tensors": items, "overall_sqnr_db": json_f64(overall)});
        println!("{doc}");
    } else {
        print_table(&["name", "dtype A", "dtype B", "result"], &rows);
        println!(
            "overall SQNR over compared float tensors: {} dB",
            db(overall)
        );
    }
    Ok(())
}
