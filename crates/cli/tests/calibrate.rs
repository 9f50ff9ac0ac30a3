//! `quantize --calibrate` and `prune --criterion wanda`: what a user can get wrong is an error
//! with the right exit status, and no output file appears. (The real-model runs are in
//! docs/benchmarks.md and the opt-in `modelopt-calibrate` test.)

mod common;

use common::{files_in, modelopt, small_model, temp_dir};

fn status_and_err(args: &[&str]) -> (i32, String) {
    let out = modelopt(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn calibration_misuse_is_an_error_and_writes_nothing() {
    let dir = temp_dir("calibrate-misuse");
    let model = dir.join("model.safetensors");
    small_model(&model);
    let text = dir.join("text.txt");
    std::fs::write(&text, "one sentence\n").unwrap();
    let (m, t) = (model.to_str().unwrap(), text.to_str().unwrap());
    let out = dir.join("out.safetensors");
    let o = out.to_str().unwrap();
    let missing = dir.join("no-such-model-dir");
    let md = missing.to_str().unwrap();

    // --calibrate without --text (and the reverse): usage errors.
    let (code, _) = status_and_err(&["quantize", m, "-o", o, "--type", "q4_0", "--calibrate", md]);
    assert_eq!(code, 2);
    let (code, _) = status_and_err(&["quantize", m, "-o", o, "--type", "q4_0", "--text", t]);
    assert_eq!(code, 2);
    // int8 has no calibrated path.
    let (code, err) = status_and_err(&[
        "quantize",
        m,
        "-o",
        o,
        "--type",
        "int8",
        "--calibrate",
        md,
        "--text",
        t,
    ]);
    assert_eq!(code, 2, "{err}");
    // A model folder that does not exist: a failure naming it.
    let (code, err) = status_and_err(&[
        "quantize",
        m,
        "-o",
        o,
        "--type",
        "q4_0",
        "--calibrate",
        md,
        "--text",
        t,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no-such-model-dir"), "{err}");

    // Wanda needs calibration text.
    let (code, err) = status_and_err(&[
        "prune",
        m,
        "-o",
        o,
        "--amount",
        "0.5",
        "--criterion",
        "wanda",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--calibrate"), "{err}");
    let (code, err) = status_and_err(&[
        "prune",
        m,
        "-o",
        o,
        "--amount",
        "0.5",
        "--criterion",
        "wanda",
        "--calibrate",
        md,
        "--text",
        t,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no-such-model-dir"), "{err}");

    // SparseGPT: needs calibration; prunes per tensor, unstructured by a fraction or N:M.
    let sg = |extra: &[&str]| {
        let mut a = vec!["prune", m, "-o", o, "--criterion", "sparsegpt"];
        a.extend_from_slice(extra);
        status_and_err(&a)
    };
    let (code, err) = sg(&["--amount", "0.5"]);
    assert_eq!(code, 2);
    assert!(err.contains("--calibrate"), "{err}");
    for bad in [
        &["--amount", "10", "--calibrate", md, "--text", t][..],
        &[
            "--amount",
            "0.5",
            "--scope",
            "global",
            "--calibrate",
            md,
            "--text",
            t,
        ][..],
        &[
            "--amount",
            "0.5",
            "--structure",
            "channels",
            "--calibrate",
            md,
            "--text",
            t,
        ][..],
    ] {
        let (code, err) = sg(bad);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(err.contains("sparsegpt"), "{err}");
    }
    // --calibrate with a criterion that does not use it.
    let (code, err) = status_and_err(&[
        "prune",
        m,
        "-o",
        o,
        "--amount",
        "0.5",
        "--calibrate",
        md,
        "--text",
        t,
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("wanda or sparsegpt"), "{err}");

    assert_eq!(files_in(&dir), ["model.safetensors", "text.txt"]);
}
