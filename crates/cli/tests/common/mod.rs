#![allow(dead_code)]
//! Helpers for the `modelopt` binary tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use modelopt_io::{DType, SafetensorsWriter, TensorInfo, f32_to_bytes};

static N: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty folder under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "modelopt-cli-test-{}-{tag}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the binary with `args`.
pub fn modelopt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_modelopt"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs the binary, asserting exit status 0; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = modelopt(args);
    assert!(
        out.status.success(),
        "modelopt {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs the binary with `--json` output expected; parses stdout.
pub fn ok_json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(args)).unwrap()
}

/// Deterministic pseudo-normal values (sum of uniforms from an LCG), scaled.
pub fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            let mut acc = 0.0f32;
            for _ in 0..4 {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                acc += (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            }
            acc * scale
        })
        .collect()
}

/// A small model: F32 and F16 matrices (rows of 512 and 384), a bias, integer ids, and a matrix
/// whose row (40) fits no block size.
pub fn small_model(path: &Path) {
    let tensors = vec![
        TensorInfo::new("blk.0.w", DType::F32, vec![64, 512]),
        TensorInfo::new("blk.0.h", DType::F16, vec![32, 384]),
        TensorInfo::new("blk.0.bias", DType::F32, vec![64]),
        TensorInfo::new("ids", DType::I64, vec![5]),
        TensorInfo::new("odd", DType::F32, vec![8, 40]),
    ];
    let meta = [("format".to_string(), "pt".to_string())]
        .into_iter()
        .collect();
    let mut w = SafetensorsWriter::create(path, tensors, meta).unwrap();
    w.write_tensor("blk.0.w", &f32_to_bytes(&values(64 * 512, 1, 0.1)))
        .unwrap();
    let h: Vec<u8> = values(32 * 384, 2, 2.0)
        .iter()
        .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
        .collect();
    w.write_tensor("blk.0.h", &h).unwrap();
    w.write_tensor("blk.0.bias", &f32_to_bytes(&values(64, 3, 0.01)))
        .unwrap();
    let ids: Vec<u8> = (0..5i64).flat_map(|x| x.to_le_bytes()).collect();
    w.write_tensor("ids", &ids).unwrap();
    w.write_tensor("odd", &f32_to_bytes(&values(8 * 40, 4, 1.0)))
        .unwrap();
    w.finish().unwrap();
}

/// Whether `python3 -c "import <modules>"` works; prints why not otherwise.
pub fn python_has(modules: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: python3 with `{modules}` is not available");
    }
    ok
}

/// Runs a python script with arguments, asserting success; returns stdout.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Files left in `dir`.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
