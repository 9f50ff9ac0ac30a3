//! The quantized-safetensors convention read back by hand-made examples (docs/formats.md).

mod common;

use std::collections::BTreeMap;

use modelopt_io::{Checkpoint, DType, QuantLayout, SafetensorsWriter, TensorInfo, f32_to_bytes};

fn write(path: &std::path::Path, tensors: Vec<(TensorInfo, Vec<u8>)>, meta: &[(&str, &str)]) {
    let meta: BTreeMap<String, String> = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let infos = tensors.iter().map(|(t, _)| t.clone()).collect();
    let mut w = SafetensorsWriter::create(path, infos, meta).unwrap();
    for (t, b) in &tensors {
        w.write_tensor(&t.name, b).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn int4_nibbles_low_first_twos_complement_and_int8_per_row() {
    let dir = common::temp_dir("qst-hand");
    let path = dir.join("q.safetensors");
    let int4 = QuantLayout::Int4Grouped {
        shape: vec![2, 4],
        group_size: 2,
    };
    let int8 = QuantLayout::Int8PerChannel { shape: vec![2, 3] };
    write(
        &path,
        vec![
            // codes row 0: [1, -1, 7, -7], row 1: [0, 2, -8 (never produced, still decodable), 3]
            (
                TensorInfo::new("a", DType::U8, vec![2, 2]),
                vec![0xF1, 0x97, 0x20, 0x38],
            ),
            (
                TensorInfo::new("a.scale", DType::F32, vec![2, 2]),
                f32_to_bytes(&[0.5, 0.25, 1.0, 2.0]),
            ),
            (
                TensorInfo::new("b", DType::I8, vec![2, 3]),
                vec![1, 0xFF, 0x7F, 0x81, 0, 2],
            ),
            (
                TensorInfo::new("b.scale", DType::F32, vec![2]),
                f32_to_bytes(&[0.5, 0.125]),
            ),
            (
                TensorInfo::new("plain", DType::F32, vec![1]),
                f32_to_bytes(&[9.0]),
            ),
        ],
        &[
            ("modelopt.quant.a", &int4.to_json()),
            ("modelopt.quant.b", &int8.to_json()),
        ],
    );
    let c = Checkpoint::open(&path).unwrap();
    let names: Vec<String> = c
        .tensors()
        .iter()
        .map(|t| format!("{} {}", t.info.name, t.type_name()))
        .collect();
    assert_eq!(names, ["a int4", "b int8", "plain F32"]);
    assert_eq!(c.tensors()[0].stored_bytes, 4 + 16);
    assert_eq!(
        c.tensor_f32("a").unwrap(),
        vec![0.5, -0.5, 1.75, -1.75, 0.0, 2.0, -16.0, 6.0]
    );
    assert_eq!(
        c.tensor_f32("b").unwrap(),
        vec![0.5, -0.5, 63.5, -15.875, 0.0, 0.25]
    );
    assert_eq!(c.tensor_f32("plain").unwrap(), vec![9.0]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn broken_descriptors_are_errors_naming_file_and_tensor() {
    let dir = common::temp_dir("qst-bad");
    let int8 = QuantLayout::Int8PerChannel { shape: vec![2, 3] }.to_json();
    let codes = (TensorInfo::new("b", DType::I8, vec![2, 3]), vec![0u8; 6]);
    type Stored = Vec<(TensorInfo, Vec<u8>)>;
    let cases: Vec<(Stored, String, &str)> = vec![
        (vec![codes.clone()], int8.clone(), "b.scale"), // companion missing
        (
            vec![
                codes.clone(),
                (TensorInfo::new("b.scale", DType::F32, vec![3]), vec![0; 12]),
            ],
            int8.clone(),
            "[3]",
        ),
        (
            vec![codes.clone()],
            r#"{"scheme":"int4","group_size":4,"shape":[2,3]}"#.into(),
            "`b`",
        ),
        (vec![codes.clone()], "not json".into(), "`b`"),
        (
            vec![codes.clone()],
            r#"{"scheme":"ggml","type":"q9_9","shape":[2,32]}"#.into(),
            "q9_9",
        ),
    ];
    for (i, (tensors, desc, needle)) in cases.into_iter().enumerate() {
        let path = dir.join(format!("bad{i}.safetensors"));
        write(&path, tensors, &[("modelopt.quant.b", &desc)]);
        let e = Checkpoint::open(&path).unwrap_err().to_string();
        assert!(
            e.contains(&format!("bad{i}.safetensors")) && e.contains(needle),
            "{i}: {e}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}
