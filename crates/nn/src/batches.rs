use modelopt_tensor_core::{CoreError, Float};
use ndarray::{Array2, ArrayRef2, Axis};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::Result;

/// Seeded, shuffled mini-batches: each call to [`MiniBatches::epoch`] reshuffles the sample order
/// with the sampler's own random stream, so a run is reproducible from its seed.
///
/// ```
/// use modelopt_nn::MiniBatches;
/// let mut batches = MiniBatches::new(10, 4, 7)?;
/// let sizes: Vec<usize> = batches.epoch().map(|b| b.len()).collect();
/// assert_eq!(sizes, [4, 4, 2]);
/// let mut again = MiniBatches::new(10, 4, 7)?;
/// assert_eq!(again.epoch().next(), MiniBatches::new(10, 4, 7)?.epoch().next());
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
#[derive(Debug)]
pub struct MiniBatches {
    order: Vec<usize>,
    batch_size: usize,
    shuffle: bool,
    rng: StdRng,
}

impl MiniBatches {
    /// Batches of `batch_size` (> 0) over `samples` (> 0) indices, shuffled with `seed`.
    pub fn new(samples: usize, batch_size: usize, seed: u64) -> Result<Self> {
        if samples == 0 {
            return Err(CoreError::Empty {
                what: "mini-batch samples",
            }
            .into());
        }
        if batch_size == 0 {
            return Err(CoreError::invalid("batch_size", "must be > 0").into());
        }
        Ok(MiniBatches {
            order: (0..samples).collect(),
            batch_size,
            shuffle: true,
            rng: StdRng::seed_from_u64(seed),
        })
    }

    /// Keep the natural order (for evaluation) instead of shuffling.
    ///
    /// ```
    /// use modelopt_nn::MiniBatches;
    /// let mut b = MiniBatches::new(3, 2, 0)?.sequential();
    /// assert_eq!(b.epoch().next(), Some(&[0usize, 1][..]));
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn sequential(mut self) -> Self {
        self.shuffle = false;
        self
    }

    /// Number of batches per epoch.
    ///
    /// ```
    /// use modelopt_nn::MiniBatches;
    /// assert_eq!(MiniBatches::new(10, 4, 0)?.len(), 3);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }

    /// Always `false` (construction rejects zero samples); present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Start an epoch: reshuffle (unless sequential) and iterate over the batches' sample indices.
    pub fn epoch(&mut self) -> std::slice::Chunks<'_, usize> {
        if self.shuffle {
            self.order.shuffle(&mut self.rng);
        }
        self.order.chunks(self.batch_size)
    }
}

/// The rows `indices` of `x`, gathered into a new contiguous batch.
///
/// ```
/// use modelopt_nn::gather_rows;
/// use ndarray::array;
/// let x = array![[1.0f32], [2.0], [3.0]];
/// assert_eq!(gather_rows(&x, &[2, 0])?, array![[3.0], [1.0]]);
/// assert!(gather_rows(&x, &[3]).is_err());
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
pub fn gather_rows<A: Float>(x: &ArrayRef2<A>, indices: &[usize]) -> Result<Array2<A>> {
    if let Some(&bad) = indices.iter().find(|&&i| i >= x.nrows()) {
        return Err(CoreError::invalid(
            "indices",
            format!("row {bad} is out of range for {} rows", x.nrows()),
        )
        .into());
    }
    Ok(x.select(Axis(0), indices))
}
