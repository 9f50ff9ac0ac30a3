//! Plain timing of the pruning cases of `benches/prune_speed.rs`, one line per case
//! (`name milliseconds`, the median of 3 back-to-back calls, each result dropped before the next
//! as in criterion's loop), so that `benches/compare/prune.py` can interleave it with torch.
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
    assert_eq!(l1.prune(&w)?.num_pruned(), 4096 * 4096 / 2);
    type Case<'a> = (
        &'a str,
        Box<dyn Fn() -> Result<(), modelopt_prune::PruneError> + 'a>,
    );
    let cases: Vec<Case<'_>> = vec![
        ("l1_unstructured_50", Box::new(|| l1.prune(&w).map(drop))),
        (
            "ln_structured_l2_dim0_50",
            Box::new(|| ch0.prune(&w).map(drop)),
        ),
        (
            "ln_structured_l2_dim1_50",
            Box::new(|| ch1.prune(&w).map(drop)),
        ),
        (
            "global_l1_16x1024x1024_50",
            Box::new(|| l1.prune_global(&views, None).map(drop)),
        ),
    ];
    for _ in 0..reps {
        for (name, f) in &cases {
            // As criterion's loop: the result is dropped before the next call, so the
            // allocator reuses its memory; the median of 3 back-to-back calls is printed.
            let mut t = [0f64; 3];
            for x in &mut t {
                let start = Instant::now();
                std::hint::black_box(f()?);
                *x = start.elapsed().as_secs_f64() * 1e3;
            }
            t.sort_by(f64::total_cmp);
            println!("{name} {:.3}", t[1]);
        }
    }
    Ok(())
}
