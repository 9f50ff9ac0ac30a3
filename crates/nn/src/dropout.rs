use modelopt_tensor_core::{CoreError, Float};
use ndarray::{Array, Array2, IntoDimension};

use crate::Result;
use crate::float_const as c;

/// Inverted dropout (Srivastava et al. 2014): in training, each activation is zeroed with
/// probability `p` and the survivors are scaled by `1 / (1 - p)`, so inference needs no rescaling and
/// is the identity. The mask stream is seeded, so training is reproducible.
///
/// ```
/// use modelopt_nn::Dropout;
/// let mut d = Dropout::new(0.5, 7)?;
/// let m = d.mask::<f32>(2, 4);
/// assert!(m.iter().all(|&v| v == 0.0 || v == 2.0));
/// assert!(Dropout::new(1.0, 0).is_err());
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Dropout {
    p: f64,
    state: u64,
}

impl Dropout {
    /// Dropout with drop probability `p` in `[0, 1)` and a seed for the mask stream.
    ///
    /// ```
    /// use modelopt_nn::Dropout;
    /// assert_eq!(Dropout::new(0.25, 0)?.p(), 0.25);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn new(p: f64, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(CoreError::invalid(
                "dropout",
                format!("probability must be in [0, 1), got {p}"),
            )
            .into());
        }
        Ok(Dropout { p, state: seed })
    }

    /// The drop probability.
    ///
    /// ```
    /// use modelopt_nn::Dropout;
    /// assert_eq!(Dropout::new(0.1, 0)?.p(), 0.1);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn p(&self) -> f64 {
        self.p
    }

    /// A fresh `[rows, cols]` mask of `0` (dropped) and `1 / (1 - p)` (kept); multiply the activations
    /// by it in the forward pass and the gradient by the same mask in the backward pass.
    ///
    /// ```
    /// use modelopt_nn::Dropout;
    /// let m = Dropout::new(0.0, 0)?.mask::<f64>(3, 3);
    /// assert!(m.iter().all(|&v| v == 1.0));
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn mask<A: Float>(&mut self, rows: usize, cols: usize) -> Array2<A> {
        self.mask_like((rows, cols))
    }

    /// A fresh mask of any shape, e.g. `(batch, channels, height, width)` for a batch of feature
    /// maps (each element dropped independently, as torch's `nn.Dropout`); the same stream as
    /// [`Dropout::mask`] for the same number of elements.
    ///
    /// ```
    /// use modelopt_nn::Dropout;
    /// let m = Dropout::new(0.3, 1)?.mask_like::<f32, _>((2, 3, 4, 4));
    /// assert_eq!(m.shape(), [2, 3, 4, 4]);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn mask_like<A: Float, Sh: IntoDimension>(&mut self, shape: Sh) -> Array<A, Sh::Dim> {
        let keep: A = c(1.0 / (1.0 - self.p));
        // Compare 53-bit uniforms against p: exact for any p, and one cheap splitmix64 draw per element.
        let threshold = self.p;
        Array::from_shape_simple_fn(shape.into_dimension(), || {
            let u = (splitmix64(&mut self.state) >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
            if u < threshold { A::zero() } else { keep }
        })
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): a small, clonable, seedable generator for dropout masks.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
