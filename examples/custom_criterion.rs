//! A user-defined pruning criterion: weight magnitude times a per-row factor (e.g. how much
//! each output neuron matters downstream), used through `Box<dyn PruningCriterion>` exactly
//! like the built-in ones.
//!
//! Run: `cargo run --example custom_criterion`

use modelopt::prune::{
    Amount, L1Magnitude, Norm, PruneError, Pruner, PruningCriterion, Result, Structure,
};
use modelopt::tensor_core::CoreError;
use ndarray::{Array1, Array2, ArrayD, ArrayRef, Axis, IxDyn};

/// Importance of `W[i, j]` = `|W[i, j]| * row_factor[i]`.
struct RowWeightedMagnitude {
    row_factor: Array1<f32>,
}

impl PruningCriterion for RowWeightedMagnitude {
    fn scores(&self, weights: &ArrayRef<f32, IxDyn>) -> Result<ArrayD<f32>> {
        let rows = weights.shape().first().copied().unwrap_or(0);
        if rows != self.row_factor.len() {
            return Err(PruneError::from(CoreError::ShapeMismatch {
                expected: vec![self.row_factor.len()],
                found: vec![rows],
            }));
        }
        let mut s = weights.mapv(f32::abs);
        for (mut row, &f) in s.axis_iter_mut(Axis(0)).zip(&self.row_factor) {
            row.mapv_inplace(|x| x * f);
        }
        Ok(s)
    }
}

fn main() -> std::result::Result<(), PruneError> {
    // A small layer: 4 output rows of 8 inputs, all of similar magnitude.
    let w = Array2::from_shape_fn((4, 8), |(i, j)| ((i * 8 + j) as f32 * 0.37).sin());
    // Row 3 feeds a critical downstream unit: make it 10x as important.
    let criteria: Vec<(&str, Box<dyn PruningCriterion>)> = vec![
        ("l1 magnitude", Box::new(L1Magnitude)),
        (
            "row-weighted",
            Box::new(RowWeightedMagnitude {
                row_factor: Array1::from(vec![1.0, 1.0, 1.0, 10.0]),
            }),
        ),
    ];
    for (name, criterion) in criteria {
        let mask = Pruner::boxed(criterion)
            .amount(Amount::fraction(0.5)?)
            .prune(&w)?;
        let per_row: Vec<usize> = mask
            .keep()
            .outer_iter()
            .map(|r| r.iter().filter(|&&k| !k).count())
            .collect();
        println!(
            "{name:>14}: sparsity {:.2}, pruned per row {per_row:?}",
            mask.sparsity()
        );
    }
    // The same criterion drives structured pruning: rows ranked by the L2 norm of their scores.
    let rows = Pruner::new(RowWeightedMagnitude {
        row_factor: Array1::from(vec![1.0, 0.1, 1.0, 10.0]),
    })
    .amount(Amount::count(1))
    .structure(Structure::channels(0, Norm::L2))
    .prune(&w)?;
    let removed: Vec<usize> = (0..4).filter(|&r| !rows.keep()[[r, 0]]).collect();
    println!("channel pruning removed row(s) {removed:?}");
    assert_eq!(removed, vec![1]);
    Ok(())
}
