//! `modelopt inspect FILE [--json]`: every tensor and the totals.

use std::path::PathBuf;

use modelopt_io::Checkpoint;
use serde_json::json;

use crate::error::{CliResult, failure};
use crate::format::{bytes, print_table};

/// Arguments of `modelopt inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A safetensors or GGUF file.
    pub file: PathBuf,
    /// Print one JSON document on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `inspect`.
pub fn run(args: &InspectArgs) -> CliResult<()> {
    let ckpt = Checkpoint::open(&args.file)?;
    let file_bytes = std::fs::metadata(&args.file)
        .map_err(|e| failure(&args.file, e))?
        .len();
    let mut rows = Vec::new();
    let mut items = Vec::new();
    let (mut total_params, mut total_bytes) = (0u64, 0u64);
    for t in ckpt.tensors() {
        let params = t.info.elements()? as u64;
        total_params += params;
        total_bytes += t.stored_bytes as u64;
        rows.push(vec![
            t.info.name.clone(),
            t.type_name().to_string(),
            format!("{:?}", t.info.shape),
            params.to_string(),
            t.stored_bytes.to_string(),
        ]);
        items.push(json!({
            "name": t.info.name, "dtype": t.type_name(), "shape": t.info.shape,
            "parameters": params, "bytes": t.stored_bytes,
        }));
    }
    if args.json {
        let doc = json!({
            "file": args.file.display().to_string(),
            "format": ckpt.format().name(),
            "tensors": items,
            "total_tensors": rows.len(),
            "total_parameters": total_params,
            "total_bytes": total_bytes,
            "file_bytes": file_bytes,
        });
        println!("{doc}");
        return Ok(());
    }
    println!("{} ({})", args.file.display(), ckpt.format().name());
    if let Checkpoint::Gguf(g) = &ckpt {
        println!(
            "GGUF v{}, alignment {}, {} metadata keys",
            g.version(),
            g.alignment(),
            g.metadata().len()
        );
    }
    print_table(&["name", "dtype", "shape", "parameters", "bytes"], &rows);
    println!(
        "total: {} tensors, {} parameters, {} of tensor data ({}), file {}",
        rows.len(),
        total_params,
        total_bytes,
        bytes(total_bytes),
        bytes(file_bytes)
    );
    Ok(())
}
