//! IQ4_NL / IQ4_XS beyond the reference bytes (`ggml_reference.rs`): bad input, importance-weight
//! checks, and dequantization derived by hand from the documented block layout.

use modelopt_quantize::ggml::{
    self, BlockIQ4_NL, BlockIQ4_XS, GgmlType, KVALUES_IQ4NL, Par, quantize_row_imatrix,
    quantize_rows_imatrix,
};
use proptest::prelude::*;

const IQ4: [GgmlType; 2] = [GgmlType::IQ4_NL, GgmlType::IQ4_XS];

fn f16(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

#[test]
fn non_finite_input_names_its_index() {
    for ty in IQ4 {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut x = vec![0.5f32; 512];
            x[300] = bad;
            let mut out = vec![0u8; ty.row_bytes(512).unwrap()];
            let e = ggml::quantize_row(ty, &x, &mut out)
                .unwrap_err()
                .to_string();
            assert!(e.contains("300"), "{}: {e}", ty.name());
            let e = quantize_row_imatrix(ty, &x, &[1.0; 512], &mut out)
                .unwrap_err()
                .to_string();
            assert!(e.contains("300"), "{}: {e}", ty.name());
            let e = quantize_rows_imatrix(ty, &x, 256, &[1.0; 256], &mut out, Par::all_cores())
                .unwrap_err()
                .to_string();
            assert!(e.contains("300"), "{}: {e}", ty.name());
        }
    }
}

#[test]
fn lengths_that_do_not_fit_are_errors() {
    // IQ4_XS needs whole super-blocks of 256; IQ4_NL blocks of 32.
    assert!(ggml::quantize(GgmlType::IQ4_XS, &[0.0; 96]).is_err());
    assert!(ggml::quantize(GgmlType::IQ4_NL, &[0.0; 96]).is_ok());
    assert!(ggml::quantize(GgmlType::IQ4_NL, &[0.0; 100]).is_err());
    let mut out = [0u8; 17];
    assert!(ggml::quantize_row(GgmlType::IQ4_NL, &[0.0; 32], &mut out).is_err());
    assert!(ggml::dequantize(GgmlType::IQ4_XS, &[0u8; 135], 256).is_err());
    let mut o = [0u8; 18];
    let e = quantize_row_imatrix(GgmlType::IQ4_NL, &[0.0; 32], &[1.0; 64], &mut o).unwrap_err();
    assert!(e.to_string().contains("64"), "{e}");
    let mut o = vec![0u8; 2 * 136];
    assert!(
        quantize_rows_imatrix(
            GgmlType::IQ4_XS,
            &[0.0; 512],
            256,
            &[1.0; 512],
            &mut o,
            Par::Seq
        )
        .is_err()
    );
}

#[test]
fn importance_weights_must_be_finite_and_non_negative() {
    let x = [0.25f32; 32];
    let mut o = [0u8; 18];
    for bad in [f32::NAN, f32::INFINITY, -1.0] {
        let mut w = [1.0f32; 32];
        w[7] = bad;
        let e = quantize_row_imatrix(GgmlType::IQ4_NL, &x, &w, &mut o).unwrap_err();
        assert!(e.to_string().contains("weight 7"), "{e}");
    }
    // All-zero weights are allowed: the block's scale is then 0 (newer llama.cpp's guard).
    quantize_row_imatrix(GgmlType::IQ4_NL, &x, &[0.0; 32], &mut o).unwrap();
    assert_eq!(&o[..2], &[0, 0]);
}

#[test]
fn importance_weights_on_other_types() {
    let x: Vec<f32> = (0..256).map(|i| (i as f32 * 0.1).sin()).collect();
    let w = vec![2.0f32; 256];
    // q8_0 and the float types ignore them, as llama.cpp does.
    for ty in [GgmlType::Q8_0, GgmlType::F16, GgmlType::BF16, GgmlType::F32] {
        let mut a = vec![0u8; ty.row_bytes(256).unwrap()];
        quantize_row_imatrix(ty, &x, &w, &mut a).unwrap();
        assert_eq!(a, ggml::quantize(ty, &x).unwrap(), "{}", ty.name());
        assert!(!ty.uses_importance());
    }
    for ty in IQ4 {
        assert!(ty.uses_importance());
    }
}

#[test]
fn zero_blocks() {
    let nl = BlockIQ4_NL::quantize(&[0.0; 32]);
    assert_eq!(nl.to_bytes()[..2], [0, 0]);
    assert_eq!(nl.dequantize(), [0.0; 32]);
    // Magnitudes below GROUP_MAX_EPS (1e-15) count as zero.
    let xs = BlockIQ4_XS::quantize(&[1e-16; 256]);
    assert_eq!(xs.d.to_bits(), 0x8000);
    assert!(xs.dequantize().iter().all(|v| *v == 0.0));
}

/// IQ4_NL dequantization from the block layout of `ggml-common.h`, written out.
fn by_hand_nl(b: &[u8; 18]) -> [f32; 32] {
    let d = f16(u16::from_le_bytes([b[0], b[1]]));
    std::array::from_fn(|j| {
        let byte = b[2 + j % 16];
        let code = if j < 16 { byte & 15 } else { byte >> 4 };
        d * KVALUES_IQ4NL[code as usize] as f32
    })
}

/// IQ4_XS: `d`, `scales_h`, `scales_l[4]`, 8 x 16 bytes of codes; `dl = d * (ls - 32)`.
fn by_hand_xs(b: &[u8; 136]) -> Vec<f32> {
    let d = f16(u16::from_le_bytes([b[0], b[1]]));
    let scales_h = u16::from_le_bytes([b[2], b[3]]);
    let mut y = Vec::with_capacity(256);
    for ib in 0..8 {
        let lo = (b[4 + ib / 2] >> (4 * (ib % 2))) & 15;
        let hi = ((scales_h >> (2 * ib)) & 3) as u8;
        let dl = d * ((lo | hi << 4) as i32 - 32) as f32;
        let qs = &b[8 + 16 * ib..8 + 16 * ib + 16];
        for j in 0..32 {
            let code = if j < 16 { qs[j] & 15 } else { qs[j - 16] >> 4 };
            y.push(dl * KVALUES_IQ4NL[code as usize] as f32);
        }
    }
    y
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn dequantize_is_the_documented_layout(
        nl in prop::array::uniform18(any::<u8>()),
        xs in prop::collection::vec(any::<u8>(), 136),
    ) {
        let y = ggml::dequantize(GgmlType::IQ4_NL, &nl, 32).unwrap();
        prop_assert!(same_bits(&y, &by_hand_nl(&nl)));
        let y = ggml::dequantize(GgmlType::IQ4_XS, &xs, 256).unwrap();
        prop_assert!(same_bits(&y, &by_hand_xs(xs.as_slice().try_into().unwrap())));
    }
}

fn sqnr_db(ty: GgmlType, x: &[f32]) -> f64 {
    let y = ggml::dequantize(ty, &ggml::quantize(ty, x).unwrap(), x.len()).unwrap();
    let s: f64 = x.iter().map(|v| (*v as f64).powi(2)).sum();
    let n: f64 = x
        .iter()
        .zip(&y)
        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
        .sum();
    10.0 * (s / n).log10()
}

/// The point of a non-uniform grid: on bell-shaped weights IQ4_NL beats Q4_0 at the same 4.5
/// bits per weight, and IQ4_XS matches it at 4.25.
#[test]
fn nonuniform_levels_beat_uniform_on_gaussian_weights() {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let x: Vec<f32> = (0..16_384)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos() * 0.02) as f32
        })
        .collect();
    let (q4, nl, xs) = (
        sqnr_db(GgmlType::Q4_0, &x),
        sqnr_db(GgmlType::IQ4_NL, &x),
        sqnr_db(GgmlType::IQ4_XS, &x),
    );
    assert!(nl > q4 + 0.5, "iq4_nl {nl:.2} dB vs q4_0 {q4:.2} dB");
    assert!(xs > q4 + 0.5, "iq4_xs {xs:.2} dB vs q4_0 {q4:.2} dB");
}
