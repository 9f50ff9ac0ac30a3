//! The compress pipeline end to end on the bundled digits, with few epochs.

use modelopt::distill::{Dataset, Digits, DigitsPart};
use modelopt::nn::{Adam, MiniBatches, Mlp, Optimizer, gather_rows, softmax_cross_entropy};
use modelopt::pipeline::{Pipeline, PruneStage, WeightFormat, load_mlp, save_mlp};

fn data(p: &DigitsPart) -> modelopt::distill::Result<Dataset<'_, f32>> {
    Dataset::new(p.inputs.view(), &p.labels)
}

fn small_teacher(part: &DigitsPart) -> Mlp<f32> {
    let mut net = Mlp::<f32>::builder(&[64, 128, 10]).seed(1).build().unwrap();
    let mut opt = Adam::builder(3e-3).build().unwrap();
    let mut batches = MiniBatches::new(part.len(), 32, 1).unwrap();
    for _ in 0..15 {
        for idx in batches.epoch() {
            let x = gather_rows(&part.inputs, idx).unwrap();
            let y: Vec<usize> = idx.iter().map(|&i| part.labels[i]).collect();
            let (_, g) = softmax_cross_entropy(&net.forward(&x).unwrap(), &y).unwrap();
            net.backward(&g).unwrap();
            opt.step(&mut net).unwrap();
        }
    }
    net.set_training(false);
    net
}

#[test]
fn pipeline_runs_every_stage_and_measures_files() {
    let digits = Digits::load_bundled().unwrap();
    let split = digits.split(0.15, 0.2, 0).unwrap();
    let teacher = small_teacher(&split.train);
    let dir = std::env::temp_dir().join(format!("modelopt-pipeline-test-{}", std::process::id()));
    let report = Pipeline::builder(&[64, 32, 10])
        .distill_epochs(15)
        .finetune_epochs(5)
        .qat_epochs(3)
        .prune(PruneStage::n_m(2, 4).unwrap())
        .build()
        .unwrap()
        .run(
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
            "pruned 2:4",
            "pruned 2:4 + KD fine-tune",
            "int8 per-channel (PTQ)",
            "int8 static, entropy-calibrated (PTQ)",
            "int4 grouped (PTQ)",
            "int4 grouped + QAT"
        ]
    );
    for s in &report.stages {
        assert_eq!(
            std::fs::metadata(&s.path).unwrap().len(),
            s.bytes,
            "{}",
            s.stage
        );
    }
    let student = report.stage("student (distilled)").unwrap();
    assert!(
        student.test_accuracy > 0.85,
        "student accuracy {}",
        student.test_accuracy
    );
    // 2:4 keeps exactly half of every weight matrix, and fine-tuning keeps the zeros.
    let tuned = report.stage("pruned 2:4 + KD fine-tune").unwrap();
    let weights = 64 * 32 + 32 * 10;
    assert!(tuned.nonzero <= tuned.parameters - weights / 2);
    let int8 = report.stage("int8 per-channel (PTQ)").unwrap();
    assert!((int8.test_accuracy - tuned.test_accuracy).abs() <= 0.02);
    assert!(int8.bytes * 2 < tuned.bytes);
    assert!(report.compression() > 10.0);
    // The quantized rows run in integers; their accuracy is within 0.3 points of the same
    // weights dequantized to f32, and every row has a latency.
    for s in &report.stages {
        if let Some(sim) = s.simulated_accuracy {
            assert!(
                (s.test_accuracy - sim).abs() <= 0.003 + 1e-12,
                "{}: {} vs simulated {sim}",
                s.stage,
                s.test_accuracy
            );
        }
        assert!(
            s.latency_b1_us > 0.0 && s.latency_b64_us > 0.0,
            "{}",
            s.stage
        );
    }
    assert!(
        report
            .stage("int4 grouped (PTQ)")
            .unwrap()
            .simulated_accuracy
            .is_some()
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn saved_int8_weights_are_within_half_a_scale() {
    let net = Mlp::<f32>::builder(&[32, 8, 4]).seed(5).build().unwrap();
    let path =
        std::env::temp_dir().join(format!("modelopt-int8-{}.safetensors", std::process::id()));
    save_mlp(&net, &path, WeightFormat::Int8PerChannel).unwrap();
    let back = load_mlp(&path, &net).unwrap();
    for (a, b) in net.layers().iter().zip(back.layers()) {
        for (row_a, row_b) in a.weight().rows().into_iter().zip(b.weight().rows()) {
            let scale = row_a.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
            for (x, y) in row_a.iter().zip(row_b) {
                assert!((x - y).abs() <= scale / 2.0 * 1.0001, "{x} vs {y}");
            }
        }
        assert_eq!(a.bias(), b.bias());
    }
    std::fs::remove_file(&path).ok();
}

#[test]
fn bad_settings_are_parameter_errors() {
    assert!(Pipeline::builder(&[64]).build().is_err());
    assert!(
        Pipeline::builder(&[64, 10])
            .temperature(0.0)
            .build()
            .is_err()
    );
    assert!(
        Pipeline::builder(&[64, 10])
            .learning_rate(-1.0)
            .build()
            .is_err()
    );
    assert!(Pipeline::builder(&[64, 10]).batch_size(0).build().is_err());
}
