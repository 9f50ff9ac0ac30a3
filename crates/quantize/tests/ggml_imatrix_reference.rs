//! Bit-exactness of the importance-weighted GGML quantizers against llama.cpp (c392e509).
//!
//! `tests/data/ggml_imatrix/<type>_imatrix.bin` is `ggml_quantize_chunk(type, x, out, 0, 64,
//! 1024, imatrix)` of the 64 x 1024 rows of `tests/data/ggml/input_f32.bin` (rows 48..63 are
//! edge cases) with the 1024 column weights of `imatrix_f32.bin` (lognormal, 1% of the columns
//! x100): what `llama-quantize --imatrix` writes for one tensor whose entry is these weights.

use modelopt_quantize::ggml::{self, GgmlType, Par};

const ROWS: usize = 64;
const COLS: usize = 1024;

fn data(path: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .as_chunks::<4>()
        .0
        .iter()
        .map(|b| f32::from_le_bytes(*b))
        .collect()
}

/// Quantizes every row with the importance and compares byte for byte; reports every
/// mismatching row as (row, block, byte in block).
fn check(ty: GgmlType) {
    let x = f32s(&data("ggml/input_f32.bin"));
    let importance = f32s(&data("ggml_imatrix/imatrix_f32.bin"));
    assert_eq!((x.len(), importance.len()), (ROWS * COLS, COLS));
    let reference = data(&format!("ggml_imatrix/{}_imatrix.bin", ty.name()));
    let row_bytes = ty.row_bytes(COLS).unwrap();
    assert_eq!(reference.len(), ROWS * row_bytes);
    let mut bad = Vec::new();
    for r in 0..ROWS {
        let mut out = vec![0u8; row_bytes];
        ggml::quantize_row_imatrix(ty, &x[r * COLS..(r + 1) * COLS], &importance, &mut out)
            .unwrap();
        let want = &reference[r * row_bytes..(r + 1) * row_bytes];
        if out != want {
            let first = out.iter().zip(want).position(|(a, b)| a != b).unwrap();
            bad.push((r, first / ty.type_size(), first % ty.type_size()));
        }
    }
    assert!(
        bad.is_empty(),
        "{}: {} mismatching rows (row, block, byte): {bad:?}",
        ty.name(),
        bad.len()
    );
    // The matrix entry point on a few rows (all 64 again would double the debug-build time).
    let (first, rows) = (44, 6);
    let mut all = vec![0u8; rows * row_bytes];
    let src = &x[first * COLS..(first + rows) * COLS];
    ggml::quantize_rows_imatrix(ty, src, COLS, &importance, &mut all, Par::all_cores()).unwrap();
    assert!(
        all[..] == reference[first * row_bytes..(first + rows) * row_bytes],
        "{}: quantize_rows_imatrix differs",
        ty.name()
    );
}

#[test]
fn q4_0_matches_llama_cpp() {
    check(GgmlType::Q4_0);
}

#[test]
fn q4_1_matches_llama_cpp() {
    check(GgmlType::Q4_1);
}

#[test]
fn q5_0_matches_llama_cpp() {
    check(GgmlType::Q5_0);
}

#[test]
fn q5_1_matches_llama_cpp() {
    check(GgmlType::Q5_1);
}

#[test]
fn q2_k_matches_llama_cpp() {
    check(GgmlType::Q2_K);
}

#[test]
fn q3_k_matches_llama_cpp() {
    check(GgmlType::Q3_K);
}

#[test]
fn q4_k_matches_llama_cpp() {
    check(GgmlType::Q4_K);
}

#[test]
fn q5_k_matches_llama_cpp() {
    check(GgmlType::Q5_K);
}

#[test]
fn q6_k_matches_llama_cpp() {
    check(GgmlType::Q6_K);
}

/// Q8_0 (llama.cpp's `quantize_q8_0` ignores `quant_weights`) and the float types: the
/// unweighted bytes.
#[test]
fn types_without_importance_give_the_unweighted_bytes() {
    let x = f32s(&data("ggml/input_f32.bin"));
    let importance = f32s(&data("ggml_imatrix/imatrix_f32.bin"));
    for ty in [GgmlType::Q8_0, GgmlType::F16, GgmlType::BF16, GgmlType::F32] {
        assert!(!ty.uses_importance());
        let n = ty.row_bytes(COLS).unwrap();
        let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
        for r in [0, 20, 55] {
            let row = &x[r * COLS..(r + 1) * COLS];
            ggml::quantize_row(ty, row, &mut a).unwrap();
            ggml::quantize_row_imatrix(ty, row, &importance, &mut b).unwrap();
            assert_eq!(a, b, "{} row {r}", ty.name());
        }
    }
}

/// Wrong lengths, bad importance weights and non-finite input: clear errors.
#[test]
fn bad_input_is_a_clear_error() {
    let x: Vec<f32> = (0..256).map(|i| (i as f32 - 128.0) / 100.0).collect();
    let good = vec![1.0f32; 256];
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::Q8_0,
    ] {
        let mut out = vec![0u8; ty.row_bytes(256).unwrap()];
        let msg = |imp: &[f32], x: &[f32], out: &mut [u8]| {
            ggml::quantize_row_imatrix(ty, x, imp, out)
                .unwrap_err()
                .to_string()
        };
        let m = msg(&good[..255], &x, &mut out);
        assert!(
            m.contains("importance") && m.contains("256") && m.contains("255"),
            "{m}"
        );
        for (bad, shown) in [(f32::NAN, "NaN"), (-1.0, "-1"), (f32::INFINITY, "inf")] {
            let mut imp = good.clone();
            imp[17] = bad;
            let m = msg(&imp, &x, &mut out);
            assert!(m.contains("weight 17") && m.contains(shown), "{m}");
        }
        let mut xn = x.clone();
        xn[100] = f32::NAN;
        let m = msg(&good, &xn, &mut out);
        assert!(m.contains("100"), "{}: {m}", ty.name());
        let n = out.len();
        let m = msg(&good, &x, &mut vec![0u8; n - 1]);
        assert!(m.contains(&format!("{n}")), "{m}");
        // The matrix entry point: the first non-finite value by flat index, over rows.
        let mut xs = [x.clone(), x.clone()].concat();
        xs[256 + 3] = f32::NEG_INFINITY;
        let mut all = vec![0u8; 2 * n];
        let m = ggml::quantize_rows_imatrix(ty, &xs, 256, &good, &mut all, Par::Seq)
            .unwrap_err()
            .to_string();
        assert!(m.contains("259"), "{m}");
        let m = ggml::quantize_rows_imatrix(ty, &xs, 256, &good[..128], &mut all, Par::Seq)
            .unwrap_err()
            .to_string();
        assert!(m.contains("importance"), "{m}");
        assert!(ggml::quantize_rows_imatrix(ty, &xs, 0, &good, &mut all, Par::Seq).is_err());
    }
}
