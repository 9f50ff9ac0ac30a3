//! Property tests: reconstruction error bound, fake-quant idempotence, packing round trips,
//! agreement of the calibrating kernel with the given-parameters one and of contiguous with strided layouts.

use modelopt_quantize::packing::{pack_nibbles, unpack_nibbles};
use modelopt_quantize::{QuantMode, QuantScheme};
use modelopt_tensor_core::Granularity;
use ndarray::{Array2, ArrayD, IxDyn};
use proptest::prelude::*;

fn matrix() -> impl Strategy<Value = Array2<f32>> {
    (1usize..5, 1usize..5, 0u32..3).prop_flat_map(|(r, c, mag)| {
        let scale = 10f32.powi(mag as i32 * 2 - 2);
        proptest::collection::vec(-1.0f32..1.0, r * 2 * c * 4).prop_map(move |v| {
            Array2::from_shape_vec((r * 2, c * 4), v.into_iter().map(|x| x * scale).collect())
                .unwrap()
        })
    })
}

fn scheme() -> impl Strategy<Value = QuantScheme> {
    let mode = prop_oneof![
        Just(QuantMode::Symmetric),
        Just(QuantMode::SymmetricFullRange),
        Just(QuantMode::Affine)
    ];
    let gran = prop_oneof![
        Just(Granularity::PerTensor),
        Just(Granularity::PerChannel { axis: 0 }),
        Just(Granularity::PerChannel { axis: 1 }),
        Just(Granularity::PerGroup {
            axis: 1,
            group_size: 2
        }),
        Just(Granularity::PerGroup {
            axis: 1,
            group_size: 4
        }),
        Just(Granularity::PerGroup {
            axis: 0,
            group_size: 2
        }),
    ];
    (2u8..=8, any::<bool>(), mode, gran)
        .prop_map(|(b, s, m, g)| QuantScheme::new(b).signed(s).mode(m).granularity(g))
}

/// The index into the parameter arrays of element `(r, c)`.
fn param_index(g: Granularity, r: usize, c: usize) -> IxDyn {
    match g {
        Granularity::PerChannel { axis: 0 } => IxDyn(&[r]),
        Granularity::PerChannel { .. } => IxDyn(&[c]),
        Granularity::PerGroup {
            axis: 1,
            group_size,
        } => IxDyn(&[r, c / group_size]),
        Granularity::PerGroup { group_size, .. } => IxDyn(&[r / group_size, c]),
        _ => IxDyn(&[0]),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn error_at_most_half_a_step_inside_the_clip_range(x in matrix(), s in scheme()) {
        let s = s.check().unwrap();
        let q = s.quantize(&x).unwrap();
        let deq = q.dequantize();
        let (scales, zps) = (q.scales(), q.zero_points());
        for ((r, c), &v) in x.indexed_iter() {
            let i = param_index(s.granularity(), r, c);
            let (sc, z) = (scales[&i], zps[&i]);
            let lo = (s.qmin() - z) as f32 * sc;
            let hi = (s.qmax() - z) as f32 * sc;
            if v >= lo && v <= hi {
                let err = (v - deq[[r, c]]).abs();
                prop_assert!(err <= sc * 0.5 * (1.0 + 1e-5) + v.abs() * 1e-6,
                    "x={v} deq={} scale={sc} zp={z} {s:?}", deq[[r, c]]);
            }
        }
    }

    #[test]
    fn calibrating_kernel_matches_given_params_kernel(x in matrix(), s in scheme()) {
        let s = s.check().unwrap();
        let q = s.quantize(&x).unwrap();
        let again = s.quantize_with(&x, q.params()).unwrap();
        prop_assert_eq!(q.codes(), again.codes());
        prop_assert_eq!(q.packed_codes(), again.packed_codes());
    }

    #[test]
    fn transposed_axis_gives_transposed_codes(x in matrix(), bits in 2u8..=8, affine in any::<bool>()) {
        let base = QuantScheme::new(bits).mode(if affine { QuantMode::Affine } else { QuantMode::Symmetric });
        let xt = x.t().to_owned();
        // Per channel: contiguous blocks (axis 0) vs strided channels (axis 1).
        let a = base.per_channel(0).quantize(&x).unwrap();
        let b = base.per_channel(1).quantize(&xt).unwrap();
        prop_assert_eq!(a.codes().t().to_owned(), b.codes());
        prop_assert_eq!(a.scales(), b.scales());
        // A non-contiguous view quantizes like its owned copy.
        let v = base.per_channel(1).quantize(&x.t()).unwrap();
        prop_assert_eq!(v.codes(), b.codes());
        // Per group: contiguous groups (axis 1) vs strided groups (axis 0).
        let a = base.per_group(1, 2).quantize(&x).unwrap();
        let b = base.per_group(0, 2).quantize(&xt).unwrap();
        prop_assert_eq!(a.codes().t().to_owned(), b.codes());
        prop_assert_eq!(a.scales().t().to_owned(), b.scales().to_owned());
    }

    #[test]
    fn fake_quantization_is_idempotent(x in matrix(), s in scheme()) {
        let s = s.check().unwrap();
        let params = s.quantize(&x).unwrap().params().clone();
        let once = s.fake_quantize_with(&x, &params).unwrap();
        let twice = s.fake_quantize_with(once.values(), &params).unwrap();
        prop_assert_eq!(once.values(), twice.values());
        prop_assert!(twice.in_range().iter().all(|&m| m));
        // Fake quantization equals quantize-then-dequantize.
        prop_assert_eq!(once.values(), &s.quantize_with(&x, &params).unwrap().dequantize());
    }

    #[test]
    fn packing_round_trips(codes in proptest::collection::vec(-8i32..8, 0..100), signed in any::<bool>()) {
        let codes: Vec<i32> = if signed { codes } else { codes.iter().map(|c| c + 8).collect() };
        let bytes: Vec<u8> = codes.iter().map(|&c| c as u8).collect();
        let packed = pack_nibbles(&bytes);
        prop_assert_eq!(packed.len(), codes.len().div_ceil(2));
        prop_assert_eq!(unpack_nibbles(&packed, codes.len(), signed).unwrap(), codes);
    }

    #[test]
    fn stored_codes_round_trip_through_unpacking(x in matrix(), bits in 2u8..=4) {
        let q = QuantScheme::new(bits).per_group(1, 2).quantize(&x).unwrap();
        let codes: ArrayD<i32> = q.codes().into_dyn();
        let unpacked = unpack_nibbles(q.packed_codes(), q.len(), true).unwrap();
        prop_assert_eq!(codes.iter().copied().collect::<Vec<_>>(), unpacked);
        prop_assert!(codes.iter().all(|&c| c.abs() < (1 << (bits - 1))));
    }
}

#[test]
fn parallel_split_equals_sequential() {
    use modelopt_tensor_core::Par;
    let w = Array2::from_shape_fn((300, 512), |(i, j)| {
        ((i * 31 + j * 17) % 97) as f32 * 0.01 - 0.48
    });
    for scheme in [
        QuantScheme::int8().per_channel(0),
        QuantScheme::int4().per_group(1, 32),
        QuantScheme::new(3).affine().signed(false).per_group(1, 128),
        QuantScheme::int8().affine(),
    ] {
        let s = scheme.check().unwrap();
        let seq = s.quantize(&w).unwrap();
        // Par::Seq with a large input still splits into tasks; Par::all_cores() uses rayon when
        // the `modelopt-tensor-core/rayon` feature is on.
        for par in [Par::Seq, Par::all_cores()] {
            assert_eq!(s.quantize_par(&w, par).unwrap(), seq, "{scheme:?}");
        }
    }
    let mut bad = w.clone();
    bad[[250, 3]] = f32::NAN;
    let e = QuantScheme::int8()
        .per_channel(0)
        .check()
        .unwrap()
        .quantize_par(&bad, Par::all_cores());
    assert!(e.unwrap_err().to_string().contains("flat index 128003"));
}
