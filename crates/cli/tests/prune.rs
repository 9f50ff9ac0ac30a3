//! `modelopt prune` end to end: masks equal to the prune crate's, composition of two runs,
//! global scope, channels, N:M, `--shrink` on a 2-layer MLP, exit statuses, atomic output.

mod common;

use std::path::Path;

use common::{files_in, modelopt, ok, ok_json, temp_dir, values};
use modelopt_io::{Checkpoint, DType, SafetensorsWriter, TensorInfo, f32_to_bytes};
use modelopt_prune::{Amount, L1Magnitude, Mask, Norm, Pruner, RandomScores, Structure};
use ndarray::{ArrayD, IxDyn};

/// Writes `tensors` (name, dtype, shape, f32 values) to a safetensors file; F16 values are
/// rounded to f16.
fn write(path: &Path, tensors: &[(&str, DType, Vec<usize>, Vec<f32>)]) {
    let infos = tensors
        .iter()
        .map(|(n, d, s, _)| TensorInfo::new(*n, *d, s.clone()))
        .collect();
    let mut w = SafetensorsWriter::create(path, infos, Default::default()).unwrap();
    for (n, d, _, v) in tensors {
        let b = match d {
            DType::F32 => f32_to_bytes(v),
            DType::F16 => v
                .iter()
                .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                .collect(),
            DType::BF16 => v
                .iter()
                .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
                .collect(),
            DType::I64 => v.iter().flat_map(|x| (*x as i64).to_le_bytes()).collect(),
            _ => unreachable!(),
        };
        w.write_tensor(n, &b).unwrap();
    }
    w.finish().unwrap();
}

/// A file with F32, F16 and BF16 matrices (a few exact zeros in the F32 one), a bias, ids.
fn model(path: &Path) {
    let mut w = values(64 * 48, 1, 0.1);
    for i in (0..w.len()).step_by(97) {
        w[i] = 0.0;
    }
    write(
        path,
        &[
            ("blk.0.w", DType::F32, vec![64, 48], w),
            ("blk.0.h", DType::F16, vec![32, 24], values(32 * 24, 2, 2.0)),
            (
                "blk.0.g",
                DType::BF16,
                vec![4, 8, 6],
                values(4 * 8 * 6, 3, 1.0),
            ),
            ("blk.0.bias", DType::F32, vec![64], values(64, 4, 0.01)),
            ("ids", DType::I64, vec![5], vec![0.0, 1.0, 2.0, 3.0, 4.0]),
        ],
    );
}

/// Every tensor of a file as (shape, f32 values).
fn read(path: &Path) -> Vec<(String, Vec<usize>, ArrayD<f32>)> {
    let c = Checkpoint::open(path).unwrap();
    c.tensors()
        .into_iter()
        .filter(|t| t.info.dtype.is_float())
        .map(|t| {
            let x = c.tensor_f32(&t.info.name).unwrap();
            let a = ArrayD::from_shape_vec(IxDyn(&t.info.shape), x).unwrap();
            (t.info.name.clone(), t.info.shape.clone(), a)
        })
        .collect()
}

fn tensor(all: &[(String, Vec<usize>, ArrayD<f32>)], name: &str) -> ArrayD<f32> {
    all.iter().find(|t| t.0 == name).unwrap().2.clone()
}

/// Checks `out` = `input` where `mask` keeps and 0 where it prunes.
fn assert_masked(input: &ArrayD<f32>, out: &ArrayD<f32>, mask: &Mask, what: &str) {
    for ((x, y), k) in input.iter().zip(out).zip(mask.keep()) {
        if *k {
            assert_eq!(x.to_bits(), y.to_bits(), "{what}: a kept value changed");
        } else {
            assert_eq!(*y, 0.0, "{what}: a pruned value is not zero");
        }
    }
}

const PRUNED: [&str; 3] = ["blk.0.w", "blk.0.h", "blk.0.g"];

#[test]
fn unstructured_masks_equal_the_library_and_only_pruned_values_change() {
    let dir = temp_dir("prune-l1");
    let input = dir.join("m.safetensors");
    model(&input);
    let out = dir.join("p.safetensors");
    let rep = ok_json(&[
        "prune",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--amount",
        "0.5",
        "--json",
    ]);
    let (a, b) = (read(&input), read(&out));
    let pruner = Pruner::new(L1Magnitude).amount(Amount::fraction(0.5).unwrap());
    for name in PRUNED {
        let (x, y) = (tensor(&a, name), tensor(&b, name));
        let mask = pruner.prune_composed(&x).unwrap();
        assert_masked(&x, &y, &mask, name);
        // Independently of the library: half of the non-zeros go (half to even), and no kept
        // magnitude is below a pruned one.
        let zeros = x.iter().filter(|v| **v == 0.0).count();
        let nonzero = x.len() - zeros;
        let want = zeros + (nonzero as f64 * 0.5).round_ties_even() as usize;
        assert_eq!(y.iter().filter(|v| **v == 0.0).count(), want, "{name}");
        let max_pruned = x
            .iter()
            .zip(&y)
            .filter(|(_, y)| **y == 0.0)
            .map(|(x, _)| x.abs())
            .fold(0.0f32, f32::max);
        assert!(
            x.iter()
                .zip(&y)
                .filter(|(_, y)| **y != 0.0)
                .all(|(x, _)| x.abs() >= max_pruned),
            "{name}"
        );
        let row = rep["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap();
        assert_eq!(row["zeros_after"], want);
        assert_eq!(row["zeros_before"], zeros);
    }
    // 1-D and integer tensors are copied byte for byte, dtypes and shapes are kept.
    let (ci, co) = (
        Checkpoint::open(&input).unwrap(),
        Checkpoint::open(&out).unwrap(),
    );
    for name in ["blk.0.bias", "ids"] {
        assert_eq!(
            ci.tensor_bytes(name).unwrap(),
            co.tensor_bytes(name).unwrap()
        );
    }
    let dt: Vec<_> = co
        .tensors()
        .into_iter()
        .map(|t| (t.info.dtype, t.info.shape))
        .collect();
    let di: Vec<_> = ci
        .tensors()
        .into_iter()
        .map(|t| (t.info.dtype, t.info.shape))
        .collect();
    assert_eq!(dt, di);
    assert_eq!(rep["totals"]["pruned_tensors"], 3);
    // --keep leaves a matching tensor alone.
    let kept = dir.join("k.safetensors");
    ok(&[
        "prune",
        input.to_str().unwrap(),
        "-o",
        kept.to_str().unwrap(),
        "--amount",
        "0.5",
        "--keep",
        "*.h",
    ]);
    let ck = Checkpoint::open(&kept).unwrap();
    assert_eq!(
        ci.tensor_bytes("blk.0.h").unwrap(),
        ck.tensor_bytes("blk.0.h").unwrap()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_second_run_composes_as_torch_pruning_container() {
    let dir = temp_dir("prune-twice");
    let input = dir.join("m.safetensors");
    model(&input);
    let (p1, p2) = (dir.join("p1.safetensors"), dir.join("p2.safetensors"));
    for (i, o, amount) in [(&input, &p1, "0.5"), (&p1, &p2, "0.3")] {
        ok(&[
            "prune",
            i.to_str().unwrap(),
            "-o",
            o.to_str().unwrap(),
            "--amount",
            amount,
        ]);
    }
    let (a, b) = (read(&input), read(&p2));
    for name in PRUNED {
        let x = tensor(&a, name);
        let first = Pruner::new(L1Magnitude)
            .amount(Amount::fraction(0.5).unwrap())
            .prune_again(&x, &Mask::from_nonzero(&x))
            .unwrap();
        let second = Pruner::new(L1Magnitude)
            .amount(Amount::fraction(0.3).unwrap())
            .prune_again(&x, &first)
            .unwrap();
        assert_masked(&x, &tensor(&b, name), &second, name);
        let left = first.num_kept();
        let want = left - (left as f64 * 0.3).round_ties_even() as usize;
        assert_eq!(second.num_kept(), want);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn global_scope_ranks_all_tensors_together() {
    let dir = temp_dir("prune-global");
    let input = dir.join("m.safetensors");
    model(&input);
    let out = dir.join("g.safetensors");
    ok(&[
        "prune",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--amount",
        "0.6",
        "--scope",
        "global",
    ]);
    let (a, b) = (read(&input), read(&out));
    let xs: Vec<ArrayD<f32>> = PRUNED.iter().map(|n| tensor(&a, n)).collect();
    let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
    let priors: Vec<Mask> = xs.iter().map(|x| Mask::from_nonzero(x)).collect();
    let masks = Pruner::new(L1Magnitude)
        .amount(Amount::fraction(0.6).unwrap())
        .prune_global(&views, Some(&priors))
        .unwrap();
    for ((name, x), m) in PRUNED.iter().zip(&xs).zip(&masks) {
        assert_masked(x, &tensor(&b, name), m, name);
    }
    // One threshold for all: the per-tensor sparsities differ (the F16 tensor has scale 2.0).
    let total: usize = xs.iter().map(|x| x.len()).sum();
    let zeros: usize = xs.iter().flatten().filter(|v| **v == 0.0).count();
    let pruned: usize = masks.iter().map(Mask::num_pruned).sum();
    assert_eq!(
        pruned,
        zeros + ((total - zeros) as f64 * 0.6).round_ties_even() as usize
    );
    assert!(masks[1].sparsity() < 0.3 && masks[0].sparsity() > 0.6);
    std::fs::remove_dir_all(dir).unwrap();
}

/// `--criterion random`: tensors of the same shape get different masks (each its own seed from
/// `--seed` and its name, in both scopes), and the same `--seed` gives the same file twice.
#[test]
fn random_criterion_seeds_each_tensor_by_name_reproducibly() {
    let dir = temp_dir("prune-random");
    let input = dir.join("m.safetensors");
    // Two equal-shape tensors with the same values, no zeros: only the scores can differ.
    let v: Vec<f32> = values(16 * 32, 9, 1.0)
        .iter()
        .map(|x| x.abs() + 0.5)
        .collect();
    write(
        &input,
        &[
            ("a.weight", DType::F32, vec![16, 32], v.clone()),
            ("b.weight", DType::F32, vec![16, 32], v.clone()),
        ],
    );
    let x = ArrayD::from_shape_vec(IxDyn(&[16, 32]), v).unwrap();
    for scope in ["tensor", "global"] {
        let run = |seed: &str, name: &str| {
            let out = dir.join(format!("{scope}-{name}.safetensors"));
            ok(&[
                "prune",
                input.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--amount",
                "0.5",
                "--criterion",
                "random",
                "--seed",
                seed,
                "--scope",
                scope,
            ]);
            out
        };
        let (first, again, other) = (run("5", "first"), run("5", "again"), run("6", "other"));
        assert_eq!(
            std::fs::read(&first).unwrap(),
            std::fs::read(&again).unwrap(),
            "{scope}: same --seed, different output"
        );
        let (o, o6) = (read(&first), read(&other));
        let (a, b) = (tensor(&o, "a.weight"), tensor(&o, "b.weight"));
        let zeros = |t: &ArrayD<f32>| t.iter().filter(|v| **v == 0.0).count();
        assert!(zeros(&a) > 0 && zeros(&b) > 0, "{scope}: nothing pruned");
        assert_ne!(a, b, "{scope}: equal-shape tensors got the same mask");
        assert_ne!(
            a,
            tensor(&o6, "a.weight"),
            "{scope}: --seed 6 gave --seed 5's mask"
        );
        if scope == "tensor" {
            // Exactly the documented seed: RandomScores::seed_for(--seed, name).
            for name in ["a.weight", "b.weight"] {
                let m = Pruner::new(RandomScores::new(RandomScores::seed_for(5, name)))
                    .amount(Amount::fraction(0.5).unwrap())
                    .prune(&x)
                    .unwrap();
                assert_eq!(m.num_pruned(), 256);
                assert_masked(&x, &tensor(&o, name), &m, name);
            }
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn channels_and_n_m() {
    let dir = temp_dir("prune-struct");
    let input = dir.join("m.safetensors");
    model(&input);
    let a = read(&input);
    let p = input.to_str().unwrap();
    // Columns (axis 1) by their L1 norm: whole columns are zero.
    let out = dir.join("c.safetensors");
    ok(&[
        "prune",
        p,
        "-o",
        out.to_str().unwrap(),
        "--amount",
        "6",
        "--structure",
        "channels:1",
        "--norm",
        "1",
    ]);
    let b = read(&out);
    for name in PRUNED {
        let x = tensor(&a, name);
        let m = Pruner::new(L1Magnitude)
            .amount(Amount::count(6))
            .structure(Structure::channels(1, Norm::L1))
            .prune_composed(&x)
            .unwrap();
        let y = tensor(&b, name);
        assert_masked(&x, &y, &m, name);
        let zero_cols = y
            .axis_iter(ndarray::Axis(1))
            .filter(|c| c.iter().all(|v| *v == 0.0))
            .count();
        assert_eq!(zero_cols, 6, "{name}");
    }
    // 2:4 along axis 1: every group of 4 keeps 2 (the BF16 tensor's axis 1 has 8).
    let out = dir.join("nm.safetensors");
    let rep = ok_json(&[
        "prune",
        p,
        "-o",
        out.to_str().unwrap(),
        "--structure",
        "2:4",
        "--json",
    ]);
    let b = read(&out);
    for name in ["blk.0.h", "blk.0.g"] {
        let y = tensor(&b, name);
        for lane in y.lanes(ndarray::Axis(1)) {
            let v: Vec<f32> = lane.to_vec();
            for g in v.chunks(4) {
                assert_eq!(g.iter().filter(|x| **x != 0.0).count(), 2, "{name}");
            }
        }
    }
    assert_eq!(rep["totals"]["pruned_tensors"], 3);
    // An axis 1 that is not a multiple of M: copied, and the report says why.
    let out = dir.join("nm8.safetensors");
    let rep = ok_json(&[
        "prune",
        p,
        "-o",
        out.to_str().unwrap(),
        "--structure",
        "4:16",
        "--json",
    ]);
    let h = rep["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "blk.0.g")
        .unwrap();
    assert_eq!(h["pruned"], false);
    assert!(
        h["note"].as_str().unwrap().contains("multiple of 16"),
        "{h}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Two blocks of a 2-layer MLP (fc1 8 -> 16, fc2 16 -> 4), F32 and F16.
fn mlp(path: &Path) {
    let mut t = Vec::new();
    for (l, d) in [(0, DType::F32), (1, DType::F16)] {
        let s = 10 * l as u64;
        let parts: [(&str, Vec<usize>); 4] = [
            ("fc1.weight", vec![16, 8]),
            ("fc1.bias", vec![16]),
            ("fc2.weight", vec![4, 16]),
            ("fc2.bias", vec![4]),
        ];
        for (k, (part, shape)) in parts.into_iter().enumerate() {
            let n = shape.iter().product();
            let v = values(n, s + k as u64 + 1, 1.0);
            t.push((format!("blocks.{l}.{part}"), d, shape, v));
        }
    }
    let t: Vec<(&str, DType, Vec<usize>, Vec<f32>)> = t
        .iter()
        .map(|(n, d, s, v)| (n.as_str(), *d, s.clone(), v.clone()))
        .collect();
    write(path, &t);
}

#[test]
fn shrink_removes_coupled_channels_of_every_layer() {
    let dir = temp_dir("prune-shrink");
    let input = dir.join("mlp.safetensors");
    mlp(&input);
    let out = dir.join("s.safetensors");
    let spec = "blocks.*.fc1.weight:0, blocks.*.fc1.bias:0, blocks.*.fc2.weight:1";
    let rep = ok_json(&[
        "prune",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--amount",
        "0.7",
        "--shrink",
        spec,
        "--multiple-of",
        "4",
        "--json",
    ]);
    // 16 channels, round(11.2) = 11 pruned -> 5 kept -> rounded up to 8.
    assert_eq!(rep["groups"].as_array().unwrap().len(), 2);
    assert_eq!(rep["groups"][1]["channels_after"], 8);
    let (a, b) = (read(&input), read(&out));
    for l in 0..2 {
        let n = |s: &str| format!("blocks.{l}.{s}");
        let (w1, b1, w2) = (
            tensor(&a, &n("fc1.weight")),
            tensor(&a, &n("fc1.bias")),
            tensor(&a, &n("fc2.weight")),
        );
        // The 8 channels with the largest sum of squares over the group's members, computed here.
        let norm: Vec<f64> = (0..16)
            .map(|c| {
                let sq = |v: f32| f64::from(v) * f64::from(v);
                w1.index_axis(ndarray::Axis(0), c)
                    .iter()
                    .map(|v| sq(*v))
                    .sum::<f64>()
                    + sq(b1[[c]])
                    + w2.index_axis(ndarray::Axis(1), c)
                        .iter()
                        .map(|v| sq(*v))
                        .sum::<f64>()
            })
            .collect();
        let mut order: Vec<usize> = (0..16).collect();
        order.sort_by(|&x, &y| norm[y].total_cmp(&norm[x]));
        let mut kept = order[..8].to_vec();
        kept.sort();
        let (s1, sb, s2) = (
            tensor(&b, &n("fc1.weight")),
            tensor(&b, &n("fc1.bias")),
            tensor(&b, &n("fc2.weight")),
        );
        assert_eq!(
            (s1.shape(), sb.shape(), s2.shape()),
            (&[8, 8][..], &[8][..], &[4, 8][..])
        );
        assert_eq!(s1, w1.select(ndarray::Axis(0), &kept), "layer {l}");
        assert_eq!(sb, b1.select(ndarray::Axis(0), &kept));
        assert_eq!(s2, w2.select(ndarray::Axis(1), &kept));
        assert_eq!(tensor(&b, &n("fc2.bias")), tensor(&a, &n("fc2.bias")));
    }
    let c = Checkpoint::open(&out).unwrap();
    assert!(
        c.tensors()
            .iter()
            .filter(|t| t.info.name.starts_with("blocks.1"))
            .all(|t| t.info.dtype == DType::F16)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn usage_errors_exit_2_and_bad_files_exit_1_without_output() {
    let dir = temp_dir("prune-errors");
    let input = dir.join("m.safetensors");
    model(&input);
    let p = input.to_str().unwrap();
    let o = dir.join("o.safetensors");
    let os = o.to_str().unwrap();
    for args in [
        &["--amount", "1.5"][..],
        &["--amount", "-0.2"],
        &["--amount", "3073"], // blk.0.w has 64 x 48 = 3072 weights
        &["--amount", "25", "--structure", "channels:1"], // blk.0.h has 24 columns
        &[
            "--amount",
            "0.5",
            "--structure",
            "channels",
            "--scope",
            "global",
        ],
        &[
            "--amount",
            "0.5",
            "--shrink",
            "a:0",
            "--structure",
            "channels",
        ],
        &["--amount", "0.5", "--multiple-of", "8"],
        &["--amount", "half"],
        &[],
        &["--amount", "0.5", "--norm", "3"],
        &["--amount", "0.5", "--structure", "3:2"],
    ] {
        let mut all = vec!["prune", p, "-o", os];
        all.extend_from_slice(args);
        let r = modelopt(&all);
        assert_eq!(
            r.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        assert!(!o.exists(), "{args:?}");
    }
    // The output over the input is refused; the input is intact.
    let before = std::fs::read(&input).unwrap();
    let r = modelopt(&["prune", p, "-o", p, "--amount", "0.5"]);
    assert_eq!(r.status.code(), Some(2));
    assert_eq!(std::fs::read(&input).unwrap(), before);
    // Corrupt: truncated data, or a NaN weight: exit 1, one line naming the file, no output.
    let bad = dir.join("bad.safetensors");
    std::fs::write(&bad, &before[..before.len() - 100]).unwrap();
    let mut w = values(64, 5, 1.0);
    w[17] = f32::NAN;
    let nan = dir.join("nan.safetensors");
    write(
        &nan,
        &[
            ("ok", DType::F32, vec![8, 8], values(64, 6, 1.0)),
            ("w", DType::F32, vec![8, 8], w),
        ],
    );
    for (file, what) in [(&bad, "bad.safetensors"), (&nan, "nan.safetensors")] {
        let r = modelopt(&["prune", file.to_str().unwrap(), "-o", os, "--amount", "0.5"]);
        assert_eq!(r.status.code(), Some(1), "{what}");
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(what), "{err}");
        assert!(!o.exists());
    }
    let r = modelopt(&["prune", nan.to_str().unwrap(), "-o", os, "--amount", "0.5"]);
    assert!(String::from_utf8_lossy(&r.stderr).contains("`w`"));
    // A shrink spec that does not fit the file: exit 1.
    let r = modelopt(&[
        "prune",
        p,
        "-o",
        os,
        "--amount",
        "0.5",
        "--shrink",
        "layer.*.w:0",
    ]);
    assert_eq!(r.status.code(), Some(1));
    assert_eq!(
        files_in(&dir),
        ["bad.safetensors", "m.safetensors", "nan.safetensors"]
    );
    std::fs::remove_dir_all(dir).unwrap();
}
