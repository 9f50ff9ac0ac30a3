//! Activation hooks: the inputs of every linear layer, for calibration.

use std::collections::BTreeMap;

use ndarray::{ArrayView2, Axis};

/// Receives the input of every linear layer while the model runs, batch by batch, so that
/// calibration statistics (importance vectors, GPTQ Hessians, per-channel maxima) need no model
/// code.
///
/// `name` is the checkpoint name of the layer's weight (e.g.
/// `encoder.layer.0.attention.self.query.weight`); `x` is `[tokens, in_features]`, one row per
/// real token of the batch (padding never appears). Layers that share an input (query, key and
/// value) are each called with the same rows. Calls come from the thread that runs the forward
/// pass, in layer order, after that layer's input is complete. Any `FnMut(&str, ArrayView2<f32>)`
/// closure is a hook.
///
/// ```
/// use modelopt_bert::ActivationHook;
/// use ndarray::{ArrayView2, array};
/// let mut rows = 0;
/// let mut count = |_name: &str, x: ArrayView2<'_, f32>| rows += x.nrows();
/// count.linear_input("w", array![[1.0f32, 2.0]].view());
/// assert_eq!(rows, 1);
/// ```
pub trait ActivationHook {
    /// Called with the input rows of linear layer `name`.
    fn linear_input(&mut self, name: &str, x: ArrayView2<'_, f32>);
}

impl<F: FnMut(&str, ArrayView2<'_, f32>)> ActivationHook for F {
    fn linear_input(&mut self, name: &str, x: ArrayView2<'_, f32>) {
        self(name, x)
    }
}

/// Per linear layer: the sum over tokens of each input column's square, and the number of
/// batches seen (llama.cpp's importance matrix statistics).
///
/// ```
/// use modelopt_bert::{ActivationHook, SquaredSums};
/// use ndarray::array;
/// let mut s = SquaredSums::default();
/// s.linear_input("w", array![[1.0f32, -2.0], [3.0, 0.5]].view());
/// s.linear_input("w", array![[1.0f32, 1.0]].view());
/// let e = &s.layers()["w"];
/// assert_eq!(e.sums, vec![11.0, 5.25]);
/// assert_eq!((e.calls, e.tokens), (2, 3));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SquaredSums {
    layers: BTreeMap<String, ColumnSums>,
}

/// One layer's accumulated statistics in [`SquaredSums`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnSums {
    /// Sum over tokens of `x[t, j]^2`, per input column `j` (accumulated in f64).
    pub sums: Vec<f64>,
    /// Batches (hook calls) seen.
    pub calls: u64,
    /// Tokens (rows) seen.
    pub tokens: u64,
}

impl SquaredSums {
    /// The statistics by layer name (the weight's checkpoint name), sorted by name.
    pub fn layers(&self) -> &BTreeMap<String, ColumnSums> {
        &self.layers
    }
}

impl ActivationHook for SquaredSums {
    fn linear_input(&mut self, name: &str, x: ArrayView2<'_, f32>) {
        let e = self.layers.entry(name.to_string()).or_default();
        if e.sums.len() != x.ncols() {
            // First call (or a layer whose width changed, which one model never does).
            e.sums = vec![0.0; x.ncols()];
        }
        for row in x.axis_iter(Axis(0)) {
            for (s, &v) in e.sums.iter_mut().zip(row) {
                *s += f64::from(v) * f64::from(v);
            }
        }
        e.calls += 1;
        e.tokens += x.nrows() as u64;
    }
}
