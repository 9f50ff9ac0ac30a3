//! Runs the numpy snippet of docs/formats.md on files the `modelopt` command writes and checks it
//! reproduces exactly the values modelopt reads back (python3 with numpy + safetensors only).

mod common;

use common::{ok, small_model, temp_dir};
use modelopt_io::{Checkpoint, DType, SafetensorsWriter, TensorInfo, f32_to_bytes};

fn snippet() -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/formats.md"
    ))
    .unwrap();
    let start = doc
        .find("<!-- snippet: dequantize -->")
        .expect("snippet marker");
    let body = &doc[start..];
    let code_start = body.find("```python\n").unwrap() + "```python\n".len();
    let code_end = body[code_start..].find("```").unwrap();
    body[code_start..code_start + code_end].to_string()
}

#[test]
fn numpy_snippet_of_formats_md_matches_modelopt() {
    if !common::python_has("numpy, safetensors.numpy") {
        return;
    }
    let dir = temp_dir("doc");
    let input = dir.join("m.safetensors");
    small_model(&input);
    let check = format!(
        "{}\nimport sys\nfrom safetensors.numpy import load_file\n\
         got = load_dequantized(sys.argv[1])\nwant = load_file(sys.argv[2])\n\
         assert sorted(got) == sorted(want), (sorted(got), sorted(want))\n\
         for k in want:\n    assert got[k].shape == want[k].shape, k\n    assert np.array_equal(got[k], want[k]), k\n\
         print(len(want))\n",
        snippet()
    );
    for ty in ["int8", "int4", "q8_0", "q4_0", "iq4_nl"] {
        let out = dir.join(format!("{ty}.safetensors"));
        ok(&[
            "quantize",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--type",
            ty,
        ]);
        // modelopt's reading: floats as f32, other tensors as stored.
        let c = Checkpoint::open(&out).unwrap();
        let tensors = c.tensors();
        let infos: Vec<TensorInfo> = tensors
            .iter()
            .map(|t| {
                let d = if t.is_float() && t.info.dtype != DType::F16 {
                    DType::F32
                } else {
                    t.info.dtype
                };
                TensorInfo::new(t.info.name.clone(), d, t.info.shape.clone())
            })
            .collect();
        let want = dir.join(format!("{ty}-want.safetensors"));
        let mut w = SafetensorsWriter::create(&want, infos.clone(), Default::default()).unwrap();
        for (t, i) in tensors.iter().zip(&infos) {
            if t.layout.is_some() || i.dtype == DType::F32 {
                w.write_tensor(&i.name, &f32_to_bytes(&c.tensor_f32(&i.name).unwrap()))
                    .unwrap();
            } else {
                w.write_tensor(&i.name, c.tensor_bytes(&i.name).unwrap())
                    .unwrap();
            }
        }
        w.finish().unwrap();
        let n = common::python(&check, &[out.to_str().unwrap(), want.to_str().unwrap()]);
        assert_eq!(n.trim(), "5", "{ty}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
