//! Corrupt, truncated and hostile GGUF files: an error naming the file and the problem, never a
//! panic, and no allocation sized by an unchecked count.

mod common;

use modelopt_io::{Checkpoint, GgufFile};

/// Little builder of raw GGUF bytes.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        let mut r = Raw(b"GGUF".to_vec());
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn u32(&mut self, x: u32) -> &mut Self {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn u64(&mut self, x: u64) -> &mut Self {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    /// A tensor info: name, dims (GGUF order), type, offset.
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for d in dims {
            self.u64(*d);
        }
        self.u32(ty).u64(offset)
    }
    fn pad_data(&mut self, data: usize) -> Vec<u8> {
        let mut v = self.0.clone();
        v.resize(v.len().next_multiple_of(32) + data, 0);
        v
    }
}

fn open_err(bytes: &[u8]) -> String {
    let dir = common::temp_dir("gguf-bad");
    let path = dir.join("bad.gguf");
    std::fs::write(&path, bytes).unwrap();
    let e = GgufFile::open(&path)
        .expect_err("hostile file accepted")
        .to_string();
    assert!(e.contains("bad.gguf"), "error does not name the file: {e}");
    assert!(Checkpoint::open(&path).is_err());
    std::fs::remove_dir_all(dir).unwrap();
    e
}

#[test]
fn bad_magic_and_version() {
    let e = open_err(b"GGML\x03\x00\x00\x00");
    assert!(e.contains("bad magic"), "{e}");
    assert!(open_err(b"GG").contains("bad magic"));
    let e = open_err(&Raw::header(1, 0, 0).0);
    assert!(e.contains("version 1"), "{e}");
}

#[test]
fn absurd_counts() {
    let e = open_err(&Raw::header(3, u64::MAX, 0).0);
    assert!(e.contains("absurd tensor count"), "{e}");
    let e = open_err(&Raw::header(3, 0, 1 << 40).0);
    assert!(e.contains("absurd metadata key count"), "{e}");
    let mut r = Raw::header(3, 0, 1);
    r.u64(u64::MAX - 3);
    r.0.extend_from_slice(&[0; 32]);
    assert!(open_err(&r.0).contains("absurd length"));
    let mut r = Raw::header(3, 0, 1);
    r.str("arr").u32(9).u32(4).u64(1 << 50);
    r.0.extend_from_slice(&[0; 32]);
    assert!(open_err(&r.0).contains("absurd item count"));
    // an array the file could hold, but whose in-memory form would be 32x larger
    let mut r = Raw::header(3, 0, 1);
    r.str("arr").u32(9).u32(0).u64(5 << 20);
    r.0.resize(r.0.len() + (5 << 20), 0);
    assert!(open_err(&r.0).contains("item limit"));
}

#[test]
fn truncated_header() {
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(10); // u64 value missing
    assert!(open_err(&r.0).contains("truncated"));
    let e = open_err(&b"GGUF\x03\x00\x00"[..]);
    assert!(e.contains("truncated"), "{e}");
}

#[test]
fn unknown_types_and_bad_values() {
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(13).u32(0);
    assert!(open_err(&r.0).contains("unknown value type 13"));
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(7);
    r.0.push(2);
    assert!(open_err(&r.0).contains("bool byte 2"));
    let mut r = Raw::header(3, 0, 1);
    r.str("general.alignment").u32(4).u32(24);
    assert!(open_err(&r.0).contains("general.alignment"));
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[32], 4, 0); // Q4_2, removed from GGML
    let e = open_err(&r.pad_data(64));
    assert!(
        e.contains("`t`") && e.contains("unknown tensor type 4"),
        "{e}"
    );
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(8).u64(2);
    r.0.extend_from_slice(&[0xff, 0xfe]);
    assert!(open_err(&r.0).contains("UTF-8"));
}

#[test]
fn deeply_nested_arrays() {
    let mut r = Raw::header(3, 0, 1);
    r.str("k");
    r.u32(9);
    for _ in 0..100 {
        r.u32(9).u64(1);
    }
    r.u32(0).u64(0);
    assert!(open_err(&r.0).contains("nested"));
}

#[test]
fn tensor_infos_out_of_range_misaligned_overlapping_or_inconsistent() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[4, 2], 0, 0);
    let e = open_err(&r.pad_data(16)); // needs 32 bytes
    assert!(e.contains("`t`") && e.contains("out of range"), "{e}");
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[4], 0, u64::MAX - 31);
    assert!(open_err(&r.pad_data(16)).contains("out of range"));
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[4], 0, 4);
    assert!(open_err(&r.pad_data(64)).contains("not a multiple of the alignment"));
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[16], 0, 0).tensor("b", &[16], 0, 32);
    let e = open_err(&r.pad_data(128));
    assert!(e.contains("overlap"), "{e}");
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[1, 1, 1, 1, 1], 0, 0);
    assert!(open_err(&r.pad_data(32)).contains("5 dimensions"));
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[1 << 33, 1 << 33], 0, 0);
    assert!(open_err(&r.pad_data(32)).contains("`t`"));
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[100], 8, 0); // Q8_0 row not a multiple of 32
    let e = open_err(&r.pad_data(4096));
    assert!(e.contains("not a multiple"), "{e}");
    let mut r = Raw::header(3, 2, 0);
    r.tensor("t", &[1], 0, 0).tensor("t", &[1], 0, 32);
    assert!(open_err(&r.pad_data(64)).contains("repeated"));
}

#[test]
fn every_truncation_and_byte_flip_of_a_valid_file_is_handled() {
    let good = std::fs::read(common::data("peer.gguf")).unwrap();
    let dir = common::temp_dir("gguf-fuzz");
    let path = dir.join("f.gguf");
    for cut in 0..good.len() {
        std::fs::write(&path, &good[..cut]).unwrap();
        assert!(
            GgufFile::open(&path).is_err(),
            "truncated at {cut} accepted"
        );
    }
    for i in (0..900.min(good.len())).step_by(3) {
        let mut bad = good.clone();
        bad[i] ^= 0xa5;
        std::fs::write(&path, &bad).unwrap();
        if let Ok(f) = GgufFile::open(&path) {
            for t in f.tensors() {
                let _ = f.tensor_f32(&t.name);
            }
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}
