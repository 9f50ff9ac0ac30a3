//! The compress pipeline on a CNN student, end to end on the bundled 8x8 digits seen as 1x8x8
//! images, with few epochs; and its errors on mismatched shapes.

use modelopt::distill::{
    Dataset, Digits, DigitsPart, KdLoss, SequentialStudent, ShiftedSet, Shifts, fit_shifted,
};
use modelopt::nn::{
    Adam, Conv2d, Dense, FilterCriterion, Init, Layer, Mlp, PruneScope, Sequential,
};
use modelopt::pipeline::{CnnStudent, Pipeline, PruneStage};
use rand::SeedableRng;

fn data(p: &DigitsPart) -> modelopt::distill::Result<Dataset<'_, f32>> {
    Dataset::new(p.inputs.view(), &p.labels)
}

/// Conv(1->8, 3x3, padding 1) ReLU Flatten Linear(512->10), trained briefly on the labels.
fn small_teacher(part: &DigitsPart) -> Sequential<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let net = Sequential::builder(&[1, 8, 8])
        .push(Layer::Conv2d(
            Conv2d::builder(1, 8, 3).padding(1).build(&mut rng).unwrap(),
        ))
        .push(Layer::Activation(modelopt::nn::Activation::Relu))
        .push(Layer::Flatten)
        .push(Layer::Linear(
            Dense::new(8 * 64, 10, Init::HeNormal, &mut rng).unwrap(),
        ))
        .build()
        .unwrap();
    let mut s = SequentialStudent::new(net, Adam::builder(3e-3).build().unwrap());
    let shifts = Shifts::new([1, 8, 8], 0).unwrap();
    let set = ShiftedSet {
        inputs: &part.inputs,
        labels: &part.labels,
        shifts: &shifts,
        teacher_logits: None,
    };
    fit_shifted(
        &mut s,
        &KdLoss::new(1.0, 1.0).unwrap(),
        &set,
        8,
        32,
        3e-3,
        0,
        None,
    )
    .unwrap();
    let mut net = s.network;
    net.set_training(false);
    net
}

#[test]
fn cnn_pipeline_runs_every_stage_in_the_same_report() {
    let digits = Digits::load_bundled().unwrap();
    let split = digits.split(0.15, 0.2, 0).unwrap();
    let teacher = small_teacher(&split.train);
    let dir = std::env::temp_dir().join(format!("modelopt-cnn-pipeline-{}", std::process::id()));
    let report = Pipeline::cnn_builder(CnnStudent::new([1, 8, 8], &[8, 8], 10).kernel(2))
        .distill_epochs(20)
        .finetune_epochs(2)
        .max_shift(1)
        .learning_rate(1e-2)
        .prune(PruneStage::filters(0.5, FilterCriterion::L1, PruneScope::PerLayer).unwrap())
        .build()
        .unwrap()
        .run_cnn(
            &teacher,
            &data(&split.train).unwrap(),
            &data(&split.validation).unwrap(),
            &data(&split.test).unwrap(),
            &dir,
        )
        .unwrap();
    let names: Vec<&str> = report.stages.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(
        names,
        [
            "teacher",
            "student (distilled)",
            "pruned 50% filters (L1, PerLayer)",
            "pruned 50% filters (L1, PerLayer) + KD fine-tune",
            "batch norm folded",
            "int4-g8 weights, int8 activations (static, simulated)",
            "int4-g8 weights, int8 activation blocks (integer kernels)",
            "int8 weights, int8 activations (static, integer kernels)",
        ]
    );
    println!("{}", report.to_table());
    let row = |i: usize| &report.stages[i];
    // Student 8x8 ch, 2x2 kernels: 8 -> 7 -> pool 3 -> 2 -> pool 1; MACs by hand.
    let student_macs = 8 * 7 * 7 * 4 + 8 * 8 * 2 * 2 * 4 + 8 * 10;
    assert_eq!(row(1).macs, student_macs);
    // Half of the filters of each conv go, with the next conv's inputs: 4 + 4 filters.
    assert_eq!(row(2).macs, 4 * 7 * 7 * 4 + 4 * 4 * 2 * 2 * 4 + 4 * 10);
    // Folding batch norm changes nothing but the layer count (and the file).
    assert_eq!(row(4).macs, row(3).macs);
    assert!((row(4).test_accuracy - row(3).test_accuracy).abs() < 0.01);
    assert!(row(4).parameters < row(3).parameters);
    // f32 rows are files of at least 4 bytes per parameter; the int8 row stores about a quarter.
    for i in 0..5 {
        assert_eq!(std::fs::metadata(&row(i).path).unwrap().len(), row(i).bytes);
        assert!(row(i).bytes >= 4 * row(i).parameters as u64);
    }
    // Tensor data (the file less its JSON header, which weighs on a model this small): the
    // int8 network stores less than the f32 one (f32 biases and scales are a large part of a
    // network of 4 + 4 filters of 2x2; about a quarter on MNIST-sized ones).
    let data = |path: &std::path::Path| {
        let bytes = std::fs::read(path).unwrap();
        bytes.len() as u64 - 8 - u64::from_le_bytes(bytes[..8].try_into().unwrap())
    };
    let (int8, f32_data) = (data(&row(7).path), data(&row(4).path));
    assert!(int8 < f32_data, "{int8} vs {f32_data}");
    assert!(row(5).bytes < row(7).bytes);
    let int4 = data(&row(6).path);
    assert!(int4 < int8, "int4 file {int4} vs int8 {int8}");
    assert!(
        row(1).test_accuracy > 0.5,
        "student {}",
        row(1).test_accuracy
    );
    assert!((row(7).test_accuracy - row(4).test_accuracy).abs() < 0.1);
    // The int4 and int8 rows run in integers from their saved files; their simulations agree.
    for i in [6, 7] {
        assert_eq!(std::fs::metadata(&row(i).path).unwrap().len(), row(i).bytes);
        let simulated = row(i)
            .simulated_accuracy
            .expect("an integer row carries its simulation");
        assert!(
            (row(i).test_accuracy - simulated).abs() <= 0.01,
            "{}: {} vs {simulated}",
            row(i).stage,
            row(i).test_accuracy
        );
    }
    assert!(report.macs_reduction() > 1.0);
    let table = report.to_table();
    assert!(table.contains("MACs") && table.contains("batch norm folded"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cnn_pipeline_shape_errors_name_what_differs() {
    let digits = Digits::load_bundled().unwrap();
    let split = digits.split(0.15, 0.2, 0).unwrap();
    let teacher = small_teacher(&split.train);
    let dir =
        std::env::temp_dir().join(format!("modelopt-cnn-pipeline-err-{}", std::process::id()));
    let (train, val, test) = (
        data(&split.train).unwrap(),
        data(&split.validation).unwrap(),
        data(&split.test).unwrap(),
    );
    // A student for other images than the teacher's.
    let p = Pipeline::cnn_builder(CnnStudent::new([1, 28, 28], &[4], 10))
        .build()
        .unwrap();
    let err = p.run_cnn(&teacher, &train, &val, &test, &dir).unwrap_err();
    assert!(err.to_string().contains("teacher"), "{err}");
    // Other classes.
    let p7 = Pipeline::cnn_builder(CnnStudent::new([1, 8, 8], &[4], 7))
        .max_shift(1)
        .build()
        .unwrap();
    let err = p7.run_cnn(&teacher, &train, &val, &test, &dir).unwrap_err();
    assert!(err.to_string().contains("classes"), "{err}");
    let p = Pipeline::cnn_builder(CnnStudent::new([1, 8, 8], &[4], 10))
        .max_shift(1)
        .build()
        .unwrap();
    // Data of another width than the networks read.
    let narrow = split.test.inputs.slice(ndarray::s![.., ..63]).to_owned();
    let narrow = Dataset::new(narrow.view(), &split.test.labels).unwrap();
    let err = p
        .run_cnn(&teacher, &train, &val, &narrow, &dir)
        .unwrap_err();
    assert!(
        err.to_string().contains("test rows have 63 values"),
        "{err}"
    );
    // An MLP pipeline cannot run a CNN and vice versa.
    let mlp = Pipeline::builder(&[64, 10]).build().unwrap();
    assert!(mlp.run_cnn(&teacher, &train, &val, &test, &dir).is_err());
    let cnn = Pipeline::cnn_builder(CnnStudent::new([1, 8, 8], &[4], 10))
        .max_shift(1)
        .build()
        .unwrap();
    let mlp_teacher = Mlp::<f32>::builder(&[64, 10]).build().unwrap();
    assert!(cnn.run(&mlp_teacher, &train, &val, &test, &dir).is_err());
    // Settings checked when built: a kernel larger than the image names the layer.
    let err = Pipeline::cnn_builder(CnnStudent::new([1, 8, 8], &[4], 10).kernel(9))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("layer `0`"), "{err}");
    assert!(
        Pipeline::cnn_builder(CnnStudent::new([1, 8, 8], &[4], 10))
            .max_shift(8)
            .build()
            .is_err()
    );
    assert!(
        Pipeline::cnn_builder(CnnStudent::new([1, 8, 8], &[4], 10))
            .qat_epochs(2)
            .build()
            .is_err()
    );
    assert!(
        Pipeline::builder(&[64, 10])
            .prune(PruneStage::filters(0.5, FilterCriterion::L2, PruneScope::Global).unwrap())
            .build()
            .is_err()
    );
    std::fs::remove_dir_all(&dir).ok();
}
