//! The nf4/fp4/codebook descriptors of the quantized-safetensors convention.

use modelopt_io::{DType, QuantLayout};
use modelopt_quantize::codebook::{Bnb4, Bnb4Kind, CodebookScheme};

#[test]
fn descriptors_round_trip_and_declare_their_companions() {
    let nf4 = QuantLayout::Bnb4 {
        kind: Bnb4Kind::Nf4,
        shape: vec![3, 100],
        block_size: 64,
        double_quant: true,
    };
    assert_eq!(
        nf4.to_json(),
        r#"{"block_size":64,"double_quant":true,"scheme":"nf4","shape":[3,100]}"#
    );
    assert_eq!(QuantLayout::from_json(&nf4.to_json()).unwrap(), nf4);
    assert_eq!(nf4.storage().unwrap(), (DType::U8, vec![150]));
    let names: Vec<&str> = nf4.companions().iter().map(|c| c.0).collect();
    assert_eq!(
        names,
        [".absmax", ".absmax2", ".absmax_offset", ".absmax_code"]
    );
    assert_eq!(nf4.companions()[0].2, vec![5]);
    let cb = QuantLayout::Codebook {
        shape: vec![10, 7],
        bits: 3,
        block_size: 32,
    };
    assert_eq!(QuantLayout::from_json(&cb.to_json()).unwrap(), cb);
    assert_eq!(cb.storage().unwrap(), (DType::U8, vec![27])); // 70 * 3 bits
    assert_eq!(cb.companions()[0].2, vec![8]);
    assert_eq!(cb.companions()[1].2, vec![3]);
    for bad in [
        r#"{"scheme":"nf4","block_size":48,"double_quant":false,"shape":[64]}"#,
        r#"{"scheme":"fp4","block_size":64,"shape":[64]}"#,
        r#"{"scheme":"codebook","bits":9,"block_size":64,"shape":[64]}"#,
        r#"{"scheme":"codebook","bits":4,"block_size":0,"shape":[64]}"#,
    ] {
        assert!(QuantLayout::from_json(bad).is_err(), "{bad}");
    }
}

#[test]
fn stored_bytes_decode_to_the_library_reconstruction() {
    let x: Vec<f32> = (0..300)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.01)
        .collect();
    let a = ndarray::Array1::from(x.clone());
    let q = Bnb4::fp4().block_size(64).quantize(&a).unwrap();
    let layout = QuantLayout::Bnb4 {
        kind: Bnb4Kind::Fp4,
        shape: vec![300],
        block_size: 64,
        double_quant: false,
    };
    let absmax: Vec<u8> = q
        .absmax()
        .values()
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let got = layout.dequantize(q.packed(), &[&absmax]).unwrap();
    assert_eq!(got, q.dequantize().to_vec());
    // Wrong companion sizes are errors, not panics.
    assert!(layout.dequantize(q.packed(), &[&absmax[..8]]).is_err());
    assert!(layout.dequantize(&q.packed()[..10], &[&absmax]).is_err());

    let c = CodebookScheme::learned_nf4(3, 32).quantize(&a).unwrap();
    let layout = QuantLayout::Codebook {
        shape: vec![300],
        bits: 3,
        block_size: 32,
    };
    let f = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let scales = c.scales().unwrap().1.to_vec();
    let got = layout
        .dequantize(c.packed_indices(), &[&f(c.levels()), &f(&scales)])
        .unwrap();
    assert_eq!(got, c.dequantize().to_vec());
}
