//! Pipeline rows measured through the integer path (`crate::quantized`), and the latency column.

use std::path::Path;
use std::time::Instant;

use modelopt_distill::{accuracy, agreement};
use modelopt_kernels::{BlockFormat, Par};
use modelopt_nn::Mlp;
use ndarray::{Array2, ArrayRef2, ArrayView2, Axis};

use super::{Eval, StageReport, WeightFormat, load_mlp, save_mlp};
use crate::Result;
use crate::quantized::{Calibration, LinearScheme, QuantizedLinear, QuantizedMlp};

/// Per-sample inference time in microseconds at batch 1 (the first 64 samples one at a time) and
/// at batch 64 (all of `x` in batches of 64), the best of 3 passes, wall clock, calling thread.
pub(super) fn latency(
    x: &ArrayRef2<f32>,
    predict: impl Fn(ArrayView2<'_, f32>) -> Result<Array2<f32>>,
) -> Result<(f64, f64)> {
    let best = |run: &dyn Fn() -> Result<usize>| -> Result<f64> {
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            let samples = run()?;
            best = best.min(t.elapsed().as_secs_f64() * 1e6 / samples.max(1) as f64);
        }
        Ok(best)
    };
    let single = x.nrows().min(64);
    let b1 = best(&|| {
        for i in 0..single {
            std::hint::black_box(predict(x.slice(ndarray::s![i..i + 1, ..]))?);
        }
        Ok(single)
    })?;
    let b64 = best(&|| {
        for chunk in x.axis_chunks_iter(Axis(0), 64) {
            std::hint::black_box(predict(chunk)?);
        }
        Ok(x.nrows())
    })?;
    Ok((b1, b64))
}

/// The pipeline's weight format as an integer-path scheme per layer (int4: the effective group of
/// each layer, as the saved file uses).
fn schemes(format: WeightFormat, net: &Mlp<f32>) -> Vec<LinearScheme> {
    net.layers()
        .iter()
        .map(|l| match format {
            WeightFormat::Int4Grouped { group_size } => {
                LinearScheme::WeightOnly(BlockFormat::Int4 {
                    group: WeightFormat::effective_group(group_size, l.in_features()),
                })
            }
            _ => LinearScheme::W8A8Dynamic,
        })
        .collect()
}

impl Eval<'_, '_> {
    /// A row measured through the integer path: `net` converted with the scheme for `format`
    /// (`static_calibration`: W8A8 static calibrated on the training inputs instead of dynamic),
    /// saved to `path`, read back and run; the dequantized simulation of the same weights
    /// (written to `simulation_path`) gives `simulated_accuracy`.
    pub(super) fn integer_row(
        &self,
        stage: &str,
        format: WeightFormat,
        static_calibration: Option<Calibration>,
        net: &Mlp<f32>,
        (path, simulation_path): (&Path, &Path),
        started: Instant,
    ) -> Result<StageReport> {
        save_mlp(net, simulation_path, format)?;
        let simulated = load_mlp(simulation_path, net)?.predict(&self.test.inputs())?;
        let mut layers = Vec::new();
        for (dense, scheme) in net.layers().iter().zip(schemes(format, net)) {
            let scheme = match static_calibration {
                Some(_) => LinearScheme::W8A8Static,
                None => scheme,
            };
            layers.push(QuantizedLinear::from_dense(dense, scheme)?);
        }
        let mut q = QuantizedMlp::from_layers(layers, net.activation())?;
        if let Some(cal) = static_calibration {
            q.calibrate(net, &self.calibration, 64, cal)?;
        }
        let bytes = q.save(path)?;
        let loaded = QuantizedMlp::load(path)?;
        let inputs = self.test.inputs();
        let out = loaded.predict(&inputs, Par::Seq)?;
        let (b1, b64) = latency(&inputs, |x| loaded.predict(&x, Par::Seq))?;
        let scheme_name = loaded.layers()[0].scheme().name();
        Ok(StageReport {
            stage: stage.to_string(),
            format: scheme_name,
            parameters: net.parameter_count(),
            macs: super::mlp_macs(net),
            nonzero: net
                .named_parameters()
                .values()
                .map(|p| p.iter().filter(|v| **v != 0.0).count())
                .sum(),
            bytes,
            test_accuracy: accuracy(&out, self.test.labels())?,
            agreement: agreement(&out, &self.teacher_test)?,
            simulated_accuracy: Some(accuracy(&simulated, self.test.labels())?),
            latency_b1_us: b1,
            latency_b64_us: b64,
            seconds: started.elapsed().as_secs_f64(),
            path: path.to_path_buf(),
        })
    }
}
