//! What each pipeline stage cost in accuracy and saved in size.

use std::path::PathBuf;

use serde_json::{Value, json};

/// One row of the pipeline's table: a model after a stage, measured from the file it wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct StageReport {
    /// What was done (`teacher`, `student (distilled)`, `pruned + fine-tuned`, `int8`, ...).
    pub stage: String,
    /// How the weight matrices are stored (`f32`, `int8`, `int4-g32`).
    pub format: String,
    /// Parameters of the network (weights and biases).
    pub parameters: usize,
    /// Multiply-accumulates per sample (convolutions and linear layers; FLOPs are twice this).
    pub macs: usize,
    /// Parameters that are not zero.
    pub nonzero: usize,
    /// Size of the safetensors file; for quantized CNN rows, which have no file format yet, the
    /// bytes of the weight codes and scales plus the f32 biases.
    pub bytes: u64,
    /// Top-1 accuracy on the test split, of the network read back from the file.
    pub test_accuracy: f64,
    /// Top-1 agreement with the teacher on the test split.
    pub agreement: f64,
    /// For rows run in integers: the test accuracy of the same quantized weights dequantized to
    /// f32 (the simulation the integer path replaces); `None` for float rows.
    pub simulated_accuracy: Option<f64>,
    /// Inference time per sample at batch 1, one thread, in microseconds (best of 3 passes).
    pub latency_b1_us: f64,
    /// Inference time per sample at batch 64, one thread, in microseconds (best of 3 passes).
    pub latency_b64_us: f64,
    /// Wall time of the stage in seconds.
    pub seconds: f64,
    /// The file written.
    pub path: PathBuf,
}

/// Every stage of a [`super::Pipeline`] run, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PipelineReport {
    /// The rows, teacher first.
    pub stages: Vec<StageReport>,
}

impl PipelineReport {
    /// The row named `stage`, if present.
    pub fn stage(&self, stage: &str) -> Option<&StageReport> {
        self.stages.iter().find(|s| s.stage == stage)
    }

    /// The last stage's row: the final model.
    pub fn final_stage(&self) -> Option<&StageReport> {
        self.stages.last()
    }

    /// Teacher file size divided by the final model's file size.
    pub fn compression(&self) -> f64 {
        match (self.stages.first(), self.stages.last()) {
            (Some(t), Some(f)) if f.bytes > 0 => t.bytes as f64 / f.bytes as f64,
            _ => 0.0,
        }
    }

    /// Teacher multiply-accumulates per sample divided by the final model's.
    pub fn macs_reduction(&self) -> f64 {
        match (self.stages.first(), self.stages.last()) {
            (Some(t), Some(f)) if f.macs > 0 => t.macs as f64 / f.macs as f64,
            _ => 0.0,
        }
    }

    /// A plain-text table, one row per stage.
    pub fn to_table(&self) -> String {
        let w = self
            .stages
            .iter()
            .map(|s| s.stage.chars().count())
            .max()
            .unwrap_or(0)
            .max(40);
        let mut out = format!(
            "{:<w$} {:>12} {:>8} {:>10} {:>8} {:>9} {:>9} {:>8} {:>10} {:>9} {:>10} {:>7}\n",
            "stage",
            "format",
            "params",
            "MACs",
            "nonzero",
            "bytes",
            "test acc",
            "sim acc",
            "agreement",
            "us/x b1",
            "us/x b64",
            "time s"
        );
        for s in &self.stages {
            let sim = s
                .simulated_accuracy
                .map_or("-".to_string(), |a| format!("{:.2}%", 100.0 * a));
            out.push_str(&format!(
                "{:<w$} {:>12} {:>8} {:>10} {:>8} {:>9} {:>8.2}% {:>8} {:>9.2}% {:>9.2} {:>10.3} {:>7.2}\n",
                s.stage,
                s.format,
                s.parameters,
                s.macs,
                s.nonzero,
                s.bytes,
                100.0 * s.test_accuracy,
                sim,
                100.0 * s.agreement,
                s.latency_b1_us,
                s.latency_b64_us,
                s.seconds
            ));
        }
        out.push_str(&format!(
            "final model {:.1}x smaller on disk than the teacher, {:.1}x fewer MACs\n",
            self.compression(),
            self.macs_reduction()
        ));
        out
    }

    /// The same as a JSON value.
    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .stages
            .iter()
            .map(|s| {
                json!({
                    "stage": s.stage, "format": s.format, "parameters": s.parameters, "macs": s.macs,
                    "nonzero": s.nonzero, "bytes": s.bytes, "test_accuracy": s.test_accuracy,
                    "agreement": s.agreement, "seconds": s.seconds,
                    "simulated_accuracy": s.simulated_accuracy,
                    "latency_b1_us": s.latency_b1_us, "latency_b64_us": s.latency_b64_us, "path": s.path.display().to_string(),
                })
            })
            .collect();
        json!({ "stages": rows, "compression": self.compression(), "macs_reduction": self.macs_reduction() })
    }
}
