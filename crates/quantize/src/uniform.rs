//! Calibrated uniform quantization of a whole tensor: ranges, parameters, codes.

use modelopt_tensor_core::{CoreError, Par, stats};
use ndarray::{ArrayRef, Dimension};

use crate::kernel::{self, BlockOut, Isa, RunParams};
use crate::layout::Runs;
use crate::packing::pack_nibbles;
use crate::params::{QuantParams, params_shape};
use crate::scheme::{CheckedScheme, QuantMode};
use crate::{Result, UniformQuantized};

impl CheckedScheme {
    /// Quantizes `x` with parameters computed from its own range (min-max calibration, torch.ao's
    /// `MinMaxObserver` / `PerChannelMinMaxObserver` formulas).
    ///
    /// Errors: empty input; a NaN/Inf (naming its first index); an axis out of range or a group
    /// size that does not divide the axis.
    ///
    /// ```
    /// use modelopt_quantize::QuantScheme;
    /// use ndarray::array;
    /// let s = QuantScheme::int8().per_channel(0).check()?;
    /// let q = s.quantize(&array![[1.0f32, -1.0], [0.0, 0.0]])?; // an all-zero row is exact
    /// assert_eq!(q.dequantize(), array![[1.0f32, -1.0], [0.0, 0.0]]);
    /// assert!(s.quantize(&array![[1.0f32, f32::INFINITY]]).is_err());
    /// assert!(QuantScheme::int8().per_group(1, 3).quantize(&array![[1.0f32, 2.0]]).is_err());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn quantize<D: Dimension>(&self, x: &ArrayRef<f32, D>) -> Result<UniformQuantized<D>> {
        self.quantize_par(x, Par::Seq)
    }

    /// [`quantize`](Self::quantize) with the work split over threads as `par` allows (rayon,
    /// behind `modelopt-tensor-core`'s `rayon` feature). Per-tensor scaling, per channel along the
    /// outermost axis and per group along the innermost axis run in parallel (blocks of whole
    /// parameter sets per task); other layouts run sequentially. The result is identical.
    ///
    /// ```
    /// use modelopt_quantize::QuantScheme;
    /// use modelopt_tensor_core::Par;
    /// let w = ndarray::Array2::from_shape_fn((64, 128), |(i, j)| (i as f32 - j as f32) * 0.01);
    /// let s = QuantScheme::int4().per_group(1, 32).check()?;
    /// assert_eq!(s.quantize_par(&w, Par::all_cores())?, s.quantize(&w)?);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn quantize_par<D: Dimension>(
        &self,
        x: &ArrayRef<f32, D>,
        par: Par,
    ) -> Result<UniformQuantized<D>> {
        if x.is_empty() {
            return Err(CoreError::Empty {
                what: "tensor to quantize",
            }
            .into());
        }
        let runs = Runs::new(x.shape(), self.granularity)?;
        let pshape = params_shape(x.shape(), self.granularity);
        let nparams: usize = pshape.iter().product();
        let cow = x.as_standard_layout();
        let xs = standard_slice(&cow)?;
        let n = xs.len();
        let mut scales = vec![0f32; nparams];
        let mut zero_points = vec![0i32; nparams];
        let data = match runs {
            Runs::Blocks { block, .. } => {
                let packed = self.is_packed() && block % 2 == 0;
                let mut codes = vec![0u8; if packed { n / 2 } else { n }];
                let out = BlockOut {
                    codes: &mut codes,
                    scales: &mut scales,
                    zero_points: &mut zero_points,
                    packed,
                };
                if quantize_blocks_par(par, xs, block, self, out) {
                    stats::check_finite(x)?;
                }
                if self.is_packed() && !packed {
                    pack_nibbles(&codes)
                } else {
                    codes
                }
            }
            _ => {
                stats::check_finite(x)?;
                let mut lo = vec![f32::INFINITY; nparams];
                let mut hi = vec![f32::NEG_INFINITY; nparams];
                runs.for_each(|start, len, p| {
                    let (mn, mx, _) = kernel::min_max(&xs[start..start + len]);
                    lo[p] = lo[p].min(mn);
                    hi[p] = hi[p].max(mx);
                });
                for p in 0..nparams {
                    let (s, z) = self.params_for_range(lo[p], hi[p]);
                    scales[p] = s;
                    zero_points[p] = z;
                }
                self.codes_with(xs, &runs, &scales, &zero_points)
            }
        };
        let params = QuantParams::from_vecs(pshape, scales, zero_points, self.granularity)?;
        Ok(UniformQuantized::from_parts(
            x.raw_dim(),
            *self,
            params,
            data,
        ))
    }

    /// Quantizes `x` with given parameters (e.g. from an [`Observer`](crate::observer::Observer)).
    /// Their granularity must be this scheme's and their shape must fit `x`.
    ///
    /// ```
    /// use modelopt_quantize::QuantScheme;
    /// use ndarray::array;
    /// let s = QuantScheme::int8().check()?;
    /// let params = s.quantize(&array![2.0f32, -1.0])?.params().clone();
    /// let q = s.quantize_with(&array![4.0f32, 0.5], &params)?; // 4.0 saturates at 127
    /// assert_eq!(q.codes().to_vec(), vec![127, 32]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn quantize_with<D: Dimension>(
        &self,
        x: &ArrayRef<f32, D>,
        params: &QuantParams,
    ) -> Result<UniformQuantized<D>> {
        if x.is_empty() {
            return Err(CoreError::Empty {
                what: "tensor to quantize",
            }
            .into());
        }
        let runs = self.check_params(x.shape(), params)?;
        stats::check_finite(x)?;
        let cow = x.as_standard_layout();
        let xs = standard_slice(&cow)?;
        let scales = params.scales.iter().copied().collect::<Vec<_>>();
        let zps = params.zero_points.iter().copied().collect::<Vec<_>>();
        let data = self.codes_with(xs, &runs, &scales, &zps);
        Ok(UniformQuantized::from_parts(
            x.raw_dim(),
            *self,
            params.clone(),
            data,
        ))
    }

    /// Checks that `params` fit a tensor of `shape` under this scheme; returns its runs.
    pub(crate) fn check_params(&self, shape: &[usize], params: &QuantParams) -> Result<Runs> {
        if params.granularity != self.granularity {
            return Err(CoreError::invalid(
                "params",
                format!(
                    "made for {:?}, the scheme is {:?}",
                    params.granularity, self.granularity
                ),
            )
            .into());
        }
        let runs = Runs::new(shape, self.granularity)?;
        let want = params_shape(shape, self.granularity);
        if params.scales.shape() != want.as_slice() {
            return Err(CoreError::ShapeMismatch {
                expected: want,
                found: params.scales.shape().to_vec(),
            }
            .into());
        }
        if self.mode != QuantMode::Affine
            && let Some(z) = params.zero_points.iter().find(|&&z| z != self.sym_zero)
        {
            return Err(CoreError::invalid(
                "zero_points",
                format!(
                    "symmetric scheme needs zero point {}, found {z}",
                    self.sym_zero
                ),
            )
            .into());
        }
        if let Some(z) = params
            .zero_points
            .iter()
            .find(|z| !(self.qmin..=self.qmax).contains(*z))
        {
            return Err(CoreError::invalid(
                "zero_points",
                format!(
                    "{z} is outside the code range [{}, {}]",
                    self.qmin, self.qmax
                ),
            )
            .into());
        }
        Ok(runs)
    }

    /// Codes of a finite, row-major `xs` with known parameters, packed when the scheme packs.
    fn codes_with(&self, xs: &[f32], runs: &Runs, scales: &[f32], zps: &[i32]) -> Vec<u8> {
        if let Runs::Blocks { block, .. } = *runs {
            let packed = self.is_packed() && block % 2 == 0;
            let mut codes = vec![0u8; if packed { xs.len() / 2 } else { xs.len() }];
            let isa = Isa::detect();
            kernel::quantize_blocks_given(isa, xs, block, self, (scales, zps), &mut codes, packed);
            return if self.is_packed() && !packed {
                pack_nibbles(&codes)
            } else {
                codes
            };
        }
        let mut codes = vec![0u8; xs.len()];
        runs.for_each(|start, len, p| {
            let rp = RunParams::new(scales[p], zps[p], self);
            kernel::quantize_run(&xs[start..start + len], &rp, &mut codes[start..start + len]);
        });
        if self.is_packed() {
            pack_nibbles(&codes)
        } else {
            codes
        }
    }
}

/// One task of [`quantize_blocks_par`]: whole blocks of the input and their outputs.
struct BlockTask<'a> {
    xs: &'a [f32],
    out: BlockOut<'a>,
    non_finite: bool,
}

/// Runs the block kernel over `par`'s threads, each task on whole blocks; returns whether a
/// non-finite value was met.
fn quantize_blocks_par(
    par: Par,
    xs: &[f32],
    block: usize,
    s: &CheckedScheme,
    out: BlockOut<'_>,
) -> bool {
    let isa = Isa::detect();
    let nblocks = xs.len() / block;
    // A few tasks per thread for balance, but at least ~64 KiB of input each.
    let tasks = (par.degree() * 4).min(xs.len() / 16384).max(1);
    if tasks == 1 {
        return kernel::quantize_blocks(isa, xs, block, s, out).is_some();
    }
    let per_task = nblocks.div_ceil(tasks);
    let bytes_per_block = if out.packed { block / 2 } else { block };
    let mut work: Vec<BlockTask<'_>> = xs
        .chunks(per_task * block)
        .zip(out.codes.chunks_mut(per_task * bytes_per_block))
        .zip(
            out.scales
                .chunks_mut(per_task)
                .zip(out.zero_points.chunks_mut(per_task)),
        )
        .map(|((xs, codes), (scales, zero_points))| BlockTask {
            xs,
            out: BlockOut {
                codes,
                scales,
                zero_points,
                packed: out.packed,
            },
            non_finite: false,
        })
        .collect();
    par.for_each_chunk_mut(&mut work, 1, |_, chunk| {
        for t in chunk {
            let out = BlockOut {
                codes: &mut *t.out.codes,
                scales: &mut *t.out.scales,
                zero_points: &mut *t.out.zero_points,
                packed: t.out.packed,
            };
            t.non_finite = kernel::quantize_blocks(isa, t.xs, block, s, out).is_some();
        }
    });
    work.iter().any(|t| t.non_finite)
}

/// The contiguous slice of a standard-layout array.
pub(crate) fn standard_slice<'a, D: Dimension>(
    a: &'a ndarray::CowArray<'_, f32, D>,
) -> Result<&'a [f32]> {
    a.as_slice().ok_or_else(|| {
        // ok: `as_standard_layout` always yields a contiguous array; kept as an error, not a panic.
        CoreError::invalid("input", "could not be made contiguous").into()
    })
}
