//! Plain timing of the pruning cases of `benches/prune_speed.rs`, one line per case
//! (`name milliseconds`), so that `benches/compare/prune.py` can interleave it with torch.
//!
//! `cargo run --release -p modelopt-prune --example prune_timing -- [reps]`

use std::time::Instant;

use modelopt_prune::{Amount, L1Magnitude, Norm, Pruner, Structure};
use ndarray::{Array2, ArrayD};

fn weights(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array2::from_shape_fn((rows, cols), |_| {
        let mut acc = 0.0f32;
        for _ in 0..4 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            acc += (s >> 40) as f32 / (1u64 << 24) as f32;
        }
        (acc - 2.0) * 0.02
    })
}

fn main() -> Result<(), modelopt_prune::PruneError> {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let w = weights(4096, 4096, 1);
    let parts: Vec<ArrayD<f32>> = (0..16)
        .map(|i| weights(1024, 1024, 10 + i).into_dyn())
        .collect();
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    let half = Amount::fraction(0.5)?;
    let l1 = Pruner::new(L1Magnitude).amount(half);
    let ch0 = Pruner::new(L1Magnitude)
        .amount(half)
        .structure(Structure::channels(0, Norm::L2));
    let ch1 = Pruner::new(L1Magnitude)
        .amount(half)
        .structure(Structure::channels(1, Norm::L2));
    for _ in 0..reps {
        let t = Instant::now();
        let m = l1.prune(&w)?;
        println!("l1_unstructured_50 {:.3}", t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(m.num_pruned(), 4096 * 4096 / 2);
        let t = Instant::now();
        std::hint::black_box(ch0.prune(&w)?);
        println!(
            "ln_structured_l2_dim0_50 {:.3}",
            t.elapsed().as_secs_f64() * 1e3
        );
        let t = Instant::now();
        std::hint::black_box(ch1.prune(&w)?);
        println!(
            "ln_structured_l2_dim1_50 {:.3}",
            t.elapsed().as_secs_f64() * 1e3
        );
        let t = Instant::now();
        std::hint::black_box(l1.prune_global(&views, None)?);
        println!(
            "global_l1_16x1024x1024_50 {:.3}",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}
