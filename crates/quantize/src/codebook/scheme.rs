//! The codebook quantizer: a builder, validated once, that learns or takes levels and assigns.

use modelopt_tensor_core::{CoreError, Par, stats};
use ndarray::{ArrayRef, Dimension};

use super::assign::assign;
use super::bits::pack_indices;
use super::grid::Grid;
use super::kmeans::{EXACT_LIMIT, Histogram, KMeansParams, Points, kmeans};
use super::quantized::CodebookQuantized;
use super::sharing::Sharing;
use crate::{Quantizer, Result};

/// How the levels are chosen.
#[derive(Debug, Clone, PartialEq)]
enum Method {
    KMeans,
    Grid(Grid),
    Logarithmic,
}

/// Unchecked parameters of a codebook quantizer (a builder; see [`CodebookScheme::check`]).
///
/// - [`kmeans`](Self::kmeans): levels learned by k-means (k-means++ seeding from
///   [`seed`](Self::seed), Lloyd iterations until no level moves more than
///   [`tolerance`](Self::tolerance) times the value range, at most
///   [`max_iter`](Self::max_iter)), one codebook per tensor, per channel
///   ([`per_channel`](Self::per_channel), Deep Compression) or per group; optionally weighted per
///   element ([`CheckedCodebookScheme::quantize_weighted`], SqueezeLLM) and over absmax-normalised
///   blocks ([`learned_nf4`](Self::learned_nf4): one learned codebook for the whole tensor).
/// - [`grid`](Self::grid): a user's sorted levels (e.g. [`Grid::iq4_nl`]).
/// - [`logarithmic`](Self::logarithmic): levels `0, ±2^-k` times a scale.
///
/// A set with no more distinct values than levels gets exactly those values (zero error).
///
/// ```
/// use modelopt_quantize::codebook::CodebookScheme;
/// let w = ndarray::Array2::from_shape_fn((8, 256), |(i, j)| ((i * 31 + j * 17) % 97) as f32 / 97.0 - 0.5);
/// let q = CodebookScheme::kmeans(4).per_channel(0).seed(1).quantize(&w)?;
/// assert!(q.error_metrics(&w)?.sqnr_db > 20.0);
/// assert!(CodebookScheme::kmeans(9).check().is_err());
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CodebookScheme {
    bits: Option<u8>,
    method: Method,
    sharing: Sharing,
    scale: Option<Sharing>,
    seed: u64,
    max_iter: usize,
    tol: f64,
    scale_weighted: bool,
}

impl CodebookScheme {
    fn with(bits: Option<u8>, method: Method) -> Self {
        CodebookScheme {
            bits,
            method,
            sharing: Sharing::PerTensor,
            scale: None,
            seed: 0,
            max_iter: 100,
            tol: 1e-6,
            scale_weighted: false,
        }
    }

    /// `2^bits` levels learned by k-means, one codebook per tensor (change with
    /// [`per_channel`](Self::per_channel) / [`per_group`](Self::per_group)).
    ///
    /// ```
    /// let q = modelopt_quantize::codebook::CodebookScheme::kmeans(1).quantize(&ndarray::array![-1.0f32, -0.9, 2.0, 2.2])?;
    /// assert_eq!(q.dequantize(), ndarray::array![-0.95f32, -0.95, 2.1, 2.1]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn kmeans(bits: u8) -> Self {
        Self::with(Some(bits), Method::KMeans)
    }

    /// The "learned NF4": every `block` consecutive elements are divided by their absmax (as
    /// NF4 does), then one `2^bits`-level codebook is learned by k-means for the whole tensor.
    /// (Quantizing the dequantized tensor again need not give it back: the learned outer levels
    /// lie inside (-1, 1), so the block maxima shrink. Fixed grids that hold ±1 are idempotent.)
    ///
    /// ```
    /// use modelopt_quantize::codebook::{CodebookScheme, Sharing};
    /// let w = ndarray::Array2::from_shape_fn((4, 64), |(i, j)| ((i + 1) as f32) * ((j as f32) * 0.37).sin());
    /// let q = CodebookScheme::learned_nf4(4, 64).quantize(&w)?;
    /// assert_eq!(q.scales().map(|s| s.0), Some(Sharing::Blocks { size: 64 }));
    /// assert!(q.error_metrics(&w)?.sqnr_db > 20.0);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn learned_nf4(bits: u8, block: usize) -> Self {
        Self::kmeans(bits).absmax_scaled(Sharing::Blocks { size: block })
    }

    /// A fixed grid of levels (`bits` = the grid's [`bits`](Grid::bits)). Combine with
    /// [`absmax_scaled`](Self::absmax_scaled) for levels relative to a scale.
    ///
    /// ```
    /// use modelopt_quantize::codebook::{CodebookScheme, Grid};
    /// let q = CodebookScheme::grid(Grid::iq4_nl()).per_group(0, 32).quantize(&ndarray::Array1::linspace(-2.0f32, 2.0, 64))?;
    /// assert_eq!(q.bits(), 4);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn grid(grid: Grid) -> Self {
        Self::with(None, Method::Grid(grid))
    }

    /// Logarithmic (power-of-two) levels: `0` and `±scale * 2^-k` for `k = 0 ..
    /// 2^(bits-1) - 1`, the scale being the absmax per tensor (or per channel/group with
    /// [`per_channel`](Self::per_channel) / [`per_group`](Self::per_group)). A product with such
    /// a weight is a shift. Needs `bits >= 2`; values go to the nearest level in linear distance.
    ///
    /// ```
    /// let q = modelopt_quantize::codebook::CodebookScheme::logarithmic(3).quantize(&ndarray::array![8.0f32, -3.1, 1.1, 0.9])?;
    /// assert_eq!(q.dequantize(), ndarray::array![8.0f32, -4.0, 2.0, 0.0]); // levels 0, ±2, ±4, ±8
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn logarithmic(bits: u8) -> Self {
        Self::with(Some(bits), Method::Logarithmic)
    }

    /// One codebook per index along `axis` (k-means), or one scale per index (grid,
    /// logarithmic).
    ///
    /// ```
    /// let s = modelopt_quantize::codebook::CodebookScheme::kmeans(2).per_channel(1).check()?;
    /// assert!(s.quantize(&ndarray::Array2::<f32>::ones((3, 2))).is_ok());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn per_channel(self, axis: usize) -> Self {
        self.shared(Sharing::PerChannel { axis })
    }

    /// One codebook (k-means) or scale (grid, logarithmic) per `group_size` consecutive
    /// elements along `axis`.
    ///
    /// ```
    /// let s = modelopt_quantize::codebook::CodebookScheme::kmeans(2).per_group(1, 3);
    /// assert!(s.quantize(&ndarray::Array2::<f32>::ones((3, 4))).is_err()); // 3 does not divide 4
    /// ```
    pub fn per_group(self, axis: usize, group_size: usize) -> Self {
        self.shared(Sharing::PerGroup { axis, group_size })
    }

    fn shared(mut self, s: Sharing) -> Self {
        match self.method {
            Method::KMeans => self.sharing = s,
            _ => self.scale = Some(s),
        }
        self
    }

    /// Divide each set of `sharing` by its absmax before the (single) codebook applies; the
    /// absmax values are stored as `f32` scales.
    ///
    /// ```
    /// use modelopt_quantize::codebook::{CodebookScheme, Grid, Sharing};
    /// let q = CodebookScheme::grid(Grid::new(&[-1.0, 0.0, 1.0])?)
    ///     .absmax_scaled(Sharing::Blocks { size: 2 })
    ///     .quantize(&ndarray::array![4.0f32, -1.0, 0.5, 0.4])?;
    /// assert_eq!(q.dequantize(), ndarray::array![4.0f32, 0.0, 0.5, 0.5]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn absmax_scaled(mut self, sharing: Sharing) -> Self {
        self.scale = Some(sharing);
        self
    }

    /// With absmax scales and k-means: weigh each normalised value by its scale squared (times
    /// any importance given), so the learned levels minimise the squared error of the weights
    /// themselves rather than of the normalised values (a block with a large absmax counts
    /// more; on MiniLM +0.08 dB at 4 bits, +0.11 dB at 3). Default off (every normalised value
    /// counts the same, as NF4's derivation assumes).
    ///
    /// ```
    /// use modelopt_quantize::codebook::CodebookScheme;
    /// let w = ndarray::Array2::from_shape_fn((8, 128), |(i, j)| (1 + i * i) as f32 * ((j * 37 % 101) as f32 / 50.0 - 1.0).powi(3));
    /// let plain = CodebookScheme::learned_nf4(3, 64).quantize(&w)?;
    /// let weighted = CodebookScheme::learned_nf4(3, 64).scale_weighted(true).quantize(&w)?;
    /// assert_ne!(plain.levels(), weighted.levels()); // the large rows pull the levels
    /// assert!(weighted.error_metrics(&w)?.sqnr_db > 10.0);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn scale_weighted(mut self, on: bool) -> Self {
        self.scale_weighted = on;
        self
    }

    /// Seed of the k-means++ seeding (default 0). Codebook `p` of a per-channel or per-group
    /// scheme uses a stream derived from `(seed, p)`, so results do not depend on threads.
    ///
    /// ```
    /// let s = modelopt_quantize::codebook::CodebookScheme::kmeans(2).seed(42);
    /// assert!(s.check().is_ok());
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Most Lloyd iterations (default 100; 0 keeps the k-means++ seeds).
    ///
    /// ```
    /// assert!(modelopt_quantize::codebook::CodebookScheme::kmeans(2).max_iter(0).check().is_ok());
    /// ```
    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.max_iter = max_iter;
        self
    }

    /// Convergence tolerance relative to the value range (default `1e-6`; finite, `>= 0`).
    ///
    /// ```
    /// assert!(modelopt_quantize::codebook::CodebookScheme::kmeans(2).tolerance(-1.0).check().is_err());
    /// ```
    pub fn tolerance(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }

    /// Validates the parameters: bits in 1..=8 (2..=8 for logarithmic), a grid that fits in
    /// `bits`, block and group sizes at least 1, a finite tolerance, and scales only with a
    /// single codebook. Axes and divisibility are checked against the tensor when it is
    /// quantized.
    ///
    /// ```
    /// use modelopt_quantize::codebook::CodebookScheme;
    /// let e = CodebookScheme::logarithmic(1).check().unwrap_err();
    /// assert_eq!(e.to_string(), "invalid parameter `bits`: logarithmic codes need 2..=8 bits (sign, exponent, zero), got 1");
    /// assert!(CodebookScheme::kmeans(4).per_channel(0).absmax_scaled(modelopt_quantize::codebook::Sharing::PerTensor).check().is_err());
    /// ```
    pub fn check(&self) -> Result<CheckedCodebookScheme> {
        let bits = match (&self.method, self.bits) {
            (Method::Grid(g), None) => g.bits(),
            (Method::Logarithmic, Some(b)) if !(2..=8).contains(&b) => {
                return Err(CoreError::invalid(
                    "bits",
                    format!("logarithmic codes need 2..=8 bits (sign, exponent, zero), got {b}"),
                )
                .into());
            }
            (_, Some(b)) if !(1..=8).contains(&b) => {
                return Err(
                    CoreError::invalid("bits", format!("must be in 1..=8, got {b}")).into(),
                );
            }
            (_, Some(b)) => b,
            (_, None) => 4,
        };
        for s in [Some(self.sharing), self.scale].into_iter().flatten() {
            match s {
                Sharing::Blocks { size: 0 } => {
                    return Err(CoreError::invalid("block_size", "must be at least 1").into());
                }
                Sharing::PerGroup { group_size: 0, .. } => {
                    return Err(CoreError::invalid("group_size", "must be at least 1").into());
                }
                _ => {}
            }
        }
        if self.scale.is_some() && self.sharing != Sharing::PerTensor {
            return Err(CoreError::invalid(
                "scales",
                "absmax scales go with one codebook per tensor, not one per channel or group",
            )
            .into());
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return Err(CoreError::invalid(
                "tolerance",
                format!("must be finite and >= 0, got {}", self.tol),
            )
            .into());
        }
        let grid = match &self.method {
            Method::KMeans => None,
            Method::Grid(g) => Some(g.levels().to_vec()),
            Method::Logarithmic => Some(log_levels(bits)),
        };
        let scale = match self.method {
            Method::Logarithmic => Some(self.scale.unwrap_or(Sharing::PerTensor)),
            _ => self.scale,
        };
        Ok(CheckedCodebookScheme {
            bits,
            grid,
            sharing: self.sharing,
            scale,
            scale_weighted: self.scale_weighted,
            kmeans: KMeansParams {
                k: 1 << bits,
                seed: self.seed,
                max_iter: self.max_iter,
                tol: self.tol,
            },
        })
    }

    /// Checks the parameters, then quantizes `x` (see [`CheckedCodebookScheme::quantize`]).
    ///
    /// ```
    /// let q = modelopt_quantize::codebook::CodebookScheme::kmeans(2).quantize(&ndarray::array![1.0f32, 2.0])?;
    /// assert_eq!(q.dequantize(), ndarray::array![1.0f32, 2.0]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn quantize<D: Dimension>(&self, x: &ArrayRef<f32, D>) -> Result<CodebookQuantized<D>> {
        self.check()?.quantize(x)
    }
}

/// `0, ±2^-k` for `k < 2^(bits-1) - 1`, sorted.
fn log_levels(bits: u8) -> Vec<f32> {
    let k = (1i32 << (bits - 1)) - 1;
    let pos: Vec<f32> = (0..k).map(|e| 2f32.powi(-e)).collect();
    let mut v: Vec<f32> = pos.iter().map(|p| -p).collect();
    v.push(0.0);
    v.extend(pos.iter().rev());
    v
}

impl<D: Dimension> Quantizer<D> for CodebookScheme {
    type Output = CodebookQuantized<D>;

    fn quantize(&self, x: &ArrayRef<f32, D>) -> Result<CodebookQuantized<D>> {
        CodebookScheme::quantize(self, x)
    }
}

/// Validated codebook parameters (from [`CodebookScheme::check`]).
///
/// ```
/// let s = modelopt_quantize::codebook::CodebookScheme::kmeans(3).check()?;
/// assert_eq!(s.bits(), 3);
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedCodebookScheme {
    bits: u8,
    grid: Option<Vec<f32>>,
    sharing: Sharing,
    scale: Option<Sharing>,
    scale_weighted: bool,
    kmeans: KMeansParams,
}

impl CheckedCodebookScheme {
    /// Index width in bits.
    ///
    /// ```
    /// let g = modelopt_quantize::codebook::Grid::new(&[0.0, 1.0, 2.0])?;
    /// assert_eq!(modelopt_quantize::codebook::CodebookScheme::grid(g).check()?.bits(), 2);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// Quantizes `x` on the calling thread.
    ///
    /// Errors: empty input; NaN/Inf (naming the first index); an axis out of range or a group
    /// size that does not divide its axis.
    ///
    /// ```
    /// use modelopt_quantize::codebook::CodebookScheme;
    /// let s = CodebookScheme::kmeans(2).check()?;
    /// assert!(s.quantize(&ndarray::array![1.0f32, f32::NAN]).is_err());
    /// assert!(s.quantize(&ndarray::Array1::<f32>::zeros(0)).is_err());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn quantize<D: Dimension>(&self, x: &ArrayRef<f32, D>) -> Result<CodebookQuantized<D>> {
        self.run(x, None, Par::Seq)
    }

    /// [`quantize`](Self::quantize) with the work split over threads as `par` allows; the
    /// result is identical for any thread count.
    ///
    /// ```
    /// use modelopt_quantize::codebook::CodebookScheme;
    /// use modelopt_tensor_core::Par;
    /// let w = ndarray::Array2::from_shape_fn((16, 64), |(i, j)| ((i * 7 + j * 3) % 23) as f32);
    /// let s = CodebookScheme::kmeans(3).per_channel(0).check()?;
    /// assert_eq!(s.quantize_par(&w, Par::all_cores())?, s.quantize(&w)?);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn quantize_par<D: Dimension>(
        &self,
        x: &ArrayRef<f32, D>,
        par: Par,
    ) -> Result<CodebookQuantized<D>> {
        self.run(x, None, par)
    }

    /// Weighted k-means (SqueezeLLM): `importance` (same shape as `x`, finite, `>= 0`) weighs
    /// each element's squared error when the levels are learned, e.g. squared gradients, or an
    /// importance per input column broadcast over the rows. Fixed grids ignore the weights.
    ///
    /// ```
    /// use modelopt_quantize::codebook::CodebookScheme;
    /// use modelopt_tensor_core::Par;
    /// let w = ndarray::array![[0.0f32, 1.0, 10.0]];
    /// let per_column = ndarray::array![1.0f32, 3.0, 1.0];
    /// let imp = per_column.broadcast(w.raw_dim()).unwrap();
    /// let q = CodebookScheme::kmeans(1).check()?.quantize_weighted(&w, &imp, Par::Seq)?;
    /// assert_eq!(q.levels(), &[0.75, 10.0]);
    /// assert!(CodebookScheme::kmeans(1).check()?.quantize_weighted(&w, &(-&per_column.insert_axis(ndarray::Axis(0))), Par::Seq).is_err());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn quantize_weighted<D: Dimension>(
        &self,
        x: &ArrayRef<f32, D>,
        importance: &ArrayRef<f32, D>,
        par: Par,
    ) -> Result<CodebookQuantized<D>> {
        if importance.shape() != x.shape() {
            return Err(CoreError::ShapeMismatch {
                expected: x.shape().to_vec(),
                found: importance.shape().to_vec(),
            }
            .into());
        }
        stats::check_finite(importance)?;
        if let Some((i, w)) = importance.iter().enumerate().find(|(_, w)| **w < 0.0) {
            return Err(CoreError::invalid(
                "importance",
                format!("must be >= 0, found {w} at flat index {i}"),
            )
            .into());
        }
        let cow = importance.as_standard_layout();
        let ws = cow.as_slice().unwrap_or(&[]).to_vec();
        self.run(x, Some(&ws), par)
    }

    fn run<D: Dimension>(
        &self,
        x: &ArrayRef<f32, D>,
        weights: Option<&[f32]>,
        par: Par,
    ) -> Result<CodebookQuantized<D>> {
        if x.is_empty() {
            return Err(CoreError::Empty {
                what: "tensor to quantize",
            }
            .into());
        }
        stats::check_finite(x)?;
        let shape = x.shape();
        let sets = self.sharing.count(shape)?;
        let cow = x.as_standard_layout();
        let xs = cow.as_slice().unwrap_or(&[]);
        // Absmax scales, and the values divided by them.
        let (scales, normed) = match self.scale {
            Some(s) => {
                let mut scales = vec![0f32; s.count(shape)?];
                s.for_each_run(shape, |start, len, p| {
                    let m = xs[start..start + len]
                        .iter()
                        .fold(0f32, |m, v| m.max(v.abs()));
                    scales[p] = scales[p].max(m);
                })?;
                let mut y = vec![0f32; xs.len()];
                s.for_each_run(shape, |start, len, p| {
                    let inv = if scales[p] > 0.0 {
                        1.0 / scales[p]
                    } else {
                        0.0
                    };
                    for (o, &v) in y[start..start + len]
                        .iter_mut()
                        .zip(&xs[start..start + len])
                    {
                        *o = v * inv;
                    }
                })?;
                (Some((s, scales)), Some(y))
            }
            None => (None, None),
        };
        let ys: &[f32] = normed.as_deref().unwrap_or(xs);
        let scaled_weights: Option<Vec<f32>> = match (&scales, self.scale_weighted) {
            (Some((s, sv)), true) if self.grid.is_none() => {
                let mut w: Vec<f32> = weights.map_or_else(|| vec![1.0; xs.len()], <[f32]>::to_vec);
                s.for_each_run(shape, |start, len, p| {
                    let s2 = sv[p] * sv[p];
                    w[start..start + len].iter_mut().for_each(|v| *v *= s2);
                })?;
                Some(w)
            }
            _ => None,
        };
        let weights = scaled_weights.as_deref().or(weights);
        let l = 1usize << self.bits;
        // The values (and weights) of each codebook set, in memory order.
        let contiguous = self.sharing.is_contiguous(shape);
        let set_len = ys.len() / sets;
        let groups: Vec<SetValues> = if contiguous {
            Vec::new()
        } else {
            let mut g: Vec<SetValues> = (0..sets)
                .map(|_| {
                    (
                        Vec::with_capacity(set_len),
                        weights.map(|_| Vec::with_capacity(set_len)),
                    )
                })
                .collect();
            self.sharing.for_each_run(shape, |start, len, p| {
                g[p].0.extend_from_slice(&ys[start..start + len]);
                if let (Some(w), Some(gw)) = (weights, g[p].1.as_mut()) {
                    gw.extend_from_slice(&w[start..start + len]);
                }
            })?;
            g
        };
        let set_values = |p: usize| -> (&[f32], Option<&[f32]>) {
            if contiguous {
                let r = p * set_len..(p + 1) * set_len;
                (&ys[r.clone()], weights.map(|w| &w[r]))
            } else {
                (&groups[p].0, groups[p].1.as_deref())
            }
        };
        let levels_of = |p: usize| -> Vec<f32> {
            let mut lv = match &self.grid {
                Some(g) => g.clone(),
                None => {
                    let (v, w) = set_values(p);
                    let params = KMeansParams {
                        seed: mix(self.kmeans.seed, p as u64),
                        ..self.kmeans
                    };
                    let pts = if v.len() <= EXACT_LIMIT {
                        Points::exact(v, w)
                    } else {
                        histogram(v, w, par).points()
                    };
                    let mut c: Vec<f32> = kmeans(&pts, &params).iter().map(|&c| c as f32).collect();
                    if c.is_empty() {
                        // Every weight was zero: the plain values decide.
                        c = kmeans(&Points::exact(v, None), &params)
                            .iter()
                            .map(|&c| c as f32)
                            .collect();
                    }
                    c.sort_by(f32::total_cmp);
                    c
                }
            };
            lv.resize(l, *lv.last().unwrap_or(&0.0));
            lv
        };
        let levels: Vec<f32> = if sets == 1 {
            levels_of(0)
        } else {
            par.map_range(sets, levels_of).concat()
        };
        // Assignment.
        let mut idx = vec![0u8; ys.len()];
        let grids: Vec<Grid> = levels
            .chunks(l)
            .map(|c| Grid::from_sorted(c.to_vec()))
            .collect();
        if sets == 1 {
            let g = &grids[0];
            let chunk = 1 << 16;
            let mut pairs: Vec<(&[f32], &mut [u8])> =
                ys.chunks(chunk).zip(idx.chunks_mut(chunk)).collect();
            par.for_each_chunk_mut(&mut pairs, 4, |_, c| {
                for (y, o) in c.iter_mut() {
                    assign(g, y, o);
                }
            });
        } else {
            self.sharing.for_each_run(shape, |start, len, p| {
                assign(
                    &grids[p],
                    &ys[start..start + len],
                    &mut idx[start..start + len],
                );
            })?;
        }
        let packed = pack_indices(&idx, self.bits);
        Ok(CodebookQuantized::from_parts(
            x.raw_dim(),
            self.bits,
            self.sharing,
            levels,
            scales,
            packed,
        ))
    }
}

/// The values of one codebook set and their weights.
type SetValues = (Vec<f32>, Option<Vec<f32>>);

/// Seed of codebook `p`: SplitMix-style mixing of `(seed, p)`.
fn mix(seed: u64, p: u64) -> u64 {
    let mut z = seed ^ p.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 31)).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    z ^ (z >> 32)
}

/// Histogram of `v` over its range, built in fixed chunks merged in order (the same sums for
/// any thread count).
fn histogram(v: &[f32], w: Option<&[f32]>, par: Par) -> Histogram {
    let (lo, hi) = v
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    const CHUNK: usize = 1 << 20;
    let parts = par.map_range(v.len().div_ceil(CHUNK), |c| {
        let r = c * CHUNK..((c + 1) * CHUNK).min(v.len());
        let mut h = Histogram::new(lo, hi);
        h.add(&v[r.clone()], w.map(|w| &w[r]));
        h
    });
    let mut it = parts.into_iter();
    let mut h = it.next().unwrap_or_else(|| Histogram::new(lo, hi));
    for p in it {
        h.merge(&p);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_are_powers_of_two() {
        assert_eq!(log_levels(2), vec![-1.0, 0.0, 1.0]);
        assert_eq!(log_levels(3), vec![-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0]);
        assert_eq!(log_levels(4).len(), 15);
    }
}
