//! The result of codebook quantization: packed indices, codebooks, optional scales.

use modelopt_tensor_core::{CoreError, ErrorMetrics};
use ndarray::{Array, ArrayRef, Dimension};

use super::bits::{packed_len, unpack_indices};
use super::sharing::Sharing;
use crate::{QuantError, Result};

/// A codebook-quantized tensor: element `x` is stored as a `bits`-bit index into a codebook of
/// `2^bits` `f32` levels and reconstructed as `level[index]`, or `level[index] * scale` when the
/// tensor has scales.
///
/// Codebooks are shared per tensor, per channel or per group ([`codebook_sharing`]); scales,
/// when present, go with a single codebook and are shared per channel, group or block
/// ([`scales`]). The indices are packed densely, most significant bit first
/// ([`pack_indices`](super::pack_indices)); docs/formats.md shows how to decode them with numpy.
///
/// [`codebook_sharing`]: Self::codebook_sharing
/// [`scales`]: Self::scales
///
/// ```
/// use modelopt_quantize::codebook::{CodebookScheme, Grid};
/// use ndarray::array;
///
/// let w = array![[0.1f32, -0.4, 0.9, 0.0], [0.3, 0.3, -1.0, 0.6]];
/// let q = CodebookScheme::grid(Grid::new(&[-1.0, -0.3, 0.0, 0.3, 1.0])?).quantize(&w)?;
/// assert_eq!(q.bits(), 3);
/// assert_eq!(q.dequantize(), array![[0.0f32, -0.3, 1.0, 0.0], [0.3, 0.3, -1.0, 0.3]]);
/// assert_eq!(q.storage_bytes(), 3 + 8 * 4); // 8 three-bit indices + one codebook of 8 levels
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CodebookQuantized<D: Dimension> {
    dim: D,
    bits: u8,
    sharing: Sharing,
    levels: Vec<f32>,
    scales: Option<(Sharing, Vec<f32>)>,
    packed: Vec<u8>,
}

impl<D: Dimension> CodebookQuantized<D> {
    pub(crate) fn from_parts(
        dim: D,
        bits: u8,
        sharing: Sharing,
        levels: Vec<f32>,
        scales: Option<(Sharing, Vec<f32>)>,
        packed: Vec<u8>,
    ) -> Self {
        CodebookQuantized {
            dim,
            bits,
            sharing,
            levels,
            scales,
            packed,
        }
    }

    /// Rebuilds a quantized tensor from stored parts (e.g. read from a file), checking every
    /// length: `levels` holds `2^bits` levels per codebook set of `sharing`, `scales` one value
    /// per set of its sharing (and then `sharing` is per tensor), `packed` the dense indices.
    ///
    /// ```
    /// use modelopt_quantize::codebook::{CodebookQuantized, CodebookScheme, Sharing};
    /// let w = ndarray::array![[0.5f32, -1.0, 0.25, 2.0]];
    /// let q = CodebookScheme::kmeans(2).quantize(&w)?;
    /// let back = CodebookQuantized::from_stored(w.raw_dim(), 2, Sharing::PerTensor,
    ///     q.levels().to_vec(), None, q.packed_indices().to_vec())?;
    /// assert_eq!(back, q);
    /// assert!(CodebookQuantized::from_stored(w.raw_dim(), 2, Sharing::PerTensor,
    ///     vec![0.0; 3], None, q.packed_indices().to_vec()).is_err());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn from_stored(
        dim: D,
        bits: u8,
        sharing: Sharing,
        levels: Vec<f32>,
        scales: Option<(Sharing, Vec<f32>)>,
        packed: Vec<u8>,
    ) -> Result<Self> {
        if !(1..=8).contains(&bits) {
            return Err(CoreError::invalid("bits", format!("must be in 1..=8, got {bits}")).into());
        }
        let n = dim.size();
        if n == 0 {
            return Err(CoreError::Empty {
                what: "stored codebook tensor",
            }
            .into());
        }
        let sets = sharing.count(dim.slice())?;
        check_len("codebook levels", sets << bits, levels.len(), "levels")?;
        if let Some((s, v)) = &scales {
            if sharing != Sharing::PerTensor {
                return Err(CoreError::invalid(
                    "scales",
                    "scales go with a single (per-tensor) codebook",
                )
                .into());
            }
            check_len("scales", s.count(dim.slice())?, v.len(), "scales")?;
        }
        check_len("packed indices", packed_len(n, bits), packed.len(), "bytes")?;
        Ok(Self::from_parts(dim, bits, sharing, levels, scales, packed))
    }

    /// Shape of the tensor.
    ///
    /// ```
    /// let q = modelopt_quantize::codebook::CodebookScheme::kmeans(1).quantize(&ndarray::Array2::<f32>::ones((2, 3)))?;
    /// assert_eq!(q.shape(), &[2, 3]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn shape(&self) -> &[usize] {
        self.dim.slice()
    }

    /// Number of elements.
    ///
    /// ```
    /// let q = modelopt_quantize::codebook::CodebookScheme::kmeans(1).quantize(&ndarray::Array2::<f32>::ones((2, 3)))?;
    /// assert_eq!(q.len(), 6);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.dim.size()
    }

    /// Always false (empty tensors are rejected).
    ///
    /// ```
    /// let q = modelopt_quantize::codebook::CodebookScheme::kmeans(1).quantize(&ndarray::array![1.0f32])?;
    /// assert!(!q.is_empty());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index width in bits (1..=8); each codebook has `2^bits` levels.
    ///
    /// ```
    /// let q = modelopt_quantize::codebook::CodebookScheme::kmeans(3).quantize(&ndarray::array![1.0f32, 2.0])?;
    /// assert_eq!((q.bits(), q.levels().len()), (3, 8));
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// Which elements share a codebook.
    ///
    /// ```
    /// use modelopt_quantize::codebook::{CodebookScheme, Sharing};
    /// let q = CodebookScheme::kmeans(2).per_channel(0).quantize(&ndarray::Array2::<f32>::eye(4))?;
    /// assert_eq!(q.codebook_sharing(), Sharing::PerChannel { axis: 0 });
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn codebook_sharing(&self) -> Sharing {
        self.sharing
    }

    /// All codebooks, `2^bits` levels each (sorted within a codebook; a codebook with fewer
    /// distinct levels repeats its last one), codebook `p` at `[p << bits, (p + 1) << bits)`.
    ///
    /// ```
    /// let q = modelopt_quantize::codebook::CodebookScheme::kmeans(2).quantize(&ndarray::array![1.0f32, 1.0, 3.0])?;
    /// assert_eq!(q.levels(), &[1.0, 3.0, 3.0, 3.0]); // two distinct values: exact
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn levels(&self) -> &[f32] {
        &self.levels
    }

    /// The scales and how they are shared, if the tensor has them (`x = level * scale`).
    ///
    /// ```
    /// use modelopt_quantize::codebook::{CodebookScheme, Grid, Sharing};
    /// let q = CodebookScheme::grid(Grid::new(&[-1.0, 0.0, 1.0])?).absmax_scaled(Sharing::PerChannel { axis: 0 })
    ///     .quantize(&ndarray::array![[2.0f32, -1.0], [0.5, 0.25]])?;
    /// assert_eq!(q.scales(), Some((Sharing::PerChannel { axis: 0 }, &[2.0f32, 0.5][..])));
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn scales(&self) -> Option<(Sharing, &[f32])> {
        self.scales.as_ref().map(|(s, v)| (*s, v.as_slice()))
    }

    /// The packed indices (dense, MSB first; see [`pack_indices`](super::pack_indices)).
    ///
    /// ```
    /// use modelopt_quantize::codebook::{CodebookScheme, Grid};
    /// let q = CodebookScheme::grid(Grid::new(&[0.0, 1.0])?).quantize(&ndarray::array![1.0f32, 0.0, 1.0])?;
    /// assert_eq!(q.packed_indices(), &[0b1010_0000]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn packed_indices(&self) -> &[u8] {
        &self.packed
    }

    /// The indices, shaped like the tensor.
    ///
    /// ```
    /// use modelopt_quantize::codebook::{CodebookScheme, Grid};
    /// let q = CodebookScheme::grid(Grid::new(&[0.0, 1.0, 2.0])?).quantize(&ndarray::array![[2.0f32, 0.4]])?;
    /// assert_eq!(q.indices(), ndarray::array![[2u8, 0]]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn indices(&self) -> Array<u8, D> {
        shaped(self.dim.clone(), self.index_vec())
    }

    fn index_vec(&self) -> Vec<u8> {
        // ok: `packed` has packed_len(len, bits) bytes by construction.
        unpack_indices(&self.packed, self.len(), self.bits).unwrap_or_default()
    }

    /// True storage in bytes: packed indices, 4 per codebook level and 4 per scale.
    ///
    /// ```
    /// use modelopt_quantize::codebook::CodebookScheme;
    /// let q = CodebookScheme::kmeans(4).per_channel(0).quantize(&ndarray::Array2::<f32>::eye(64))?;
    /// assert_eq!(q.storage_bytes(), 64 * 64 / 2 + 64 * 16 * 4);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn storage_bytes(&self) -> usize {
        self.packed.len()
            + 4 * self.levels.len()
            + self.scales.as_ref().map_or(0, |s| 4 * s.1.len())
    }

    /// Storage bits per element (`storage_bytes * 8 / len`).
    ///
    /// ```
    /// use modelopt_quantize::codebook::CodebookScheme;
    /// let q = CodebookScheme::kmeans(4).quantize(&ndarray::Array2::<f32>::eye(32))?;
    /// assert_eq!(q.bits_per_weight(), 4.0 + 16.0 * 32.0 / 1024.0);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn bits_per_weight(&self) -> f64 {
        (self.storage_bytes() * 8) as f64 / self.len() as f64
    }

    /// The reconstruction, shaped like the tensor.
    ///
    /// ```
    /// use modelopt_quantize::codebook::{CodebookScheme, Grid};
    /// let q = CodebookScheme::grid(Grid::new(&[-1.0, 0.5])?).quantize(&ndarray::array![-0.2f32, 0.9])?;
    /// assert_eq!(q.dequantize(), ndarray::array![0.5f32, 0.5]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn dequantize(&self) -> Array<f32, D> {
        let idx = self.index_vec();
        let mut out = vec![0f32; idx.len()];
        let l = 1usize << self.bits;
        let shape = self.dim.slice();
        // ok: the sharing was checked against this shape when the tensor was built.
        let _ = match &self.scales {
            Some((s, scales)) => {
                let lv = &self.levels[..l];
                s.for_each_run(shape, |start, len, p| {
                    let sc = scales[p];
                    for (o, &i) in out[start..start + len]
                        .iter_mut()
                        .zip(&idx[start..start + len])
                    {
                        *o = lv[usize::from(i)] * sc;
                    }
                })
            }
            None => self.sharing.for_each_run(shape, |start, len, p| {
                let lv = &self.levels[p * l..(p + 1) * l];
                for (o, &i) in out[start..start + len]
                    .iter_mut()
                    .zip(&idx[start..start + len])
                {
                    *o = lv[usize::from(i)];
                }
            }),
        };
        shaped(self.dim.clone(), out)
    }

    /// MSE, max abs error, SQNR (dB) and cosine of [`dequantize`](Self::dequantize) against
    /// `original`.
    ///
    /// ```
    /// let x = ndarray::array![1.0f32, -0.5, 0.25, 0.0];
    /// let m = modelopt_quantize::codebook::CodebookScheme::kmeans(2).quantize(&x)?.error_metrics(&x)?;
    /// assert_eq!(m.mse, 0.0); // four values, four levels
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn error_metrics(&self, original: &ArrayRef<f32, D>) -> Result<ErrorMetrics> {
        Ok(ErrorMetrics::between(original, &self.dequantize())?)
    }
}

fn check_len(what: &'static str, expected: usize, found: usize, unit: &'static str) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(QuantError::Length {
            what,
            expected,
            found,
            unit,
        })
    }
}

pub(crate) fn shaped<T: Clone + Default, D: Dimension>(dim: D, v: Vec<T>) -> Array<T, D> {
    // ok: `v` has exactly `dim.size()` elements by construction; the fallback is never taken.
    Array::from_shape_vec(dim.clone(), v).unwrap_or_else(|_| Array::default(dim))
}
