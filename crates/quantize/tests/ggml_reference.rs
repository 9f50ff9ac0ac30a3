//! Bit-exactness of the GGML block formats against llama.cpp / gguf-py reference bytes.
//!
//! `tests/data/ggml/input_f32.bin` is 64 rows x 1024 f32 (rows 48..63 are edge cases, see the
//! reference README); `<type>.bin` holds those rows quantized by gguf-py 0.19 (simple types,
//! bf16) or llama.cpp's `ggml_quantize_chunk` (K-quants); `dequant_<type>.bin` is gguf-py's
//! `gguf.quants.dequantize` of rows `DEQUANT_ROWS` (see `make_dequant_refs.py`).

use modelopt_quantize::ggml::{self, GgmlType, Par};

const ROWS: usize = 64;
const COLS: usize = 1024;
const DEQUANT_ROWS: [usize; 8] = [0, 20, 47, 48, 52, 54, 55, 63];

fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/ggml/{name}", env!("CARGO_MANIFEST_DIR"));
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

fn input() -> Vec<f32> {
    let x = f32s(&data("input_f32.bin"));
    assert_eq!(x.len(), ROWS * COLS);
    x
}

/// Quantizes every row and compares it byte for byte; reports every mismatching row.
fn check_quantize(ty: GgmlType) {
    let x = input();
    let reference = data(&format!("{}.bin", ty.name()));
    let row_bytes = ty.row_bytes(COLS).unwrap();
    assert_eq!(reference.len(), ROWS * row_bytes);
    let mut bad = Vec::new();
    for r in 0..ROWS {
        let mut out = vec![0u8; row_bytes];
        ggml::quantize_row(ty, &x[r * COLS..(r + 1) * COLS], &mut out).unwrap();
        let want = &reference[r * row_bytes..(r + 1) * row_bytes];
        if out != want {
            let first = out.iter().zip(want).position(|(a, b)| a != b).unwrap();
            bad.push((r, first / ty.type_size(), first % ty.type_size()));
        }
    }
    assert!(
        bad.is_empty(),
        "{}: mismatching (row, block, byte): {bad:?}",
        ty.name()
    );

    // The parallel entry point gives the same bytes.
    let mut all = vec![0u8; ROWS * row_bytes];
    ggml::quantize_rows(ty, &x, COLS, &mut all, Par::all_cores()).unwrap();
    assert!(all == reference, "{}: quantize_rows differs", ty.name());
}

/// Dequantizes the reference bytes and compares with gguf-py's values bit for bit (NaN
/// matches NaN: rows whose f16 scale overflows dequantize to Inf * 0).
fn check_dequantize(ty: GgmlType) {
    let reference = data(&format!("{}.bin", ty.name()));
    let want = f32s(&data(&format!("dequant_{}.bin", ty.name())));
    let row_bytes = ty.row_bytes(COLS).unwrap();
    for (k, &r) in DEQUANT_ROWS.iter().enumerate() {
        let mut y = vec![0f32; COLS];
        ggml::dequantize_row(ty, &reference[r * row_bytes..(r + 1) * row_bytes], &mut y).unwrap();
        for (c, (a, b)) in y.iter().zip(&want[k * COLS..(k + 1) * COLS]).enumerate() {
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{} row {r} col {c}: {a} != {b}",
                ty.name()
            );
        }
    }
    let all = ggml::dequantize(ty, &reference, ROWS * COLS).unwrap();
    let mut par = vec![0f32; ROWS * COLS];
    ggml::dequantize_rows(ty, &reference, COLS, &mut par, Par::all_cores()).unwrap();
    assert!(
        all.iter()
            .zip(&par)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "{}: dequantize_rows differs",
        ty.name()
    );
}

macro_rules! reference_tests {
    ($($q:ident, $d:ident, $ty:expr;)*) => {$(
        #[test]
        fn $q() {
            check_quantize($ty);
        }
        #[test]
        fn $d() {
            check_dequantize($ty);
        }
    )*};
}

reference_tests! {
    q8_0_matches_reference_bytes, q8_0_dequantize_matches_gguf_py, GgmlType::Q8_0;
    q4_0_matches_reference_bytes, q4_0_dequantize_matches_gguf_py, GgmlType::Q4_0;
    q4_1_matches_reference_bytes, q4_1_dequantize_matches_gguf_py, GgmlType::Q4_1;
    q5_0_matches_reference_bytes, q5_0_dequantize_matches_gguf_py, GgmlType::Q5_0;
    q5_1_matches_reference_bytes, q5_1_dequantize_matches_gguf_py, GgmlType::Q5_1;
    q2_k_matches_reference_bytes, q2_k_dequantize_matches_gguf_py, GgmlType::Q2_K;
    q3_k_matches_reference_bytes, q3_k_dequantize_matches_gguf_py, GgmlType::Q3_K;
    q5_k_matches_reference_bytes, q5_k_dequantize_matches_gguf_py, GgmlType::Q5_K;
    q4_k_matches_reference_bytes, q4_k_dequantize_matches_gguf_py, GgmlType::Q4_K;
    q6_k_matches_reference_bytes, q6_k_dequantize_matches_gguf_py, GgmlType::Q6_K;
    bf16_matches_reference_bytes, bf16_dequantize_matches_gguf_py, GgmlType::BF16;
    iq4_nl_matches_reference_bytes, iq4_nl_dequantize_matches_gguf_py, GgmlType::IQ4_NL;
    iq4_xs_matches_reference_bytes, iq4_xs_dequantize_matches_gguf_py, GgmlType::IQ4_XS;
}

/// `<type>_imatrix.bin`: llama.cpp's `ggml_quantize_chunk(type, x, out, 0, 64, 1024, imatrix)`
/// with the 1024 column weights of `imatrix_f32.bin` (c392e509, what `llama-quantize
/// --imatrix` does for one tensor).
fn check_quantize_imatrix(ty: GgmlType) {
    let x = input();
    let imatrix = f32s(&data("imatrix_f32.bin"));
    assert_eq!(imatrix.len(), COLS);
    let reference = data(&format!("{}_imatrix.bin", ty.name()));
    let row_bytes = ty.row_bytes(COLS).unwrap();
    assert_eq!(reference.len(), ROWS * row_bytes);
    let mut bad = Vec::new();
    for r in 0..ROWS {
        let mut out = vec![0u8; row_bytes];
        ggml::quantize_row_imatrix(ty, &x[r * COLS..(r + 1) * COLS], &imatrix, &mut out).unwrap();
        if out != reference[r * row_bytes..(r + 1) * row_bytes] {
            bad.push(r);
        }
    }
    assert!(bad.is_empty(), "{}: mismatching rows {bad:?}", ty.name());
    let mut all = vec![0u8; ROWS * row_bytes];
    ggml::quantize_rows_imatrix(ty, &x, COLS, &imatrix, &mut all, Par::all_cores()).unwrap();
    assert!(
        all == reference,
        "{}: quantize_rows_imatrix differs",
        ty.name()
    );
}

#[test]
fn iq4_nl_imatrix_matches_reference_bytes() {
    check_quantize_imatrix(GgmlType::IQ4_NL);
}

#[test]
fn iq4_xs_imatrix_matches_reference_bytes() {
    check_quantize_imatrix(GgmlType::IQ4_XS);
}
