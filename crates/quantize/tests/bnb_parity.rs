//! NF4/FP4 against bitsandbytes 0.50.2 on CPU: packed bytes, absmax (plain and double-quantized)
//! and dequantized values, bit for bit (tests/data/bnb/README.md).

use modelopt_quantize::codebook::{Absmax, Bnb4, Bnb4Kind};
use modelopt_tensor_core::Par;
use ndarray::Array2;

fn data(path: &str) -> Vec<u8> {
    let p = format!("{}/tests/data/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn input() -> Array2<f32> {
    Array2::from_shape_vec((64, 1024), f32s(&data("ggml/input_f32.bin"))).unwrap()
}

/// Rows of `_dequant_rows.bin`.
const ROWS: [usize; 19] = [
    0, 31, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
];

fn check(kind: Bnb4Kind, block: usize, double: bool, offset_bits: u32) {
    let x = input();
    let name = format!("{}_bs{block}", kind.name());
    let case = if double {
        format!("{name}_double")
    } else {
        name.clone()
    };
    let s = match kind {
        Bnb4Kind::Nf4 => Bnb4::nf4(),
        Bnb4Kind::Fp4 => Bnb4::fp4(),
    }
    .block_size(block)
    .double_quant(double)
    .check()
    .unwrap();
    let q = s.quantize(&x).unwrap();
    assert_eq!(
        q.packed(),
        &data(&format!("bnb/{name}_packed.bin"))[..],
        "{case}: packed"
    );
    match q.absmax() {
        Absmax::F32(a) => {
            assert!(!double);
            assert_eq!(
                bits(a),
                bits(&f32s(&data(&format!("bnb/{name}_absmax.bin")))),
                "{case}: absmax"
            );
        }
        Absmax::Double {
            codes,
            absmax2,
            offset,
        } => {
            assert!(double);
            assert_eq!(
                codes,
                &data(&format!("bnb/{case}_absmax_u8.bin")),
                "{case}: absmax codes"
            );
            assert_eq!(
                bits(absmax2),
                bits(&f32s(&data(&format!("bnb/{case}_absmax2.bin")))),
                "{case}: absmax2"
            );
            assert_eq!(offset.to_bits(), offset_bits, "{case}: offset");
        }
        other => panic!("unexpected {other:?}"),
    }
    let d = q.dequantize();
    let want = f32s(&data(&format!("bnb/{case}_dequant_rows.bin")));
    for (k, &r) in ROWS.iter().enumerate() {
        assert_eq!(
            bits(&d.row(r).to_vec()),
            bits(&want[k * 1024..(k + 1) * 1024]),
            "{case}: dequantized row {r}"
        );
    }
    // The same bytes on several threads and through a view.
    assert_eq!(s.quantize_par(&x.view(), Par::all_cores()).unwrap(), q);
}

#[test]
fn nf4_block_64() {
    check(Bnb4Kind::Nf4, 64, false, 0);
}

#[test]
fn nf4_block_128() {
    check(Bnb4Kind::Nf4, 128, false, 0);
}

#[test]
fn fp4_block_64() {
    check(Bnb4Kind::Fp4, 64, false, 0);
}

#[test]
fn fp4_block_128() {
    check(Bnb4Kind::Fp4, 128, false, 0);
}

// Offsets from the reference manifest: 9387.284 and 9469.363 as f32 bits.
#[test]
fn nf4_block_64_double_quant() {
    check(Bnb4Kind::Nf4, 64, true, 1_175_629_091);
}

#[test]
fn nf4_block_128_double_quant() {
    check(Bnb4Kind::Nf4, 128, true, 1_175_713_140);
}

#[test]
fn fp4_block_64_double_quant() {
    check(Bnb4Kind::Fp4, 64, true, 1_175_629_091);
}

#[test]
fn fp4_block_128_double_quant() {
    check(Bnb4Kind::Fp4, 128, true, 1_175_713_140);
}
