//! safetensors reading (against a file written by torch) and writing (round trip, atomicity).

mod common;

use std::collections::BTreeMap;

use common::{data, temp_dir};
use modelopt_io::{DType, SafetensorsFile, SafetensorsWriter, TensorInfo, f32_to_bytes};

#[test]
fn reads_torch_written_floats_like_torch_widens_them() {
    let f = SafetensorsFile::open(data("peer.safetensors")).unwrap();
    assert_eq!(f.metadata()["format"], "pt");
    let x = f.tensor("x_f16").unwrap();
    assert_eq!((x.dtype, x.shape.clone()), (DType::F16, vec![3, 5]));
    assert_eq!(f.tensor("x_bf16").unwrap().dtype, DType::BF16);
    for (stored, expected) in [
        ("x_f16", "x_f16_as_f32"),
        ("x_bf16", "x_bf16_as_f32"),
        ("x_f32", "x_f32"),
    ] {
        let got = f.tensor_f32(stored).unwrap();
        let want = common::f32s(f.tensor_bytes(expected).unwrap());
        assert_eq!(got, want, "{stored}");
    }
}

#[test]
fn integer_tensors_pass_through_untouched() {
    let f = SafetensorsFile::open(data("peer.safetensors")).unwrap();
    let ids = f.tensor_bytes("ids_i64").unwrap();
    let want: Vec<u8> = [0i64, -1, 1 << 40]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    assert_eq!(ids, &want[..]);
    assert_eq!(f.tensor_bytes("mask_u8").unwrap(), &[1, 0, 255]);
    let e = f.tensor_f32("ids_i64").unwrap_err().to_string();
    assert!(e.contains("ids_i64") && e.contains("I64"), "{e}");
    assert!(
        f.tensor_f32("nope")
            .unwrap_err()
            .to_string()
            .contains("no tensor named `nope`")
    );
}

#[test]
fn write_then_read_every_plain_dtype_and_copy_a_peer_file() {
    let dir = temp_dir("st-rt");
    let peer = SafetensorsFile::open(data("peer.safetensors")).unwrap();
    let path = dir.join("copy.safetensors");
    let infos: Vec<TensorInfo> = peer.tensors().to_vec();
    let mut w = SafetensorsWriter::create(&path, infos.clone(), peer.metadata().clone()).unwrap();
    for t in &infos {
        w.write_tensor(&t.name, peer.tensor_bytes(&t.name).unwrap())
            .unwrap();
    }
    w.finish().unwrap();
    let back = SafetensorsFile::open(&path).unwrap();
    assert_eq!(back.metadata(), peer.metadata());
    for t in &infos {
        assert_eq!(back.tensor(&t.name).unwrap(), t);
        assert_eq!(
            back.tensor_bytes(&t.name).unwrap(),
            peer.tensor_bytes(&t.name).unwrap()
        );
    }
    // f64 and an empty tensor too
    let p2 = dir.join("f64.safetensors");
    let infos = vec![
        TensorInfo::new("d", DType::F64, vec![2]),
        TensorInfo::new("empty", DType::F32, vec![0, 4]),
        TensorInfo::new("scalar", DType::F32, vec![]),
    ];
    let mut w = SafetensorsWriter::create(&p2, infos, BTreeMap::new()).unwrap();
    let d: Vec<u8> = [0.25f64, -1e300]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    w.write_tensor("d", &d).unwrap();
    w.write_tensor("empty", &[]).unwrap();
    w.write_tensor("scalar", &f32_to_bytes(&[3.0])).unwrap();
    w.finish().unwrap();
    let f = SafetensorsFile::open(&p2).unwrap();
    assert_eq!(f.tensor_f32("d").unwrap(), vec![0.25, f32::NEG_INFINITY]);
    assert_eq!(f.tensor_f32("empty").unwrap(), Vec::<f32>::new());
    assert_eq!(f.tensor_f32("scalar").unwrap(), vec![3.0]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_failed_write_leaves_no_file_and_keeps_the_old_one() {
    let dir = temp_dir("st-atomic");
    let path = dir.join("out.safetensors");
    std::fs::write(&path, b"previous").unwrap();
    {
        let infos = vec![
            TensorInfo::new("a", DType::F32, vec![2]),
            TensorInfo::new("b", DType::F32, vec![1]),
        ];
        let mut w = SafetensorsWriter::create(&path, infos, BTreeMap::new()).unwrap();
        w.write_tensor("a", &f32_to_bytes(&[1.0, 2.0])).unwrap();
        assert!(w.write_tensor("b", &f32_to_bytes(&[1.0, 2.0])).is_err()); // wrong size
        assert!(w.finish().is_err()); // `b` missing
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"previous");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "temporary file left behind: {left:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn python_safetensors_numpy_loads_our_file() {
    if !common::python_has("safetensors.numpy, numpy") {
        return;
    }
    let dir = temp_dir("st-py");
    let path = dir.join("ours.safetensors");
    let values: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 3.0).collect();
    let infos = vec![
        TensorInfo::new("w", DType::F32, vec![3, 4]),
        TensorInfo::new("h", DType::F16, vec![2]),
        TensorInfo::new("i", DType::I8, vec![3]),
    ];
    let meta = [("format".to_string(), "np".to_string())]
        .into_iter()
        .collect();
    let mut w = SafetensorsWriter::create(&path, infos, meta).unwrap();
    w.write_tensor("w", &f32_to_bytes(&values)).unwrap();
    let h: Vec<u8> = [0.5f32, -2.0]
        .iter()
        .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
        .collect();
    w.write_tensor("h", &h).unwrap();
    w.write_tensor("i", &[1u8, 0xff, 0x80]).unwrap();
    w.finish().unwrap();
    let out = common::python(
        "import sys, numpy as np\nfrom safetensors.numpy import load_file\n\
         d = load_file(sys.argv[1])\n\
         assert d['w'].dtype == np.float32 and d['w'].shape == (3, 4)\n\
         assert (d['w'].ravel() == np.arange(12, dtype=np.float32) * 0.5 - 3).all()\n\
         assert d['h'].tolist() == [0.5, -2.0] and d['h'].dtype == np.float16\n\
         assert d['i'].tolist() == [1, -1, -128]\n\
         print('ok')",
        &[path.to_str().unwrap()],
    );
    assert_eq!(out.trim(), "ok");
    std::fs::remove_dir_all(dir).unwrap();
}
