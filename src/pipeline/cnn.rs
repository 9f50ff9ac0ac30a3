//! The pipeline's stages for a CNN student: distill on shifted images -> prune filters with their
//! dependencies -> fine-tune by distillation from the unpruned student -> fold batch norm ->
//! static quantization (weights, and int8 activations calibrated by an observer).

use std::path::Path;
use std::time::Instant;

use modelopt_distill::{
    Dataset, KdLoss, SequentialStudent, ShiftedSet, Shifts, accuracy, agreement, fit_shifted,
};
use modelopt_nn::{Adam, Sequential, fold_batch_norm, prune_filters_by};
use modelopt_quantize::observer::MinMaxObserver;
use modelopt_tensor_core::CoreError;
use ndarray::{Array2, ArrayView2, s};

use super::{
    CnnStudent, Pipeline, PipelineReport, PruneKind, QuantizedCnn, StageReport, StudentModel,
    WeightFormat, integer, load_sequential, save_sequential,
};
use crate::Result;
use crate::quantized::{Calibration, LinearScheme, QuantizedLayer, QuantizedSequential};
use modelopt_kernels::{BlockFormat, Par};

/// Measures CNN stages on the test split against the teacher's test outputs.
struct CnnEval<'a> {
    inputs: ArrayView2<'a, f32>,
    labels: &'a [usize],
    teacher_test: Array2<f32>,
}

/// Trainable scalars that are not zero (batch-norm running statistics are not parameters).
fn nonzero(net: &Sequential<f32>) -> usize {
    net.state_dict()
        .iter()
        .filter(|(k, _)| k.ends_with(".weight") || k.ends_with(".bias"))
        .map(|(_, v)| v.iter().filter(|x| **x != 0.0).count())
        .sum()
}

impl CnnEval<'_> {
    #[allow(clippy::too_many_arguments)]
    fn report(
        &self,
        stage: &str,
        format: String,
        net: &Sequential<f32>,
        bytes: u64,
        predict: impl Fn(ArrayView2<'_, f32>) -> Result<Array2<f32>>,
        path: &Path,
        started: Instant,
    ) -> Result<StageReport> {
        let out = predict(self.inputs.view())?;
        let (latency_b1_us, latency_b64_us) = integer::latency(&self.inputs, &predict)?;
        Ok(StageReport {
            stage: stage.to_string(),
            format,
            parameters: net.parameter_count(),
            macs: net.macs(),
            nonzero: nonzero(net),
            bytes,
            test_accuracy: accuracy(&out, self.labels)?,
            agreement: agreement(&out, &self.teacher_test)?,
            simulated_accuracy: None,
            latency_b1_us,
            latency_b64_us,
            seconds: started.elapsed().as_secs_f64(),
            path: path.to_path_buf(),
        })
    }

    /// An f32 row: `net` written to `path` (safetensors, torch names) and measured as read back.
    fn f32_row(
        &self,
        stage: &str,
        net: &Sequential<f32>,
        path: &Path,
        started: Instant,
    ) -> Result<StageReport> {
        let bytes = save_sequential(net, path)?;
        let loaded = load_sequential(path, net)?;
        self.report(
            stage,
            WeightFormat::F32.name(),
            &loaded,
            bytes,
            |x| Ok(loaded.predict(&x)?),
            path,
            started,
        )
    }

    /// A row run in integers: `q` saved to `path` (`QuantizedSequential::save`), read back and
    /// measured through the integer kernels; `simulated` (the same quantization simulated in
    /// f32, logits of the test inputs) gives the `simulated_accuracy` column beside it, and `net`
    /// (the simulated network) its parameters and MACs.
    #[allow(clippy::too_many_arguments)]
    fn integer_row(
        &self,
        stage: &str,
        format: String,
        q: &QuantizedSequential,
        net: &Sequential<f32>,
        simulated: Array2<f32>,
        path: &Path,
        started: Instant,
    ) -> Result<StageReport> {
        let bytes = q.save(path)?;
        let loaded = QuantizedSequential::load(path)?;
        let mut row = self.report(
            stage,
            format,
            net,
            bytes,
            |x| loaded.predict(&x, Par::Seq),
            path,
            started,
        )?;
        row.simulated_accuracy = Some(accuracy(&simulated, self.labels)?);
        Ok(row)
    }

    /// A quantized row: bytes of the codes, scales and f32 biases (no file format yet; `path` is
    /// the f32 model it was quantized from).
    fn quantized_row(
        &self,
        stage: &str,
        format: WeightFormat,
        q: &QuantizedCnn,
        path: &Path,
        started: Instant,
    ) -> Result<StageReport> {
        self.report(
            stage,
            format!("{}+a8", format.name()),
            q.network(),
            q.weight_bytes() as u64,
            |x| q.predict(&x),
            path,
            started,
        )
    }
}

/// The teacher must read the student's images and give its number of classes.
fn check_teacher(teacher: &Sequential<f32>, student: &CnnStudent) -> Result<()> {
    if teacher.input_shape() != student.input_shape() {
        return Err(CoreError::invalid(
            "teacher",
            format!(
                "reads samples of shape {:?}, the student {:?}",
                teacher.input_shape(),
                student.input_shape()
            ),
        )
        .into());
    }
    if teacher.output_len() != student.classes() {
        return Err(CoreError::invalid(
            "teacher",
            format!(
                "gives {} outputs, the student {} classes",
                teacher.output_len(),
                student.classes()
            ),
        )
        .into());
    }
    Ok(())
}

impl Pipeline {
    /// Runs every stage for a CNN student (built with [`Pipeline::cnn_builder`]; an error for an
    /// MLP one) against `teacher` (inference only; its outputs for every shift of every training
    /// image are computed once): distill -> prune filters -> fine-tune by distillation from the
    /// unpruned student -> fold batch norm -> int4 and int8 weights with int8 activations
    /// calibrated on the first training images. Every f32 model is written to `out_dir` (created
    /// if missing) and measured as read back. The int8 network (W8A8 static) and the int4 one
    /// (weight-only, int8 activation blocks) run in integers from their saved
    /// `QuantizedSequential` files, each beside its f32 simulation; int4 weights with static int8
    /// activations are simulated only (their row counts the bytes of codes, scales and biases).
    /// The datasets' inputs are rows of flattened images; `validation` is checked but not used
    /// (CNN stages run a fixed number of epochs).
    ///
    /// Shape mismatches (teacher vs student, data vs networks) are errors naming what differs.
    pub fn run_cnn(
        &self,
        teacher: &Sequential<f32>,
        train: &Dataset<'_, f32>,
        validation: &Dataset<'_, f32>,
        test: &Dataset<'_, f32>,
        out_dir: impl AsRef<Path>,
    ) -> Result<PipelineReport> {
        let StudentModel::Cnn(spec) = &self.student else {
            return Err(CoreError::invalid(
                "pipeline",
                "built for an MLP student: run it with Pipeline::run and an Mlp teacher",
            )
            .into());
        };
        check_teacher(teacher, spec)?;
        for (name, cols) in [
            ("train", train.inputs().ncols()),
            ("validation", validation.inputs().ncols()),
            ("test", test.inputs().ncols()),
        ] {
            if cols != teacher.input_len() {
                return Err(CoreError::invalid(
                    "data",
                    format!(
                        "{name} rows have {cols} values, the networks read {} = {:?}",
                        teacher.input_len(),
                        teacher.input_shape()
                    ),
                )
                .into());
            }
        }
        let out_dir = out_dir.as_ref();
        std::fs::create_dir_all(out_dir).map_err(|source| modelopt_io::IoError::Io {
            path: out_dir.to_path_buf(),
            source,
        })?;
        let file = |name: &str| out_dir.join(format!("cnn-{name}.safetensors"));
        let eval = CnnEval {
            inputs: test.inputs(),
            labels: test.labels(),
            teacher_test: teacher.predict(&test.inputs())?,
        };
        let mut report = PipelineReport::default();
        let t0 = Instant::now();
        report
            .stages
            .push(eval.f32_row("teacher", teacher, &file("teacher"), t0)?);

        // 1. Distill the student from the teacher's outputs for every shift of every image.
        let t0 = Instant::now();
        let shifts = Shifts::new(spec.input_shape(), self.max_shift)?;
        let (train_x, train_y) = (train.inputs(), train.labels());
        let cache = shifts.teacher_logits(teacher, &train_x)?;
        let kd = KdLoss::new(self.temperature, self.alpha)?;
        let set = ShiftedSet {
            inputs: &train_x,
            labels: train_y,
            shifts: &shifts,
            teacher_logits: Some(&cache),
        };
        let adam = || Adam::builder(self.learning_rate).build();
        let mut student = SequentialStudent::new(spec.build(self.seed)?, adam()?);
        fit_shifted(
            &mut student,
            &kd,
            &set,
            self.distill_epochs,
            self.batch_size,
            self.learning_rate,
            self.seed.wrapping_add(1),
            None,
        )?;
        let mut distilled = student.network;
        distilled.set_training(false);
        report.stages.push(eval.f32_row(
            "student (distilled)",
            &distilled,
            &file("student"),
            t0,
        )?);

        // 2. Prune filters, then fine-tune by distillation from the unpruned student.
        let mut tuned = distilled.clone();
        if let Some(stage) = &self.prune {
            let PruneKind::Filters {
                criterion,
                scope,
                ratio,
            } = stage.kind
            else {
                return Err(
                    CoreError::invalid("prune", "a CNN student is pruned by filters").into(),
                );
            };
            let t0 = Instant::now();
            let pruned = prune_filters_by(&distilled, criterion, ratio, scope)?;
            let name = format!("pruned {}", stage.name());
            report
                .stages
                .push(eval.f32_row(&name, &pruned, &file("student-pruned"), t0)?);
            let t0 = Instant::now();
            let unpruned = shifts.teacher_logits(&distilled, &train_x)?;
            let set = ShiftedSet {
                teacher_logits: Some(&unpruned),
                ..set
            };
            let mut student = SequentialStudent::new(pruned, adam()?);
            fit_shifted(
                &mut student,
                &kd,
                &set,
                self.finetune_epochs,
                self.batch_size,
                self.learning_rate,
                self.seed.wrapping_add(2),
                None,
            )?;
            tuned = student.network;
            tuned.set_training(false);
            report.stages.push(eval.f32_row(
                &format!("{name} + KD fine-tune"),
                &tuned,
                &file("student-pruned-finetuned"),
                t0,
            )?);
        }

        // 3. Fold batch norm into the convolutions (the same outputs, one layer less each).
        let t0 = Instant::now();
        let folded = fold_batch_norm(&tuned)?;
        let folded_path = file("student-folded");
        report
            .stages
            .push(eval.f32_row("batch norm folded", &folded, &folded_path, t0)?);

        // 4. Static quantization: weights, then int8 activations calibrated on training images.
        let n = self.calibration_samples.min(train_x.nrows());
        let calibration = train_x.slice(s![..n, ..]);
        // int4 weights with int8 static activations: simulated (the weight-only int4 kernels
        // quantize activations per block at run time, not per tensor from a calibration).
        let int4 = WeightFormat::Int4Grouped {
            group_size: self.int4_group_size,
        };
        let t0 = Instant::now();
        let q = QuantizedCnn::calibrate(&folded, int4, &calibration, MinMaxObserver::new)?;
        report.stages.push(eval.quantized_row(
            &format!(
                "{} weights, int8 activations (static, simulated)",
                int4.name()
            ),
            int4,
            &q,
            &folded_path,
            t0,
        )?);
        // The same int4 weights run in integers: weight-only kernels (int4 x int8 activation
        // blocks), beside the weights simulated with f32 activations.
        let t0 = Instant::now();
        let q4 = QuantizedSequential::from_sequential(
            &folded,
            LinearScheme::WeightOnly(BlockFormat::Int4 {
                group: self.int4_group_size,
            }),
            &calibration,
            256,
            Calibration::MinMax,
        )?;
        let simulated = q.network().predict(&eval.inputs)?;
        report.stages.push(eval.integer_row(
            &format!(
                "{} weights, int8 activation blocks (integer kernels)",
                int4.name()
            ),
            format!("{} (integer)", q_scheme_name(&q4)),
            &q4,
            q.network(),
            simulated,
            &file("student-int4"),
            t0,
        )?);
        // int8 weights and activations: run in integers (W8A8 static), beside its simulation.
        let t0 = Instant::now();
        let sim = QuantizedCnn::calibrate(
            &folded,
            WeightFormat::Int8PerChannel,
            &calibration,
            MinMaxObserver::new,
        )?;
        let q = QuantizedSequential::from_sequential(
            &folded,
            LinearScheme::W8A8Static,
            &calibration,
            256,
            Calibration::MinMax,
        )?;
        let simulated = sim.predict(&eval.inputs)?;
        report.stages.push(eval.integer_row(
            "int8 weights, int8 activations (static, integer kernels)",
            format!("{}+a8 (integer)", q_scheme_name(&q)),
            &q,
            sim.network(),
            simulated,
            &file("student-w8a8"),
            t0,
        )?);
        Ok(report)
    }
}

/// The scheme of a converted network's integer layers, for the report.
fn q_scheme_name(q: &QuantizedSequential) -> String {
    q.layers()
        .iter()
        .find_map(|(_, l)| match l {
            QuantizedLayer::Conv2d(c) => Some(c.scheme().name()),
            QuantizedLayer::Linear(l) => Some(l.scheme().name()),
            QuantizedLayer::Float(_) => None,
        })
        .unwrap_or_else(|| "f32".into())
}
