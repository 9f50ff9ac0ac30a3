//! NF4 and FP4 exactly as bitsandbytes 0.50.2 quantizes on the CPU.
//!
//! What bitsandbytes does, verified byte for byte against its output (tests/bnb_parity.rs):
//! - the flattened tensor is cut into blocks of `block_size` elements (the last may be shorter);
//!   each block's `absmax = max |x|` is stored as `f32`;
//! - `x * (1 / max(absmax, 1e-38))` (for the last block, if shorter: `x / max(absmax, 1e-38)`,
//!   and that block's stored absmax is clamped to `1e-38` too) goes to the code level whose
//!   midpoint interval holds it, by the rule of [`Grid`](super::Grid) (`torch.bucketize` over
//!   the `f32` midpoints of the sorted levels); FP4's two zeros (codes 0 and 8) sort as code 0
//!   then code 8, so a positive value below `0.0052/2` gets code 8, zero and negatives code 0;
//! - two codes per byte, the **first element in the high nibble**; an odd count pads the last
//!   low nibble with the code of 0;
//! - double quantization: `offset = mean(absmax)` (torch's summation order, one thread; torch
//!   splits sums of more than 32768 values over its threads, so with more than 32768 blocks
//!   bitsandbytes' offset depends on torch's thread count), `absmax - offset` in blocks
//!   of 256 scaled by their own absmax (`absmax2`, f32) and coded with the 8-bit dynamic map
//!   through bitsandbytes' 65536-entry lookup table (the value's bin `((s + 1) / 2) * 65535 +
//!   0.5`, truncated, then the code whose midpoint interval holds the bin's centre);
//! - dequantization: `code[c] * absmax`, with `absmax = dyn[u8] * absmax2 + offset` when double
//!   quantized.

use std::sync::OnceLock;

use modelopt_tensor_core::{CoreError, ErrorMetrics, Par, stats};
use ndarray::{Array, ArrayRef, Dimension};

use super::bnb_kernel::{self, Table4};
use super::bnb_tables::{DYNAMIC_CODE, FP4_CODE, NF4_CODE};
use super::quantized::shaped;
use super::torch_sum::torch_sum;
use crate::{QuantError, Quantizer, Result};

/// Block of the second-level (double) quantization.
pub const DOUBLE_QUANT_BLOCK: usize = 256;

/// The two 4-bit data types of bitsandbytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bnb4Kind {
    /// 4-bit NormalFloat (QLoRA): levels at quantiles of a normal distribution.
    Nf4,
    /// bitsandbytes' 4-bit float (sign, 2 exponent bits, 1 mantissa bit).
    Fp4,
}

impl Bnb4Kind {
    /// The 16 levels in code order.
    ///
    /// ```
    /// use modelopt_quantize::codebook::Bnb4Kind;
    /// assert_eq!(Bnb4Kind::Nf4.code()[7], 0.0);
    /// assert_eq!(Bnb4Kind::Fp4.code()[3], 1.0);
    /// ```
    pub fn code(self) -> &'static [f32; 16] {
        match self {
            Bnb4Kind::Nf4 => &NF4_CODE,
            Bnb4Kind::Fp4 => &FP4_CODE,
        }
    }

    /// `"nf4"` or `"fp4"` (bitsandbytes' `quant_type`).
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::codebook::Bnb4Kind::Fp4.name(), "fp4");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Bnb4Kind::Nf4 => "nf4",
            Bnb4Kind::Fp4 => "fp4",
        }
    }

    fn table(self) -> &'static Table4 {
        static NF4: OnceLock<Table4> = OnceLock::new();
        static FP4: OnceLock<Table4> = OnceLock::new();
        match self {
            Bnb4Kind::Nf4 => NF4.get_or_init(|| Table4::new(&NF4_CODE)),
            Bnb4Kind::Fp4 => FP4.get_or_init(|| Table4::new(&FP4_CODE)),
        }
    }
}

/// Unchecked bitsandbytes 4-bit parameters (a builder; defaults: block 64, no double
/// quantization, bitsandbytes' own defaults).
///
/// ```
/// use modelopt_quantize::codebook::Bnb4;
/// let w = ndarray::Array2::from_shape_fn((4, 128), |(i, j)| ((i * 128 + j) as f32 * 0.1).sin());
/// let q = Bnb4::nf4().block_size(128).double_quant(true).quantize(&w)?;
/// assert_eq!(q.packed().len(), 256);
/// assert!(q.error_metrics(&w)?.sqnr_db > 18.0);
/// assert!(Bnb4::fp4().block_size(48).check().is_err());
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bnb4 {
    kind: Bnb4Kind,
    block: usize,
    double: bool,
}

impl Bnb4 {
    /// NF4, block 64.
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::codebook::Bnb4::nf4().check()?.block_size(), 64);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn nf4() -> Self {
        Bnb4 {
            kind: Bnb4Kind::Nf4,
            block: 64,
            double: false,
        }
    }

    /// FP4, block 64.
    ///
    /// ```
    /// use modelopt_quantize::codebook::{Bnb4, Bnb4Kind};
    /// assert_eq!(Bnb4::fp4().check()?.kind(), Bnb4Kind::Fp4);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn fp4() -> Self {
        Bnb4 {
            kind: Bnb4Kind::Fp4,
            ..Self::nf4()
        }
    }

    /// Elements per absmax block: a power of two, at least 32.
    ///
    /// ```
    /// assert!(modelopt_quantize::codebook::Bnb4::nf4().block_size(16).check().is_err());
    /// ```
    pub fn block_size(mut self, block: usize) -> Self {
        self.block = block;
        self
    }

    /// Quantize the absmax values again (8-bit dynamic code, blocks of 256, mean offset):
    /// bitsandbytes' `compress_statistics`.
    ///
    /// ```
    /// assert!(modelopt_quantize::codebook::Bnb4::nf4().double_quant(true).check()?.is_double_quant());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn double_quant(mut self, double: bool) -> Self {
        self.double = double;
        self
    }

    /// Validates the block size.
    ///
    /// ```
    /// let e = modelopt_quantize::codebook::Bnb4::nf4().block_size(96).check().unwrap_err();
    /// assert_eq!(e.to_string(), "invalid parameter `block_size`: must be a power of two >= 32, got 96");
    /// ```
    pub fn check(&self) -> Result<CheckedBnb4> {
        if self.block < 32 || !self.block.is_power_of_two() {
            return Err(CoreError::invalid(
                "block_size",
                format!("must be a power of two >= 32, got {}", self.block),
            )
            .into());
        }
        Ok(CheckedBnb4(*self))
    }

    /// Checks, then quantizes (see [`CheckedBnb4::quantize`]).
    ///
    /// ```
    /// let q = modelopt_quantize::codebook::Bnb4::nf4().quantize(&ndarray::array![1.0f32, -1.0, 0.0])?;
    /// assert_eq!(q.packed(), &[0xF0, 0x77]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn quantize<D: Dimension>(&self, x: &ArrayRef<f32, D>) -> Result<Bnb4Quantized<D>> {
        self.check()?.quantize(x)
    }
}

impl<D: Dimension> Quantizer<D> for Bnb4 {
    type Output = Bnb4Quantized<D>;

    fn quantize(&self, x: &ArrayRef<f32, D>) -> Result<Bnb4Quantized<D>> {
        Bnb4::quantize(self, x)
    }
}

/// Validated bitsandbytes 4-bit parameters.
///
/// ```
/// let s = modelopt_quantize::codebook::Bnb4::fp4().block_size(128).check()?;
/// assert_eq!((s.block_size(), s.is_double_quant()), (128, false));
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CheckedBnb4(Bnb4);

impl CheckedBnb4 {
    /// NF4 or FP4.
    ///
    /// ```
    /// use modelopt_quantize::codebook::{Bnb4, Bnb4Kind};
    /// assert_eq!(Bnb4::nf4().check()?.kind(), Bnb4Kind::Nf4);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn kind(&self) -> Bnb4Kind {
        self.0.kind
    }

    /// Elements per absmax block.
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::codebook::Bnb4::nf4().block_size(256).check()?.block_size(), 256);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn block_size(&self) -> usize {
        self.0.block
    }

    /// Whether the absmax values are double-quantized.
    ///
    /// ```
    /// assert!(!modelopt_quantize::codebook::Bnb4::nf4().check()?.is_double_quant());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn is_double_quant(&self) -> bool {
        self.0.double
    }

    /// Quantizes `x` (any shape, row-major order) on the calling thread.
    ///
    /// Errors: empty input, NaN/Inf (naming the first index).
    ///
    /// ```
    /// let s = modelopt_quantize::codebook::Bnb4::nf4().check()?;
    /// assert!(s.quantize(&ndarray::array![1.0f32, f32::INFINITY]).is_err());
    /// let zeros = ndarray::Array1::<f32>::zeros(4);
    /// let q = s.quantize(&zeros)?; // an all-zero block: absmax 0, every code that of 0.0
    /// assert_eq!((q.packed(), q.dequantize()), (&[0x77u8, 0x77][..], zeros));
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn quantize<D: Dimension>(&self, x: &ArrayRef<f32, D>) -> Result<Bnb4Quantized<D>> {
        self.quantize_par(x, Par::Seq)
    }

    /// [`quantize`](Self::quantize) split over threads as `par` allows (identical result).
    ///
    /// ```
    /// use modelopt_quantize::codebook::Bnb4;
    /// use modelopt_tensor_core::Par;
    /// let w = ndarray::Array2::from_shape_fn((64, 512), |(i, j)| ((i * 512 + j) as f32).cos());
    /// let s = Bnb4::fp4().double_quant(true).check()?;
    /// assert_eq!(s.quantize_par(&w, Par::all_cores())?, s.quantize(&w)?);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn quantize_par<D: Dimension>(
        &self,
        x: &ArrayRef<f32, D>,
        par: Par,
    ) -> Result<Bnb4Quantized<D>> {
        if x.is_empty() {
            return Err(CoreError::Empty {
                what: "tensor to quantize",
            }
            .into());
        }
        let cow = x.as_standard_layout();
        let xs = cow.as_slice().unwrap_or(&[]);
        let block = self.0.block;
        let nblocks = xs.len().div_ceil(block);
        let mut absmax = vec![0f32; nblocks];
        let mut packed = vec![0u8; xs.len().div_ceil(2)];
        let table = self.0.kind.table();
        // Tasks of whole blocks, the same for any thread count.
        let per_task = ((1usize << 18) / block).max(1);
        let mut tasks: Vec<QuantTask<'_>> = xs
            .chunks(per_task * block)
            .zip(absmax.chunks_mut(per_task))
            .zip(packed.chunks_mut(per_task * block / 2))
            .map(|((x, a), p)| (x, a, p, false))
            .collect();
        par.for_each_chunk_mut(&mut tasks, 1, |_, t| {
            for (x, a, p, bad) in t.iter_mut() {
                *bad = bnb_kernel::quantize(table, x, block, a, p);
            }
        });
        if tasks.iter().any(|t| t.3) {
            stats::check_finite(x)?;
        }
        drop(tasks);
        let absmax = if self.0.double {
            double_quant(&absmax)
        } else {
            Absmax::F32(absmax)
        };
        Ok(Bnb4Quantized {
            dim: x.raw_dim(),
            kind: self.0.kind,
            block,
            packed,
            absmax,
        })
    }
}

/// One task of the parallel quantization: input, absmax and packed outputs, non-finite flag.
type QuantTask<'a> = (&'a [f32], &'a mut [f32], &'a mut [u8], bool);

/// The per-block absmax values as stored.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Absmax {
    /// One `f32` per block.
    F32(Vec<f32>),
    /// Double quantization: one 8-bit [`DYNAMIC_CODE`] index per block, one `f32` scale per
    /// 256 blocks, and the mean that was subtracted first:
    /// `absmax[i] = DYNAMIC_CODE[codes[i]] * absmax2[i / 256] + offset`.
    Double {
        /// 8-bit codes, one per block.
        codes: Vec<u8>,
        /// Scale of each run of 256 codes (the last run may be shorter).
        absmax2: Vec<f32>,
        /// The mean of the absmax values.
        offset: f32,
    },
}

impl Absmax {
    /// The absmax values as `f32` (decoded when double-quantized).
    ///
    /// ```
    /// use modelopt_quantize::codebook::Absmax;
    /// assert_eq!(Absmax::F32(vec![2.0]).values(), vec![2.0]);
    /// let d = Absmax::Double { codes: vec![255], absmax2: vec![0.5], offset: 1.0 };
    /// assert_eq!(d.values(), vec![1.5]);
    /// ```
    pub fn values(&self) -> Vec<f32> {
        match self {
            Absmax::F32(v) => v.clone(),
            Absmax::Double {
                codes,
                absmax2,
                offset,
            } => codes
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    DYNAMIC_CODE[usize::from(c)]
                        * absmax2.get(i / DOUBLE_QUANT_BLOCK).copied().unwrap_or(0.0)
                        + offset
                })
                .collect(),
        }
    }

    /// Stored bytes: 4 per `f32` absmax, or 1 per code + 4 per `absmax2` + 4 for the offset.
    ///
    /// ```
    /// use modelopt_quantize::codebook::Absmax;
    /// assert_eq!(Absmax::Double { codes: vec![0; 300], absmax2: vec![1.0; 2], offset: 0.0 }.storage_bytes(), 312);
    /// ```
    pub fn storage_bytes(&self) -> usize {
        match self {
            Absmax::F32(v) => 4 * v.len(),
            Absmax::Double { codes, absmax2, .. } => codes.len() + 4 * absmax2.len() + 4,
        }
    }

    fn len(&self) -> usize {
        match self {
            Absmax::F32(v) => v.len(),
            Absmax::Double { codes, .. } => codes.len(),
        }
    }
}

/// bitsandbytes' 65536-bin lookup from a normalised value's bin to a [`DYNAMIC_CODE`] index.
fn dynamic_lut() -> &'static [u8] {
    static LUT: OnceLock<Vec<u8>> = OnceLock::new();
    LUT.get_or_init(|| {
        let mids: Vec<f32> = DYNAMIC_CODE
            .windows(2)
            .map(|w| 0.5 * (w[0] + w[1]))
            .collect();
        let mut idx = 0usize;
        (0..65536u32)
            .map(|i| {
                let val = -1.0f32 + (2.0 * i as f32) / 65535.0;
                while idx < mids.len() && mids[idx] < val {
                    idx += 1;
                }
                idx as u8
            })
            .collect()
    })
}

/// Second-level quantization of the absmax values.
fn double_quant(absmax: &[f32]) -> Absmax {
    // torch's `absmax.mean()`: its cascade sum, divided by the count in f32.
    let offset = torch_sum(absmax) / absmax.len() as f32;
    let lut = dynamic_lut();
    let mut codes = vec![0u8; absmax.len()];
    let mut absmax2 = Vec::with_capacity(absmax.len().div_ceil(DOUBLE_QUANT_BLOCK));
    for (a, c) in absmax
        .chunks(DOUBLE_QUANT_BLOCK)
        .zip(codes.chunks_mut(DOUBLE_QUANT_BLOCK))
    {
        let m = a.iter().fold(0f32, |m, &v| m.max((v - offset).abs()));
        absmax2.push(m);
        if m == 0.0 {
            continue;
        }
        let inv = 1.0 / m;
        for (o, &v) in c.iter_mut().zip(a) {
            let s = ((v - offset) * inv).clamp(-1.0, 1.0);
            let t = (s + 1.0) * 0.5 * 65535.0 + 0.5;
            *o = lut[(t as usize).min(65535)];
        }
    }
    Absmax::Double {
        codes,
        absmax2,
        offset,
    }
}

/// A tensor quantized to NF4 or FP4 as bitsandbytes stores it: packed codes (first element in
/// the high nibble) and the per-block absmax.
///
/// ```
/// use modelopt_quantize::codebook::{Absmax, Bnb4};
/// let q = Bnb4::fp4().quantize(&ndarray::array![[3.0f32, -1.0], [0.5, 0.0]])?;
/// assert_eq!(q.packed(), &[0x3C, 0x60]); // 3 -> code 3 (+1.0), -1 -> 12 (-1/3), 0.5 -> 6 (1/6)
/// assert_eq!(q.absmax(), &Absmax::F32(vec![3.0]));
/// assert_eq!(q.storage_bytes(), 2 + 4);
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Bnb4Quantized<D: Dimension> {
    dim: D,
    kind: Bnb4Kind,
    block: usize,
    packed: Vec<u8>,
    absmax: Absmax,
}

impl<D: Dimension> Bnb4Quantized<D> {
    /// Rebuilds from stored parts, checking every length (and the block size).
    ///
    /// ```
    /// use modelopt_quantize::codebook::{Bnb4, Bnb4Kind, Bnb4Quantized};
    /// let w = ndarray::array![[1.0f32, 2.0, 3.0]];
    /// let q = Bnb4::nf4().quantize(&w)?;
    /// let back = Bnb4Quantized::from_stored(w.raw_dim(), Bnb4Kind::Nf4, 64, q.packed().to_vec(), q.absmax().clone())?;
    /// assert_eq!(back, q);
    /// assert!(Bnb4Quantized::from_stored(w.raw_dim(), Bnb4Kind::Nf4, 64, vec![0; 1], q.absmax().clone()).is_err());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn from_stored(
        dim: D,
        kind: Bnb4Kind,
        block: usize,
        packed: Vec<u8>,
        absmax: Absmax,
    ) -> Result<Self> {
        Bnb4 {
            kind,
            block,
            double: false,
        }
        .check()?;
        let n = dim.size();
        if n == 0 {
            return Err(CoreError::Empty {
                what: "stored 4-bit tensor",
            }
            .into());
        }
        let len = |what, expected, found| {
            if expected == found {
                Ok(())
            } else {
                Err(QuantError::Length {
                    what,
                    expected,
                    found,
                    unit: "elements",
                })
            }
        };
        len("packed 4-bit codes", n.div_ceil(2), packed.len())?;
        len("absmax", n.div_ceil(block), absmax.len())?;
        if let Absmax::Double { codes, absmax2, .. } = &absmax {
            len(
                "absmax2",
                codes.len().div_ceil(DOUBLE_QUANT_BLOCK),
                absmax2.len(),
            )?;
        }
        Ok(Bnb4Quantized {
            dim,
            kind,
            block,
            packed,
            absmax,
        })
    }

    /// Shape of the tensor.
    ///
    /// ```
    /// let q = modelopt_quantize::codebook::Bnb4::nf4().quantize(&ndarray::Array2::<f32>::ones((2, 3)))?;
    /// assert_eq!(q.shape(), &[2, 3]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn shape(&self) -> &[usize] {
        self.dim.slice()
    }

    /// Number of elements.
    ///
    /// ```
    /// let q = modelopt_quantize::codebook::Bnb4::nf4().quantize(&ndarray::Array2::<f32>::ones((2, 3)))?;
    /// assert_eq!(q.len(), 6);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.dim.size()
    }

    /// Always false (empty tensors are rejected).
    ///
    /// ```
    /// assert!(!modelopt_quantize::codebook::Bnb4::nf4().quantize(&ndarray::array![1.0f32])?.is_empty());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// NF4 or FP4.
    ///
    /// ```
    /// use modelopt_quantize::codebook::{Bnb4, Bnb4Kind};
    /// assert_eq!(Bnb4::fp4().quantize(&ndarray::array![1.0f32])?.kind(), Bnb4Kind::Fp4);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn kind(&self) -> Bnb4Kind {
        self.kind
    }

    /// Elements per absmax block.
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::codebook::Bnb4::nf4().quantize(&ndarray::array![1.0f32])?.block_size(), 64);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn block_size(&self) -> usize {
        self.block
    }

    /// The packed codes: `ceil(len / 2)` bytes, element `2i` in the high nibble of byte `i`.
    ///
    /// ```
    /// let q = modelopt_quantize::codebook::Bnb4::nf4().quantize(&ndarray::array![-1.0f32, 1.0])?;
    /// assert_eq!(q.packed(), &[0x0F]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn packed(&self) -> &[u8] {
        &self.packed
    }

    /// The per-block absmax as stored.
    ///
    /// ```
    /// use modelopt_quantize::codebook::{Absmax, Bnb4};
    /// assert_eq!(Bnb4::nf4().quantize(&ndarray::array![-4.0f32, 1.0])?.absmax(), &Absmax::F32(vec![4.0]));
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn absmax(&self) -> &Absmax {
        &self.absmax
    }

    /// True storage in bytes: packed codes plus [`Absmax::storage_bytes`] (the 16-entry code
    /// table is a constant of the format).
    ///
    /// ```
    /// let q = modelopt_quantize::codebook::Bnb4::nf4().quantize(&ndarray::Array1::<f32>::ones(128))?;
    /// assert_eq!(q.storage_bytes(), 64 + 2 * 4);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn storage_bytes(&self) -> usize {
        self.packed.len() + self.absmax.storage_bytes()
    }

    /// Storage bits per element.
    ///
    /// ```
    /// let q = modelopt_quantize::codebook::Bnb4::nf4().quantize(&ndarray::Array1::<f32>::ones(128))?;
    /// assert_eq!(q.bits_per_weight(), 4.5);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn bits_per_weight(&self) -> f64 {
        (self.storage_bytes() * 8) as f64 / self.len() as f64
    }

    /// The reconstruction `code[c] * absmax`, shaped like the tensor (bitsandbytes'
    /// `dequantize_4bit`, bit for bit).
    ///
    /// ```
    /// let q = modelopt_quantize::codebook::Bnb4::nf4().quantize(&ndarray::array![2.0f32, -2.0, 0.0])?;
    /// assert_eq!(q.dequantize(), ndarray::array![2.0f32, -2.0, 0.0]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn dequantize(&self) -> Array<f32, D> {
        self.dequantize_par(Par::Seq)
    }

    /// [`dequantize`](Self::dequantize) split over threads as `par` allows.
    ///
    /// ```
    /// use modelopt_tensor_core::Par;
    /// let q = modelopt_quantize::codebook::Bnb4::fp4().quantize(&ndarray::Array1::linspace(-1.0f32, 1.0, 1000))?;
    /// assert_eq!(q.dequantize_par(Par::all_cores()), q.dequantize());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn dequantize_par(&self, par: Par) -> Array<f32, D> {
        let mut out = vec![0f32; self.len()];
        // ok: `out` has exactly `len` elements.
        let _ = self.dequantize_into(&mut out, par);
        shaped(self.dim.clone(), out)
    }

    /// Writes the reconstruction (row-major) into `out`, which must hold [`len`](Self::len)
    /// elements; split over threads as `par` allows.
    ///
    /// ```
    /// use modelopt_tensor_core::Par;
    /// let q = modelopt_quantize::codebook::Bnb4::nf4().quantize(&ndarray::array![1.0f32, -1.0, 0.5])?;
    /// let mut out = [0f32; 3];
    /// q.dequantize_into(&mut out, Par::Seq)?;
    /// assert_eq!(out, [1.0, -1.0, 0.44070983]); // 0.5 is below the midpoint 0.5016634
    /// assert!(q.dequantize_into(&mut [0f32; 2], Par::Seq).is_err());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn dequantize_into(&self, out: &mut [f32], par: Par) -> Result<()> {
        if out.len() != self.len() {
            return Err(QuantError::Length {
                what: "dequantization output",
                expected: self.len(),
                found: out.len(),
                unit: "elements",
            });
        }
        let decoded;
        let absmax: &[f32] = match &self.absmax {
            Absmax::F32(v) => v,
            other => {
                decoded = other.values();
                &decoded
            }
        };
        let block = self.block;
        let per_task = ((1usize << 18) / block).max(1);
        let code = self.kind.code();
        let mut tasks: Vec<(&mut [f32], &[u8], &[f32])> = out
            .chunks_mut(per_task * block)
            .zip(self.packed.chunks(per_task * block / 2))
            .zip(absmax.chunks(per_task))
            .map(|((o, p), a)| (o, p, a))
            .collect();
        par.for_each_chunk_mut(&mut tasks, 1, |_, t| {
            for (o, p, a) in t.iter_mut() {
                bnb_kernel::dequantize(code, p, a, block, o);
            }
        });
        Ok(())
    }

    /// MSE, max abs error, SQNR (dB) and cosine of [`dequantize`](Self::dequantize) against
    /// `original`.
    ///
    /// ```
    /// let x = ndarray::Array1::linspace(-1.0f32, 1.0, 256);
    /// let m = modelopt_quantize::codebook::Bnb4::nf4().quantize(&x)?.error_metrics(&x)?;
    /// assert!(m.sqnr_db > 15.0);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn error_metrics(&self, original: &ArrayRef<f32, D>) -> Result<ErrorMetrics> {
        Ok(ErrorMetrics::between(original, &self.dequantize())?)
    }
}
