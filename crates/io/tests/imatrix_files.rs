//! The legacy `imatrix.dat` reader and writer: a file written by the peer script
//! (`make_llama_gguf.py`, the layout of llama.cpp's `save_imatrix_legacy`), round trips,
//! byte layout, and hostile files.

use modelopt_io::{Imatrix, ImatrixEntry, IoError};

fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/imatrix/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("modelopt-imatrix-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Little-endian field writer for hand-made files.
#[derive(Default)]
struct Bytes(Vec<u8>);

impl Bytes {
    fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    fn f32s(mut self, v: &[f32]) -> Self {
        for x in v {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
        self
    }
}

/// One well-formed entry.
fn entry(b: Bytes, name: &str, ncall: i32, values: &[f32]) -> Bytes {
    b.i32(name.len() as i32)
        .raw(name.as_bytes())
        .i32(ncall)
        .i32(values.len() as i32)
        .f32s(values)
}

fn format_error(bytes: &[u8]) -> String {
    match Imatrix::from_bytes(bytes, "bad.dat") {
        Err(e @ IoError::Format { .. }) => e.to_string(),
        other => panic!("expected a format error, got {other:?}"),
    }
}

#[test]
fn reads_the_peer_file() {
    // Facts printed by a separate numpy parse of the same file.
    let m = Imatrix::from_bytes(&data("llama_small.dat"), "llama_small.dat").unwrap();
    let names: Vec<&str> = m.entries().iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        [
            "blk.0.attn_q.weight",
            "blk.0.attn_k.weight",
            "blk.0.attn_v.weight",
            "blk.0.attn_output.weight",
            "blk.0.ffn_gate.weight",
            "blk.0.ffn_up.weight",
            "blk.0.ffn_down.weight",
            "output.weight"
        ]
    );
    let ncalls: Vec<i32> = m.entries().iter().map(|e| e.ncall()).collect();
    assert_eq!(ncalls, [24, 46, 14, 22, 8, 14, 34, 16]);
    let down = m.get("blk.0.ffn_down.weight").unwrap();
    assert_eq!(down.sums().len(), 128);
    assert_eq!(down.sums()[0].to_bits(), 0x4100_2157);
    let q = m.get("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.sums()[0].to_bits(), 0x41c6_798c);
    assert_eq!(q.means()[0], 1.033_722_9);
    assert_eq!(m.last_chunk(), 100);
    assert_eq!(m.dataset(), "synthetic-activations");
}

#[test]
fn round_trips_through_a_file() {
    let dir = temp_dir("roundtrip");
    let path = dir.join("imatrix.dat");
    let m = Imatrix::from_bytes(&data("llama_small.dat"), "llama_small.dat").unwrap();
    m.write(&path).unwrap();
    let back = Imatrix::read(&path).unwrap();
    // The writer sorts entries by name, as llama-imatrix does; the content is the same.
    assert_eq!(back.entries().len(), m.entries().len());
    for e in m.entries() {
        assert_eq!(back.get(e.name()), Some(e));
    }
    assert_eq!(
        (back.last_chunk(), back.dataset()),
        (100, "synthetic-activations")
    );
    let sorted: Vec<&str> = back.entries().iter().map(|e| e.name()).collect();
    let mut want = sorted.clone();
    want.sort();
    assert_eq!(sorted, want);
    // No temporary file is left beside the output.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn writes_llama_imatrix_layout() {
    let m = Imatrix::new(vec![
        ImatrixEntry::new("b.weight", 3, vec![1.5, 0.0]).unwrap(),
        ImatrixEntry::new("a.weight", 2, vec![4.0]).unwrap(),
    ])
    .unwrap()
    .with_trailer(7, "calib.txt");
    let want = entry(
        entry(Bytes::default().i32(2), "a.weight", 2, &[4.0]),
        "b.weight",
        3,
        &[1.5, 0.0],
    )
    .i32(7)
    .i32(9)
    .raw(b"calib.txt");
    assert_eq!(m.to_bytes(), want.0);
}

#[test]
fn reads_files_without_trailer_or_dataset() {
    let bare = entry(Bytes::default().i32(1), "w", 4, &[2.0, 8.0]);
    let m = Imatrix::from_bytes(&bare.0, "bare.dat").unwrap();
    assert_eq!(m.get("w").unwrap().means(), vec![0.5, 2.0]);
    assert_eq!((m.last_chunk(), m.dataset()), (0, ""));
    let chunk_only = entry(Bytes::default().i32(1), "w", 0, &[2.0]).i32(5);
    let m = Imatrix::from_bytes(&chunk_only.0, "c.dat").unwrap();
    assert_eq!(m.last_chunk(), 5);
    // ncall 0: the sums are used as they are (llama-quantize divides only when ncall > 0).
    assert_eq!(m.get("w").unwrap().means(), vec![2.0]);
}

#[test]
fn hostile_files_are_clear_errors() {
    let one = |name: &str, ncall: i32, v: &[f32]| entry(Bytes::default().i32(1), name, ncall, v).0;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "truncated"),
        (vec![1, 0], "truncated"),
        (Bytes::default().i32(0).0, "entry count 0"),
        (Bytes::default().i32(-5).0, "entry count -5"),
        (
            Bytes::default().i32(i32::MAX).i32(1).0,
            "entry count 2147483647",
        ),
        (
            Bytes::default().i32(1).i32(-3).raw(&[0; 20]).0,
            "entry 0: name length -3",
        ),
        (
            Bytes::default().i32(1).i32(i32::MAX).raw(&[0; 20]).0,
            "entry 0: name length 2147483647",
        ),
        (
            Bytes::default()
                .i32(1)
                .i32(2)
                .raw(&[0xff, 0xfe])
                .i32(1)
                .i32(1)
                .f32s(&[1.0])
                .0,
            "entry 0: name is not UTF-8",
        ),
        (one("a\0b", 1, &[1.0]), "holds a NUL"),
        (one("w", -1, &[1.0]), "entry 0 `w`: negative call count -1"),
        (one("w", 1, &[]), "entry 0 `w`: value count 0"),
        (
            Bytes::default()
                .i32(1)
                .i32(1)
                .raw(b"w")
                .i32(1)
                .i32(1 << 30)
                .f32s(&[1.0])
                .0,
            "entry 0 `w`: value count 1073741824",
        ),
        (one("w", 1, &[1.0, f32::NAN]), "entry 0 `w`: value 1 is NaN"),
        (one("w", 1, &[-1.0]), "entry 0 `w`: value 0 is -1"),
        (one("w", 1, &[f32::INFINITY]), "entry 0 `w`: value 0 is inf"),
        (
            entry(
                entry(Bytes::default().i32(2), "w", 1, &[1.0]),
                "w",
                1,
                &[1.0],
            )
            .0,
            "entry 1 `w` appears twice",
        ),
        (
            entry(Bytes::default().i32(1), "w", 1, &[1.0])
                .i32(3)
                .raw(&[1, 2])
                .0,
            "truncated",
        ),
        (
            entry(Bytes::default().i32(1), "w", 1, &[1.0])
                .i32(3)
                .i32(10)
                .raw(b"abc")
                .0,
            "data set name length 10, but 3 bytes follow",
        ),
    ];
    for (bytes, want) in cases {
        let e = format_error(&bytes);
        assert!(e.starts_with("bad.dat: "), "{e}");
        assert!(e.contains(want), "{e:?} lacks {want:?}");
        assert!(e.contains("byte offset"), "{e}");
    }
    // The offset is the one of the bad field: the NaN is value 1 of entry 0, after
    // 4 (count) + 4 + 1 (name) + 4 + 4 (ncall, nval) + 4 (value 0) bytes.
    let e = format_error(&one("w", 1, &[1.0, f32::NAN]));
    assert!(e.contains("byte offset 21"), "{e}");
    // Truncation at every length of a good file: an error, never a panic.
    let good = data("llama_small.dat");
    let body_end = good.len() - (8 + "synthetic-activations".len());
    for cut in 0..good.len() {
        let r = Imatrix::from_bytes(&good[..cut], "cut.dat");
        if cut == body_end || cut == body_end + 4 {
            assert!(r.is_ok(), "cut {cut}");
        } else {
            assert!(r.is_err(), "cut {cut}");
        }
    }
}

#[test]
fn invalid_entries_are_refused_when_built() {
    assert!(ImatrixEntry::new("", 1, vec![1.0]).is_err());
    assert!(ImatrixEntry::new("w", 1, vec![]).is_err());
    assert!(ImatrixEntry::new("w", 1, vec![-0.5]).is_err());
    assert!(Imatrix::new(vec![]).is_err());
    let e = ImatrixEntry::new("w", 1, vec![1.0]).unwrap();
    let msg = Imatrix::new(vec![e.clone(), e]).unwrap_err().to_string();
    assert!(msg.contains("`w` appears twice"), "{msg}");
}

#[test]
fn a_failed_write_leaves_no_file() {
    let dir = temp_dir("failed");
    let m = Imatrix::new(vec![ImatrixEntry::new("w", 1, vec![1.0]).unwrap()]).unwrap();
    // The target is a directory: the rename fails and nothing is left behind.
    let target = dir.join("sub");
    std::fs::create_dir(&target).unwrap();
    assert!(m.write(&target).is_err());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}
