//! Invariants over random shapes and values: every instruction set gives exactly the naive
//! integer result (int8), and exactly the portable kernel's result (weight-only int4).

use modelopt_kernels::{Isa, PackedBlocks, PackedI8, Par, gemm_i8_i64_with};
use proptest::prelude::*;

fn shape_and_values() -> impl Strategy<Value = (usize, usize, usize, Vec<i8>, Vec<i8>)> {
    (1usize..7, 1usize..130, 1usize..300).prop_flat_map(|(m, n, k)| {
        (
            Just(m),
            Just(n),
            Just(k),
            proptest::collection::vec(any::<i8>(), m * k),
            proptest::collection::vec(any::<i8>(), n * k),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn int8_products_are_exact_on_every_isa((m, n, k, a, w) in shape_and_values()) {
        let packed = PackedI8::new(&w, n, k).unwrap();
        let want: Vec<i64> = (0..m * n)
            .map(|o| (0..k).map(|c| a[(o / n) * k + c] as i64 * w[(o % n) * k + c] as i64).sum())
            .collect();
        for isa in Isa::available() {
            let mut y = vec![0i64; m * n];
            gemm_i8_i64_with(isa, Par::Seq, &a, m, &packed, &mut y).unwrap();
            prop_assert_eq!(&y, &want, "{:?}", isa);
        }
    }

    #[test]
    fn int4_simd_equals_portable(
        n in 1usize..40,
        blocks in 1usize..5,
        seed in any::<u64>(),
    ) {
        let (k, group) = (32 * blocks, 32);
        let mut s = seed | 1;
        let mut next = move || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; s };
        let codes: Vec<i8> = (0..n * k).map(|_| (next() % 16) as i8 - 8).collect();
        let scales: Vec<f32> = (0..n * blocks).map(|_| (next() % 1000) as f32 * 1e-3).collect();
        let x: Vec<f32> = (0..2 * k).map(|_| (next() % 2001) as f32 * 1e-3 - 1.0).collect();
        let packed = PackedBlocks::int4(&codes, &scales, n, k, group).unwrap();
        let mut want = vec![0f32; 2 * n];
        packed.matmul_with(Isa::Portable, Par::Seq, &x, 2, &mut want).unwrap();
        for isa in Isa::available() {
            let mut y = vec![0f32; 2 * n];
            packed.matmul_with(isa, Par::Seq, &x, 2, &mut y).unwrap();
            prop_assert_eq!(&y, &want, "{:?}", isa);
        }
    }
}
