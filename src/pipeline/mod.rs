//! The compress pipeline: distill a student from a teacher, prune it and fine-tune under the mask
//! by distillation, quantize it (int8 per channel, grouped int4 with optional quantization-aware
//! fine-tuning), and measure every stage from the file it wrote.
//!
//! The student is an MLP ([`Pipeline::builder`], [`Pipeline::run`]) or a CNN
//! ([`Pipeline::cnn_builder`] with a [`CnnStudent`], [`Pipeline::run_cnn`]): for a CNN the stages
//! are distill (on shifted images) -> prune filters with their dependencies -> fine-tune by
//! distillation from the unpruned student -> fold batch norm -> static quantization, in the same
//! [`PipelineReport`].
//!
//! ```no_run
//! use modelopt::distill::{Dataset, Digits};
//! use modelopt::nn::Mlp;
//! use modelopt::pipeline::{Pipeline, PruneStage};
//!
//! let digits = Digits::load_bundled()?;
//! let split = digits.split(0.15, 0.2, 0)?;
//! let teacher: Mlp<f32> = Mlp::builder(&[64, 256, 10]).build()?; // train it first
//! fn data(p: &modelopt::distill::DigitsPart) -> modelopt::distill::Result<Dataset<'_, f32>> {
//!     Dataset::new(p.inputs.view(), &p.labels)
//! }
//! let report = Pipeline::builder(&[64, 32, 10])
//!     .prune(PruneStage::unstructured(0.5)?)
//!     .build()?
//!     .run(&teacher, &data(&split.train)?, &data(&split.validation)?, &data(&split.test)?, "target/pipeline")?;
//! println!("{}", report.to_table());
//! # Ok::<(), modelopt::Error>(())
//! ```

mod cnn;
mod cnn_file;
mod cnn_quant;
mod cnn_student;
mod integer;
mod model_file;
mod qat;
mod report;

use std::path::Path;
use std::time::Instant;

use modelopt_distill::{
    Dataset, Hooks, KdLoss, LrSchedule, MlpStudent, Teacher, Trainer, accuracy, agreement,
};
use modelopt_nn::{FilterCriterion, Mlp, PruneScope, Sgd};
use modelopt_prune::{Amount, L1Magnitude, Mask, Pruner, Structure};
use modelopt_tensor_core::CoreError;
use ndarray::Array2;

pub use cnn_file::{load_sequential, save_sequential};
pub use cnn_quant::QuantizedCnn;
pub use cnn_student::CnnStudent;
pub use model_file::{WeightFormat, load_mlp, save_mlp};
pub use qat::QatStudent;
pub use report::{PipelineReport, StageReport};

use crate::Result;
use crate::quantized::Calibration;

/// How the student is pruned: which structure, how much (per weight matrix, L1 magnitude).
///
/// ```
/// use modelopt::pipeline::PruneStage;
/// let half = PruneStage::unstructured(0.5)?;
/// let two_four = PruneStage::n_m(2, 4)?;
/// assert_eq!(two_four.name(), "2:4");
/// assert!(PruneStage::unstructured(1.5).is_err());
/// # drop(half);
/// # Ok::<(), modelopt::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PruneStage {
    kind: PruneKind,
    name: String,
}

/// What a [`PruneStage`] removes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PruneKind {
    /// Weights of every matrix (MLP students), masked.
    Weights {
        structure: Structure,
        amount: Amount,
    },
    /// Whole filters with their dependencies (CNN students), physically removed.
    Filters {
        criterion: FilterCriterion,
        scope: PruneScope,
        ratio: f64,
    },
}

impl PruneStage {
    /// Unstructured magnitude pruning of `fraction` of every weight matrix.
    pub fn unstructured(fraction: f64) -> Result<Self> {
        Ok(PruneStage {
            kind: PruneKind::Weights {
                structure: Structure::Unstructured,
                amount: Amount::fraction(fraction)?,
            },
            name: format!("{:.0}% unstructured", 100.0 * fraction),
        })
    }

    /// N:M semi-structured pruning (keep `n` of every `m` consecutive inputs).
    pub fn n_m(n: usize, m: usize) -> Result<Self> {
        Ok(PruneStage {
            kind: PruneKind::Weights {
                structure: Structure::n_m(n, m)?,
                amount: Amount::fraction(0.0)?,
            },
            name: format!("{n}:{m}"),
        })
    }

    /// Filter pruning of a CNN student: remove `ratio` (in `[0, 1)`) of the filters of every
    /// convolution (or of all together, [`PruneScope::Global`]) ranked by `criterion`, with the
    /// batch-norm entries and next-layer inputs that depend on them
    /// ([`modelopt_nn::prune_filters_by`]).
    ///
    /// ```
    /// use modelopt::nn::{FilterCriterion, PruneScope};
    /// use modelopt::pipeline::PruneStage;
    /// let quarter = PruneStage::filters(0.25, FilterCriterion::BnScale, PruneScope::PerLayer)?;
    /// assert_eq!(quarter.name(), "25% filters (BnScale, PerLayer)");
    /// assert!(PruneStage::filters(1.0, FilterCriterion::L1, PruneScope::Global).is_err());
    /// # Ok::<(), modelopt::Error>(())
    /// ```
    pub fn filters(ratio: f64, criterion: FilterCriterion, scope: PruneScope) -> Result<Self> {
        if !(0.0..1.0).contains(&ratio) {
            return Err(CoreError::invalid(
                "filter ratio",
                format!("must be in [0, 1), got {ratio}"),
            )
            .into());
        }
        Ok(PruneStage {
            kind: PruneKind::Filters {
                criterion,
                scope,
                ratio,
            },
            name: format!("{:.0}% filters ({criterion:?}, {scope:?})", 100.0 * ratio),
        })
    }

    /// A short description (`50% unstructured`, `2:4`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The compress pipeline's settings, validated when built (see [`PipelineBuilder`]).
///
/// ```
/// let p = modelopt::Pipeline::builder(&[64, 32, 10]).temperature(4.0).alpha(0.1).build()?;
/// assert!(modelopt::Pipeline::builder(&[64, 32, 10]).alpha(2.0).build().is_err());
/// # drop(p);
/// # Ok::<(), modelopt::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    student: StudentModel,
    temperature: f64,
    alpha: f64,
    distill_epochs: usize,
    finetune_epochs: usize,
    qat_epochs: usize,
    learning_rate: f64,
    batch_size: usize,
    seed: u64,
    prune: Option<PruneStage>,
    int4_group_size: usize,
    max_shift: usize,
    calibration_samples: usize,
}

/// The kind of student a [`Pipeline`] makes.
#[derive(Debug, Clone, PartialEq)]
enum StudentModel {
    /// An MLP of these layer sizes.
    Mlp(Vec<usize>),
    /// A CNN.
    Cnn(CnnStudent),
}

/// Builder of a [`Pipeline`]. Defaults for an MLP student ([`Pipeline::builder`]): temperature 4,
/// alpha 0.1, 60 distillation epochs, 20 fine-tuning epochs after pruning, 10 QAT epochs for int4,
/// SGD (momentum 0.9) at 0.1 with cosine decay, batch 32, seed 0, prune 50% unstructured, int4
/// group size 32. For a CNN student ([`Pipeline::cnn_builder`]): temperature 4, alpha 0.1, 15
/// distillation epochs, 5 fine-tuning epochs, no QAT, Adam at 1e-3 (constant), batch 64, seed 0,
/// random shifts of up to 2 pixels, prune 25% of the filters of each convolution by batch-norm
/// scale, int4 group size 8, activations calibrated on 512 training images.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineBuilder {
    pipeline: Pipeline,
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, $name: $ty) -> Self {
            self.pipeline.$name = $name;
            self
        }
    };
}

impl PipelineBuilder {
    setter!(/// Softmax temperature of the KD loss (> 0).
        temperature: f64);
    setter!(/// Weight of the label loss in `[0, 1]`.
        alpha: f64);
    setter!(/// Epochs of distillation of the student.
        distill_epochs: usize);
    setter!(/// Epochs of distillation under the pruning mask.
        finetune_epochs: usize);
    setter!(/// Epochs of quantization-aware distillation for int4 (0: none).
        qat_epochs: usize);
    setter!(/// Base learning rate (> 0).
        learning_rate: f64);
    setter!(/// Mini-batch size (> 0).
        batch_size: usize);
    setter!(/// Seed of initialisation and batch order.
        seed: u64);
    setter!(/// Elements per scale of the int4 stage (> 0).
        int4_group_size: usize);
    setter!(/// CNN students: random shifts of up to this many pixels in every training batch (the
        /// teacher's outputs are computed once for every shift); 0 for none. MLPs: must be 0.
        max_shift: usize);
    setter!(/// CNN students: training images the int8 activation ranges are calibrated on (> 0).
        calibration_samples: usize);

    /// Prune with `stage` (the default is 50% unstructured).
    pub fn prune(mut self, stage: PruneStage) -> Self {
        self.pipeline.prune = Some(stage);
        self
    }

    /// Skip pruning.
    pub fn no_pruning(mut self) -> Self {
        self.pipeline.prune = None;
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<Pipeline> {
        let p = self.pipeline;
        match &p.student {
            StudentModel::Mlp(sizes) => {
                if sizes.len() < 2 || sizes.contains(&0) {
                    return Err(CoreError::invalid(
                        "student_sizes",
                        format!("need at least two non-zero layer sizes, got {sizes:?}"),
                    )
                    .into());
                }
                if matches!(
                    p.prune.as_ref().map(|s| s.kind),
                    Some(PruneKind::Filters { .. })
                ) {
                    return Err(CoreError::invalid(
                        "prune",
                        "filter pruning needs a CNN student (Pipeline::cnn_builder)",
                    )
                    .into());
                }
                if p.max_shift > 0 {
                    return Err(CoreError::invalid(
                        "max_shift",
                        "shift augmentation is for image (CNN) students",
                    )
                    .into());
                }
            }
            StudentModel::Cnn(student) => {
                // Built once: the shapes through every layer are checked here.
                student.build(p.seed)?;
                let [_, h, w] = student.input_shape();
                if p.max_shift >= h.min(w) {
                    return Err(CoreError::invalid(
                        "max_shift",
                        format!(
                            "{} pixels would move a {h}x{w} image out of view",
                            p.max_shift
                        ),
                    )
                    .into());
                }
                if matches!(
                    p.prune.as_ref().map(|s| s.kind),
                    Some(PruneKind::Weights { .. })
                ) {
                    return Err(CoreError::invalid(
                        "prune",
                        "a CNN student is pruned by filters (PruneStage::filters)",
                    )
                    .into());
                }
                if p.qat_epochs > 0 {
                    return Err(CoreError::invalid(
                        "qat_epochs",
                        "quantization-aware training is implemented for MLP students only; set 0",
                    )
                    .into());
                }
                if p.calibration_samples == 0 {
                    return Err(
                        CoreError::invalid("calibration_samples", "must be at least 1").into(),
                    );
                }
            }
        }
        // KdLoss validates temperature and alpha with its own messages.
        KdLoss::<f32>::new(p.temperature, p.alpha)?;
        if !(p.learning_rate.is_finite() && p.learning_rate > 0.0) {
            return Err(CoreError::invalid(
                "learning_rate",
                format!("must be > 0, got {}", p.learning_rate),
            )
            .into());
        }
        if p.batch_size == 0 || p.int4_group_size == 0 {
            return Err(
                CoreError::invalid("batch_size/int4_group_size", "must be at least 1").into(),
            );
        }
        Ok(p)
    }
}

/// Multiply-accumulates per sample of an MLP (one per weight).
fn mlp_macs(net: &Mlp<f32>) -> usize {
    net.layers()
        .iter()
        .map(|l| l.in_features() * l.out_features())
        .sum()
}

struct Eval<'a, 'd> {
    test: &'a Dataset<'d, f32>,
    teacher_test: Array2<f32>,
    /// Inputs the static activation scales are calibrated on (the training split).
    calibration: Array2<f32>,
}

impl Eval<'_, '_> {
    fn row(
        &self,
        stage: &str,
        format: WeightFormat,
        net: &Mlp<f32>,
        path: &Path,
        started: Instant,
    ) -> Result<StageReport> {
        let bytes = save_mlp(net, path, format)?;
        // Measure the model as a user would get it: read back from the file just written.
        let loaded = load_mlp(path, net)?;
        let out = loaded.predict(&self.test.inputs())?;
        let (latency_b1_us, latency_b64_us) =
            integer::latency(&self.test.inputs(), |x| Ok(loaded.predict(&x)?))?;
        let params = loaded.named_parameters();
        Ok(StageReport {
            stage: stage.to_string(),
            format: format.name(),
            parameters: loaded.parameter_count(),
            macs: mlp_macs(&loaded),
            nonzero: params
                .values()
                .map(|p| p.iter().filter(|v| **v != 0.0).count())
                .sum(),
            bytes,
            test_accuracy: accuracy(&out, self.test.labels())?,
            agreement: agreement(&out, &self.teacher_test)?,
            simulated_accuracy: None,
            latency_b1_us,
            latency_b64_us,
            seconds: started.elapsed().as_secs_f64(),
            path: path.to_path_buf(),
        })
    }
}

impl Pipeline {
    /// Settings with the defaults for a student of these layer sizes (input, hidden..., classes).
    pub fn builder(student_sizes: &[usize]) -> PipelineBuilder {
        PipelineBuilder {
            pipeline: Pipeline {
                student: StudentModel::Mlp(student_sizes.to_vec()),
                temperature: 4.0,
                alpha: 0.1,
                distill_epochs: 60,
                finetune_epochs: 20,
                qat_epochs: 10,
                learning_rate: 0.1,
                batch_size: 32,
                seed: 0,
                prune: PruneStage::unstructured(0.5).ok(),
                int4_group_size: 32,
                max_shift: 0,
                calibration_samples: 512,
            },
        }
    }

    /// Settings with the CNN defaults (see [`PipelineBuilder`]) for `student`; run it with
    /// [`Pipeline::run_cnn`].
    ///
    /// ```
    /// use modelopt::pipeline::{CnnStudent, Pipeline};
    /// let student = CnnStudent::new([1, 28, 28], &[32, 64], 10);
    /// let p = Pipeline::cnn_builder(student.clone()).distill_epochs(10).build()?;
    /// # drop(p);
    /// // Validated when built: a fourth 3x3 conv does not fit (28 -> 13 -> 5 -> 1 pixels).
    /// let err = Pipeline::cnn_builder(CnnStudent::new([1, 28, 28], &[8, 8, 8, 8], 10)).build().unwrap_err();
    /// assert!(err.to_string().contains("layer"), "{err}");
    /// // Unstructured pruning is for MLPs; a CNN loses whole filters.
    /// let weights = modelopt::pipeline::PruneStage::unstructured(0.5)?;
    /// assert!(Pipeline::cnn_builder(student).prune(weights).build().is_err());
    /// # Ok::<(), modelopt::Error>(())
    /// ```
    pub fn cnn_builder(student: CnnStudent) -> PipelineBuilder {
        PipelineBuilder {
            pipeline: Pipeline {
                student: StudentModel::Cnn(student),
                temperature: 4.0,
                alpha: 0.1,
                distill_epochs: 15,
                finetune_epochs: 5,
                qat_epochs: 0,
                learning_rate: 1e-3,
                batch_size: 64,
                seed: 0,
                prune: PruneStage::filters(0.25, FilterCriterion::BnScale, PruneScope::PerLayer)
                    .ok(),
                int4_group_size: 8,
                max_shift: 2,
                calibration_samples: 512,
            },
        }
    }

    fn trainer(&self, epochs: usize, learning_rate: f64) -> Result<Trainer> {
        Ok(Trainer::builder()
            .epochs(epochs)
            .batch_size(self.batch_size)
            .learning_rate(learning_rate)
            .schedule(LrSchedule::Cosine { min_lr: 0.0 })
            .seed(self.seed)
            .build()?)
    }

    fn sgd(&self) -> Result<Sgd<f32>> {
        Ok(Sgd::builder(self.learning_rate).momentum(0.9).build()?)
    }

    /// Runs every stage against `teacher` (inference only; its logits are computed once), writing
    /// one safetensors file per stage into `out_dir` (created if missing) and measuring each
    /// model read back from its file on `test`. For an MLP student (an error for a CNN one: use
    /// [`Pipeline::run_cnn`]).
    pub fn run(
        &self,
        teacher: &Mlp<f32>,
        train: &Dataset<'_, f32>,
        validation: &Dataset<'_, f32>,
        test: &Dataset<'_, f32>,
        out_dir: impl AsRef<Path>,
    ) -> Result<PipelineReport> {
        let StudentModel::Mlp(student_sizes) = &self.student else {
            return Err(CoreError::invalid(
                "pipeline",
                "built for a CNN student: run it with Pipeline::run_cnn and a Sequential teacher",
            )
            .into());
        };
        let out_dir = out_dir.as_ref();
        std::fs::create_dir_all(out_dir).map_err(|source| modelopt_io::IoError::Io {
            path: out_dir.to_path_buf(),
            source,
        })?;
        let file = |name: &str| out_dir.join(format!("{name}.safetensors"));
        let eval = Eval {
            test,
            teacher_test: Teacher::predict(teacher, &test.inputs())?,
            calibration: train.inputs().to_owned(),
        };
        let mut report = PipelineReport::default();

        let t0 = Instant::now();
        report.stages.push(eval.row(
            "teacher",
            WeightFormat::F32,
            teacher,
            &file("teacher"),
            t0,
        )?);

        // Offline distillation: the fixed teacher's logits, once.
        let train_logits = Teacher::predict(teacher, &train.inputs())?;
        let val_logits = Teacher::predict(teacher, &validation.inputs())?;
        let train = Dataset::new(train.inputs(), train.labels())?
            .with_teacher_logits(train_logits.view())?;
        let validation = Dataset::new(validation.inputs(), validation.labels())?
            .with_teacher_logits(val_logits.view())?;
        let kd = KdLoss::new(self.temperature, self.alpha)?;

        let t0 = Instant::now();
        let net = Mlp::<f32>::builder(student_sizes).seed(self.seed).build()?;
        let mut student = MlpStudent::new(net, self.sgd()?);
        self.trainer(self.distill_epochs, self.learning_rate)?.fit(
            &mut student,
            &kd,
            None,
            &train,
            Some(&validation),
            Hooks::new(),
        )?;
        report.stages.push(eval.row(
            "student (distilled)",
            WeightFormat::F32,
            &student.network,
            &file("student"),
            t0,
        )?);

        let mut masks: Vec<Option<Mask>> = vec![None; student.network.layers().len()];
        if let Some(stage) = &self.prune {
            let t0 = Instant::now();
            let PruneKind::Weights { structure, amount } = stage.kind else {
                return Err(
                    CoreError::invalid("prune", "filter pruning needs a CNN student").into(),
                );
            };
            let pruner = Pruner::new(L1Magnitude).amount(amount).structure(structure);
            for (layer, mask) in student
                .network
                .layers_mut()
                .iter_mut()
                .zip(masks.iter_mut())
            {
                let m = pruner.prune(layer.weight())?;
                m.apply_inplace(&mut layer.weight_mut().view_mut().into_dyn())?;
                *mask = Some(m);
            }
            let name = format!("pruned {}", stage.name());
            report.stages.push(eval.row(
                &name,
                WeightFormat::F32,
                &student.network,
                &file("student-pruned"),
                t0,
            )?);

            let t0 = Instant::now();
            // Fine-tune by distillation; the hook keeps pruned weights at zero after every step.
            let keep = masks.clone();
            let hooks = Hooks::new().after_step(move |s: &mut MlpStudent<f32, Sgd<f32>>, _| {
                for (layer, mask) in s.network.layers_mut().iter_mut().zip(&keep) {
                    if let Some(mask) = mask {
                        mask.apply_inplace(&mut layer.weight_mut().view_mut().into_dyn())
                            .map_err(|e| CoreError::invalid("mask", e.to_string()))?;
                    }
                }
                Ok(())
            });
            student.optimizer = self.sgd()?;
            self.trainer(self.finetune_epochs, self.learning_rate * 0.5)?
                .fit(&mut student, &kd, None, &train, Some(&validation), hooks)?;
            report.stages.push(eval.row(
                &format!("{name} + KD fine-tune"),
                WeightFormat::F32,
                &student.network,
                &file("student-pruned-finetuned"),
                t0,
            )?);
        }

        // The quantized stages run in integers (crate::quantized); each row also gives the
        // accuracy of the same weights dequantized to f32 (the simulation).
        let t0 = Instant::now();
        report.stages.push(eval.integer_row(
            "int8 per-channel (PTQ)",
            WeightFormat::Int8PerChannel,
            None,
            &student.network,
            (&file("student-int8-w8a8"), &file("student-int8")),
            t0,
        )?);
        let t0 = Instant::now();
        report.stages.push(eval.integer_row(
            "int8 static, entropy-calibrated (PTQ)",
            WeightFormat::Int8PerChannel,
            Some(Calibration::Entropy),
            &student.network,
            (&file("student-int8-w8a8-static"), &file("student-int8")),
            t0,
        )?);
        let int4 = WeightFormat::Int4Grouped {
            group_size: self.int4_group_size,
        };
        let t0 = Instant::now();
        report.stages.push(eval.integer_row(
            "int4 grouped (PTQ)",
            int4,
            None,
            &student.network,
            (&file("student-int4-w4a8"), &file("student-int4")),
            t0,
        )?);
        if self.qat_epochs > 0 {
            let t0 = Instant::now();
            let mut inner = student.clone();
            inner.optimizer = self.sgd()?;
            let mut qat = QatStudent::new(inner, int4, masks)?;
            self.trainer(self.qat_epochs, self.learning_rate * 0.1)?
                .fit(&mut qat, &kd, None, &train, Some(&validation), Hooks::new())?;
            let tuned = qat.into_float();
            report.stages.push(eval.integer_row(
                "int4 grouped + QAT",
                int4,
                None,
                &tuned.network,
                (&file("student-int4-qat-w4a8"), &file("student-int4-qat")),
                t0,
            )?);
        }
        Ok(report)
    }
}
