//! Corrupt, truncated and hostile safetensors files: an error naming the file and the problem,
//! never a panic.

mod common;

use modelopt_io::{Checkpoint, SafetensorsFile};

/// A file made of a JSON header (as given) and `data_len` data bytes.
fn craft(header: &str, data_len: usize) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend(std::iter::repeat_n(0u8, data_len));
    v
}

/// Opens `bytes` as a file and returns the error text, checking it names the file.
fn open_err(bytes: &[u8]) -> String {
    let dir = common::temp_dir("st-bad");
    let path = dir.join("bad.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let e = SafetensorsFile::open(&path)
        .expect_err("hostile file accepted")
        .to_string();
    assert!(
        e.contains("bad.safetensors"),
        "error does not name the file: {e}"
    );
    // The generic entry point must agree.
    assert!(Checkpoint::open(&path).is_err());
    std::fs::remove_dir_all(dir).unwrap();
    e
}

#[test]
fn header_length_beyond_the_file() {
    let mut v = craft(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        4,
    );
    v[..8].copy_from_slice(&10_000u64.to_le_bytes());
    assert!(open_err(&v).contains("beyond the file"));
    v[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(open_err(&v).contains("beyond the file"));
}

#[test]
fn too_short_and_empty() {
    assert!(open_err(&[1, 2, 3]).contains("shorter than"));
    assert!(open_err(&[]).contains("empty"));
}

#[test]
fn bad_magic() {
    let mut v = craft("  not json at all", 0);
    v[8] = b'[';
    assert!(open_err(&v).contains("bad magic"));
    assert!(open_err(b"GGUF\x03\x00\x00\x00\x00\x00\x00\x00garbage").contains("beyond the file"));
}

#[test]
fn offsets_out_of_range() {
    let e = open_err(&craft(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4000]}}"#,
        4,
    ));
    assert!(e.contains("`a`") && e.contains("out of range"), "{e}");
    let e = open_err(&craft(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551611,18446744073709551615]}}"#,
        4,
    ));
    assert!(e.contains("out of range"), "{e}");
    let e = open_err(&craft(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#,
        4,
    ));
    assert!(e.contains("out of range"), "{e}");
}

#[test]
fn overlapping_offsets() {
    let e = open_err(&craft(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
        8,
    ));
    assert!(e.contains("overlaps"), "{e}");
}

#[test]
fn shape_times_dtype_not_matching_the_bytes() {
    let e = open_err(&craft(
        r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
        8,
    ));
    assert!(e.contains("needs 12 bytes"), "{e}");
    // element count that overflows usize
    let e = open_err(&craft(
        r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}"#,
        8,
    ));
    assert!(e.contains("`a`"), "{e}");
    // bytes beyond the last tensor
    let e = open_err(&craft(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        12,
    ));
    assert!(e.contains("data section has 12 bytes"), "{e}");
}

#[test]
fn unknown_dtype_and_bad_fields() {
    let e = open_err(&craft(
        r#"{"a":{"dtype":"F7","shape":[1],"data_offsets":[0,4]}}"#,
        4,
    ));
    assert!(e.contains("unknown or unsupported dtype `F7`"), "{e}");
    let e = open_err(&craft(
        r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
        4,
    ));
    assert!(e.contains("shape"), "{e}");
    let e = open_err(&craft(r#"{"a":{"dtype":"F32","shape":[1]}}"#, 4));
    assert!(e.contains("data_offsets"), "{e}");
    let e = open_err(&craft(r#"{"__metadata__":{"k":5}}"#, 0));
    assert!(e.contains("__metadata__"), "{e}");
    let e = open_err(&craft(r#"{"a":"#, 0));
    assert!(e.contains("JSON"), "{e}");
    let mut v = craft(r#"{"a\u00ff":1}"#, 0);
    v[10] = 0xff; // invalid UTF-8
    assert!(open_err(&v).contains("UTF-8"));
}

#[test]
fn quantized_descriptor_that_does_not_match_the_stored_tensor() {
    let dir = common::temp_dir("st-badq");
    let path = dir.join("q.safetensors");
    let header = r#"{"__metadata__":{"modelopt.quant.a":"{\"scheme\":\"ggml\",\"type\":\"q8_0\",\"shape\":[1,32]}"},"a":{"dtype":"U8","shape":[1,4],"data_offsets":[0,4]}}"#;
    std::fs::write(&path, craft(header, 4)).unwrap();
    let e = Checkpoint::open(&path).unwrap_err().to_string();
    assert!(
        e.contains("q.safetensors") && e.contains("`a`") && e.contains("[1, 34]"),
        "{e}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn every_truncation_and_byte_flip_of_a_valid_file_is_handled() {
    let good = std::fs::read(common::data("peer.safetensors")).unwrap();
    let dir = common::temp_dir("st-fuzz");
    let path = dir.join("f.safetensors");
    for cut in 0..good.len() {
        std::fs::write(&path, &good[..cut]).unwrap();
        assert!(
            SafetensorsFile::open(&path).is_err(),
            "truncated at {cut} accepted"
        );
    }
    // Flip bytes of the header: must never panic (may still be valid).
    let header_end = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    for i in (0..header_end).step_by(3) {
        let mut bad = good.clone();
        bad[i] ^= 0x5a;
        std::fs::write(&path, &bad).unwrap();
        if let Ok(f) = SafetensorsFile::open(&path) {
            for t in f.tensors() {
                let _ = f.tensor_f32(&t.name);
            }
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}
