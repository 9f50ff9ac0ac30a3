//! `modelopt quantize --imatrix`: entries matched to tensors by name, weighted bytes, notes in
//! the report, and bad importance matrices (exit 1, no output file).

mod common;

use common::{files_in, modelopt, ok_json, small_model, temp_dir, values};
use modelopt_io::{Checkpoint, Imatrix, ImatrixEntry};
use modelopt_quantize::ggml::{self, GgmlType, Par};

/// Column weights for `n` columns, as sums over `ncall` calls: `means * ncall` exactly (small
/// integers), so the expected means are known without dividing.
fn means(n: usize) -> Vec<f32> {
    (0..n).map(|i| (1 + (i * 7) % 13) as f32).collect()
}

fn write_imatrix(path: &std::path::Path, entries: Vec<ImatrixEntry>) {
    Imatrix::new(entries).unwrap().write(path).unwrap();
}

#[test]
fn quantize_with_an_imatrix_weights_the_named_tensors() {
    let dir = temp_dir("imatrix");
    let input = dir.join("m.safetensors");
    small_model(&input);
    let imat = dir.join("imatrix.dat");
    let ncall = 4;
    let sums: Vec<f32> = means(512).iter().map(|m| m * ncall as f32).collect();
    write_imatrix(
        &imat,
        vec![
            ImatrixEntry::new("blk.0.w", ncall, sums).unwrap(),
            // An entry for no tensor of the checkpoint is ignored, as by llama-quantize.
            ImatrixEntry::new("blk.9.absent", 1, vec![1.0; 8]).unwrap(),
        ],
    );
    let x = values(64 * 512, 1, 0.1); // blk.0.w of `small_model`
    for ty in ["q4_k", "q4_0", "q8_0"] {
        let out = dir.join(format!("m-{ty}.gguf"));
        let rep = ok_json(&[
            "quantize",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--type",
            ty,
            "--imatrix",
            imat.to_str().unwrap(),
            "--json",
        ]);
        let rows = rep["tensors"].as_array().unwrap();
        let note = |n: &str| {
            rows.iter().find(|r| r["name"] == n).unwrap()["note"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let gt = GgmlType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(ty))
            .unwrap();
        let c = Checkpoint::open(&out).unwrap();
        let got = c.tensor_bytes("blk.0.w").unwrap();
        let n = gt.row_bytes(512).unwrap() * 64;
        let mut weighted = vec![0u8; n];
        ggml::quantize_rows_imatrix(gt, &x, 512, &means(512), &mut weighted, Par::Seq).unwrap();
        let mut plain = vec![0u8; n];
        ggml::quantize_rows(gt, &x, 512, &mut plain, Par::Seq).unwrap();
        // The command writes llama-quantize's bytes: K-quant codes re-derived last.
        ggml::rederive_codes(gt, &x, &mut weighted).unwrap();
        ggml::rederive_codes(gt, &x, &mut plain).unwrap();
        assert!(got == weighted.as_slice(), "{ty}: not the weighted bytes");
        if ty == "q8_0" {
            // llama.cpp's Q8_0 ignores importance.
            assert_eq!(weighted, plain);
            assert_eq!(note("blk.0.w"), "imatrix not used by this type");
        } else {
            assert_ne!(weighted, plain, "{ty}: the importance changed nothing");
            assert_eq!(note("blk.0.w"), "imatrix");
            // No entry: unweighted, and the report says so.
            assert!(
                note("blk.0.h").contains("no imatrix entry: unweighted"),
                "{ty}"
            );
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_bad_imatrix_exits_1_naming_the_entry_and_writes_nothing() {
    let dir = temp_dir("imatrix-bad");
    let input = dir.join("m.safetensors");
    small_model(&input);
    // Wrong value count for the tensor's rows (512).
    let short = dir.join("short.dat");
    write_imatrix(
        &short,
        vec![ImatrixEntry::new("blk.0.w", 1, vec![1.0; 100]).unwrap()],
    );
    // A NaN value (hand-written: the library refuses to build such an entry).
    let nan = dir.join("nan.dat");
    let mut b = Vec::new();
    b.extend_from_slice(&1i32.to_le_bytes());
    b.extend_from_slice(&7i32.to_le_bytes());
    b.extend_from_slice(b"blk.0.w");
    b.extend_from_slice(&1i32.to_le_bytes());
    b.extend_from_slice(&2i32.to_le_bytes());
    b.extend_from_slice(&1.0f32.to_le_bytes());
    b.extend_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&nan, &b).unwrap();
    // Truncated in the middle of the values.
    let cut = dir.join("cut.dat");
    std::fs::write(&cut, &b[..b.len() - 2]).unwrap();
    let out = dir.join("out.gguf");
    for (file, want) in [
        (
            &short,
            "imatrix entry `blk.0.w` has 100 values, but tensor `blk.0.w` has rows of 512",
        ),
        (&nan, "entry 0 `blk.0.w`: value 1 is NaN"),
        (&cut, "truncated"),
    ] {
        let o = modelopt(&[
            "quantize",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--type",
            "q4_k",
            "--imatrix",
            file.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1));
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.contains(want) && e.contains(file.to_str().unwrap()),
            "{e}"
        );
    }
    assert_eq!(
        files_in(&dir),
        ["cut.dat", "m.safetensors", "nan.dat", "short.dat"]
    );
    std::fs::remove_dir_all(dir).unwrap();
}
