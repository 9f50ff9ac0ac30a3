//! GGUF reading (a file written by gguf-py) and writing (round trip; read back by gguf-py).

mod common;

use common::{data, temp_dir};
use modelopt_io::{DType, GgufFile, GgufType, GgufValue, GgufWriter, TensorInfo, f32_to_bytes};
use modelopt_quantize::ggml::GgmlType;

fn every_value_type() -> Vec<(String, GgufValue)> {
    let s = |x: &str| GgufValue::String(x.into());
    vec![
        ("k.u8".into(), GgufValue::U8(200)),
        ("k.i8".into(), GgufValue::I8(-100)),
        ("k.u16".into(), GgufValue::U16(60000)),
        ("k.i16".into(), GgufValue::I16(-30000)),
        ("k.u32".into(), GgufValue::U32(4_000_000_000)),
        ("k.i32".into(), GgufValue::I32(-2_000_000_000)),
        ("k.f32".into(), GgufValue::F32(1.5)),
        ("k.bool".into(), GgufValue::Bool(true)),
        ("k.str".into(), s("héllo")),
        ("k.u64".into(), GgufValue::U64((1 << 63) + 5)),
        ("k.i64".into(), GgufValue::I64(-(1 << 62))),
        ("k.f64".into(), GgufValue::F64(-0.125)),
        (
            "k.arr_str".into(),
            GgufValue::array(GgufType::String, vec![s("a"), s("bc"), s("")]).unwrap(),
        ),
        (
            "k.arr_f32".into(),
            GgufValue::array(
                GgufType::F32,
                vec![GgufValue::F32(0.5), GgufValue::F32(-1.0)],
            )
            .unwrap(),
        ),
        (
            "k.arr_empty".into(),
            GgufValue::array(GgufType::U64, vec![]).unwrap(),
        ),
        (
            "k.arr_nested".into(),
            GgufValue::array(
                GgufType::Array,
                vec![GgufValue::array(GgufType::I16, vec![GgufValue::I16(-3)]).unwrap()],
            )
            .unwrap(),
        ),
    ]
}

#[test]
fn reads_a_gguf_py_file() {
    let f = GgufFile::open(data("peer.gguf")).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(
        f.get("general.architecture").and_then(GgufValue::as_str),
        Some("test")
    );
    for (k, v) in every_value_type().into_iter().take(12) {
        assert_eq!(f.get(&k), Some(&v), "{k}");
    }
    let GgufValue::Array { items, .. } = f.get("k.arr_i32").unwrap() else {
        panic!()
    };
    assert_eq!(items.iter().map(|v| format!("{v:?}")).count(), 3);
    let t = f.tensor("t.f32").unwrap();
    assert_eq!((t.dtype, t.shape.clone()), (DType::F32, vec![2, 3]));
    assert_eq!(
        f.tensor_f32("t.f32").unwrap(),
        vec![-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]
    );
    assert_eq!(
        f.tensor_f32("t.f16").unwrap(),
        vec![-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]
    );
    assert_eq!(f.tensor("t.i32").unwrap().dtype, DType::I32);
    let i32s: Vec<u8> = [7i32, -8, 9, 10]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    assert_eq!(f.tensor_bytes("t.i32").unwrap(), &i32s[..]);
    let q = f.tensor("t.q8_0").unwrap();
    assert_eq!(
        (q.dtype, q.shape.clone()),
        (DType::Ggml(GgmlType::Q8_0), vec![2, 64])
    );
    assert_eq!(f.tensor_bytes("t.q8_0").unwrap().len(), 2 * 2 * 34);
    assert_eq!(
        f.tensor("t.q4_0").unwrap().dtype,
        DType::Ggml(GgmlType::Q4_0)
    );
}

#[test]
fn copy_of_the_gguf_py_file_is_byte_identical_in_data_and_equal_in_metadata() {
    let peer = GgufFile::open(data("peer.gguf")).unwrap();
    let dir = temp_dir("gguf-copy");
    let path = dir.join("copy.gguf");
    let infos: Vec<TensorInfo> = peer.tensors().to_vec();
    let mut w = GgufWriter::create(&path, peer.metadata().to_vec(), infos.clone()).unwrap();
    for t in &infos {
        w.write_tensor(&t.name, peer.tensor_bytes(&t.name).unwrap())
            .unwrap();
    }
    w.finish().unwrap();
    let back = GgufFile::open(&path).unwrap();
    assert_eq!(&back.metadata()[..peer.metadata().len()], peer.metadata());
    assert_eq!(
        back.get("general.quantization_version"),
        Some(&GgufValue::U32(2))
    );
    assert_eq!(back.tensors(), peer.tensors());
    for t in &infos {
        assert_eq!(
            back.tensor_bytes(&t.name).unwrap(),
            peer.tensor_bytes(&t.name).unwrap()
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn round_trip_every_value_type_custom_alignment_and_block_types() {
    let dir = temp_dir("gguf-rt");
    let path = dir.join("rt.gguf");
    let mut meta = every_value_type();
    meta.push(("general.alignment".into(), GgufValue::U32(64)));
    let tensors = vec![
        TensorInfo::new("a", DType::F32, vec![3]),
        TensorInfo::new("b", DType::Ggml(GgmlType::Q4_K), vec![2, 1, 256]),
        TensorInfo::new("c", DType::BF16, vec![1, 2, 2, 1]),
        TensorInfo::new("d", DType::I64, vec![1]),
        TensorInfo::new("e", DType::Ggml(GgmlType::Q6_K), vec![256]),
    ];
    let payload = |t: &TensorInfo| -> Vec<u8> {
        (0..t.bytes().unwrap())
            .map(|i| (i * 7 + t.name.len()) as u8)
            .collect()
    };
    let mut w = GgufWriter::create(&path, meta.clone(), tensors.clone()).unwrap();
    for t in &tensors {
        w.write_tensor(&t.name, &payload(t)).unwrap();
    }
    w.finish().unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(&f.metadata()[..meta.len()], &meta[..]);
    assert_eq!(f.tensors(), &tensors[..]);
    let bytes = std::fs::read(&path).unwrap();
    for t in &tensors {
        let got = f.tensor_bytes(&t.name).unwrap();
        assert_eq!(got, &payload(t)[..]);
        let offset = got.as_ptr() as usize - f.tensor_bytes("a").unwrap().as_ptr() as usize;
        assert_eq!(offset % 64, 0, "{} misaligned", t.name);
    }
    assert_eq!(bytes.len() % 64, 0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn writer_refuses_what_gguf_cannot_hold() {
    let dir = temp_dir("gguf-refuse");
    let p = dir.join("x.gguf");
    let five = TensorInfo::new("t", DType::F32, vec![1, 1, 1, 1, 1]);
    assert!(GgufWriter::create(&p, vec![], vec![five]).is_err());
    let u8t = TensorInfo::new("t", DType::U8, vec![1]);
    assert!(
        GgufWriter::create(&p, vec![], vec![u8t])
            .unwrap_err()
            .to_string()
            .contains("cannot store U8")
    );
    let bad_align = vec![("general.alignment".to_string(), GgufValue::U32(24))];
    assert!(GgufWriter::create(&p, bad_align, vec![]).is_err());
    let dup = vec![
        ("k".to_string(), GgufValue::U8(1)),
        ("k".to_string(), GgufValue::U8(2)),
    ];
    assert!(GgufWriter::create(&p, dup, vec![]).is_err());
    let mut w =
        GgufWriter::create(&p, vec![], vec![TensorInfo::new("t", DType::F32, vec![2])]).unwrap();
    assert!(w.write_tensor("t", &f32_to_bytes(&[1.0])).is_err());
    drop(w);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "partial file left behind"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn gguf_py_reads_our_file_with_the_same_values() {
    if !common::python_has("gguf, numpy") {
        return;
    }
    let peer = GgufFile::open(data("peer.gguf")).unwrap();
    let dir = temp_dir("gguf-py");
    let path = dir.join("ours.gguf");
    let mut meta = every_value_type();
    meta.push(("general.architecture".into(), GgufValue::from("test")));
    let src = peer.tensor_f32("t.src").unwrap();
    let tensors = vec![
        TensorInfo::new("w32", DType::F32, vec![2, 3]),
        TensorInfo::new("w16", DType::F16, vec![3, 2]),
        TensorInfo::new("q8", DType::Ggml(GgmlType::Q8_0), vec![2, 64]),
        TensorInfo::new("q4", DType::Ggml(GgmlType::Q4_0), vec![2, 64]),
        TensorInfo::new("src", DType::F32, vec![2, 64]),
    ];
    let mut w = GgufWriter::create(&path, meta, tensors).unwrap();
    let vals = [-2.5f32, -1.5, -0.5, 0.5, 1.5, 2.5];
    w.write_tensor("w32", &f32_to_bytes(&vals)).unwrap();
    let h: Vec<u8> = vals
        .iter()
        .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
        .collect();
    w.write_tensor("w16", &h).unwrap();
    w.write_tensor("q8", peer.tensor_bytes("t.q8_0").unwrap())
        .unwrap();
    w.write_tensor("q4", peer.tensor_bytes("t.q4_0").unwrap())
        .unwrap();
    w.write_tensor("src", &f32_to_bytes(&src)).unwrap();
    w.finish().unwrap();
    let script = r#"
import sys, numpy as np, gguf
r = gguf.GGUFReader(sys.argv[1])
f = {k: r.fields[k] for k in r.fields}
assert f['general.quantization_version'].contents() == 2
assert f['k.u8'].contents() == 200 and f['k.i8'].contents() == -100
assert f['k.u16'].contents() == 60000 and f['k.i16'].contents() == -30000
assert f['k.u32'].contents() == 4000000000 and f['k.i32'].contents() == -2000000000
assert f['k.f32'].contents() == 1.5 and f['k.bool'].contents() is True
assert f['k.str'].contents() == 'héllo'
assert f['k.u64'].contents() == 2**63 + 5 and f['k.i64'].contents() == -(2**62)
assert f['k.f64'].contents() == -0.125
assert f['k.arr_str'].contents() == ['a', 'bc', '']
assert f['k.arr_f32'].contents() == [0.5, -1.0]
assert f['k.arr_empty'].contents() == []
t = {x.name: x for x in r.tensors}
def deq(name):
    x = t[name]
    return gguf.quants.dequantize(x.data, x.tensor_type).reshape(-1)
vals = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5], dtype=np.float32)
assert list(t['w32'].shape) == [3, 2] and (deq('w32') == vals).all()
assert list(t['w16'].shape) == [2, 3] and (deq('w16') == vals).all()
peer = gguf.GGUFReader(sys.argv[2])
p = {x.name: x for x in peer.tensors}
for ours, theirs in [('q8', 'q8_0_expected'), ('q4', 'q4_0_expected')]:
    assert t[ours].tensor_type.name == {'q8': 'Q8_0', 'q4': 'Q4_0'}[ours]
    assert (deq(ours) == np.asarray(p[theirs].data).reshape(-1)).all(), ours
assert (deq('src') == np.asarray(p['t.src'].data).reshape(-1)).all()
print('ok')
"#;
    let out = common::python(
        script,
        &[path.to_str().unwrap(), data("peer.gguf").to_str().unwrap()],
    );
    assert_eq!(out.trim(), "ok");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn dequantizes_gguf_py_blocks_like_gguf_py() {
    let f = GgufFile::open(data("peer.gguf")).unwrap();
    for (q, expected) in [("t.q8_0", "q8_0_expected"), ("t.q4_0", "q4_0_expected")] {
        let got = f.tensor_f32(q).unwrap();
        let want = f.tensor_f32(expected).unwrap();
        assert_eq!(got, want, "{q}");
    }
}

#[test]
fn quantized_safetensors_round_trip_is_lossless() {
    use modelopt_io::{Checkpoint, FORMAT_KEY, FORMAT_VERSION, QuantLayout, SafetensorsWriter};
    let peer = GgufFile::open(data("peer.gguf")).unwrap();
    let dir = temp_dir("qst");
    let path = dir.join("q.safetensors");
    let layout = QuantLayout::Ggml {
        ggml_type: GgmlType::Q4_0,
        shape: vec![2, 64],
    };
    let (infos, meta) = layout.safetensors_entries("w").unwrap();
    let mut md: std::collections::BTreeMap<String, String> = [meta].into_iter().collect();
    md.insert(FORMAT_KEY.into(), FORMAT_VERSION.into());
    let mut w = SafetensorsWriter::create(&path, infos, md).unwrap();
    w.write_tensor("w", peer.tensor_bytes("t.q4_0").unwrap())
        .unwrap();
    w.finish().unwrap();
    let c = Checkpoint::open(&path).unwrap();
    let t = &c.tensors()[0];
    assert_eq!(
        (t.info.dtype, t.info.shape.clone()),
        (DType::Ggml(GgmlType::Q4_0), vec![2, 64])
    );
    assert_eq!(
        c.tensor_bytes("w").unwrap(),
        peer.tensor_bytes("t.q4_0").unwrap()
    );
    assert_eq!(
        c.tensor_f32("w").unwrap(),
        peer.tensor_f32("q4_0_expected").unwrap()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Q2_K, Q3_K and Q5_K tensors quantized by modelopt: read back through the GGUF reader they
/// dequantize to modelopt's values, and gguf-py (when present) dequantizes them to the same
/// values bit for bit.
#[test]
fn q2_k_q3_k_q5_k_tensors_read_back_and_match_gguf_py() {
    use modelopt_quantize::ggml;
    let dir = temp_dir("gguf-k");
    let path = dir.join("k.gguf");
    let x: Vec<f32> = (0..2 * 512)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0 + (i % 7) as f32 * 0.01)
        .collect();
    let types = [GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q5_K];
    let mut tensors = Vec::new();
    for ty in types {
        tensors.push(TensorInfo::new(ty.name(), DType::Ggml(ty), vec![2, 512]));
        let expected = format!("{}.expected", ty.name());
        tensors.push(TensorInfo::new(&expected, DType::F32, vec![2, 512]));
    }
    let mut w = GgufWriter::create(&path, vec![], tensors).unwrap();
    let mut want = Vec::new();
    for ty in types {
        let q = ggml::quantize(ty, &x).unwrap();
        let y = ggml::dequantize(ty, &q, x.len()).unwrap();
        w.write_tensor(ty.name(), &q).unwrap();
        w.write_tensor(&format!("{}.expected", ty.name()), &f32_to_bytes(&y))
            .unwrap();
        want.push(y);
    }
    w.finish().unwrap();
    let f = GgufFile::open(&path).unwrap();
    for (ty, y) in types.iter().zip(&want) {
        let got = f.tensor_f32(ty.name()).unwrap();
        assert!(
            got.iter().zip(y).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{}",
            ty.name()
        );
    }
    if common::python_has("gguf, numpy") {
        let script = r#"
import sys, numpy as np, gguf
r = gguf.GGUFReader(sys.argv[1])
t = {x.name: x for x in r.tensors}
for name in ['q2_K', 'q3_K', 'q5_K']:
    x = t[name]
    assert x.tensor_type.name == name.upper(), x.tensor_type.name
    got = gguf.quants.dequantize(x.data, x.tensor_type).reshape(-1)
    want = np.asarray(t[name + '.expected'].data).reshape(-1)
    assert (got.view(np.uint32) == want.view(np.uint32)).all(), name
print('ok')
"#;
        let out = common::python(script, &[path.to_str().unwrap()]);
        assert_eq!(out.trim(), "ok");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
