//! The quantization grids GPTQ rounds onto: a uniform scheme (per tensor, per output channel,
//! per group of input columns) or a GGML block format (Q4_0, Q8_0: one scale per 32 columns).
//!
//! A grid's parameters for a group of columns are fitted when GPTQ reaches the group's first
//! column, from the weights as updated so far (`fit`); each column is then rounded with them
//! (`round`), recording the codes for the stored format.

use modelopt_tensor_core::{CoreError, Granularity};
use ndarray::{ArrayView2, Ix2};

use crate::ggml::GgmlType;
use crate::packing::pack_nibbles;
use crate::params::{QuantParams, params_shape};
use crate::scheme::CheckedScheme;
use crate::{Result, UniformQuantized};

use crate::ggml::f16_bits::{f16_to_f32, f32_to_f16};
use crate::ggml::simd::{first_abs_max_index_32, round_half_away};

/// What GPTQ quantizes to.
///
/// ```
/// use modelopt_quantize::{QuantScheme, gptq::GptqTarget, ggml::GgmlType};
/// let int4_g128 = GptqTarget::Uniform(QuantScheme::int4().affine().per_group(1, 128).check()?);
/// let q4_0 = GptqTarget::Ggml(GgmlType::Q4_0);
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum GptqTarget {
    /// A uniform scheme; granularity per tensor, per output channel (`PerChannel { axis: 0 }`)
    /// or per group of input columns (`PerGroup { axis: 1, .. }`).
    Uniform(CheckedScheme),
    /// A GGML block format with one scale per 32 columns: [`GgmlType::Q4_0`] or
    /// [`GgmlType::Q8_0`].
    Ggml(GgmlType),
}

/// A grid being filled: parameters per (row, group) and codes per element.
pub(crate) enum Grid {
    Uniform {
        scheme: CheckedScheme,
        /// Columns per parameter group.
        group: usize,
        /// One parameter set for all rows (per tensor).
        shared: bool,
        scales: Vec<f32>,
        zps: Vec<i32>,
        codes: Vec<i8>,
    },
    Ggml {
        ty: GgmlType,
        /// f32 scale `d` per (row, block): codes are `x * (1/d)`.
        d: Vec<f32>,
        codes: Vec<i8>,
    },
}

impl Grid {
    pub(crate) fn new(target: GptqTarget, rows: usize, cols: usize) -> Result<Grid> {
        match target {
            GptqTarget::Uniform(scheme) => {
                let (group, shared) = match scheme.granularity {
                    Granularity::PerTensor => (cols, true),
                    Granularity::PerChannel { axis: 0 } => (cols, false),
                    Granularity::PerGroup {
                        axis: 1,
                        group_size,
                    } => {
                        scheme.granularity.check(&[rows, cols])?;
                        (group_size, false)
                    }
                    g => {
                        return Err(CoreError::invalid(
                            "granularity",
                            format!(
                                "GPTQ supports per tensor, per channel along axis 0 and per group \
                                 along axis 1 of a [out, in] weight, got {g:?}"
                            ),
                        )
                        .into());
                    }
                };
                let sets = if shared { 1 } else { rows * (cols / group) };
                Ok(Grid::Uniform {
                    scheme,
                    group,
                    shared,
                    scales: vec![0.0; sets],
                    zps: vec![0; sets],
                    codes: vec![0; rows * cols],
                })
            }
            GptqTarget::Ggml(ty @ (GgmlType::Q4_0 | GgmlType::Q8_0)) => {
                ty.row_bytes(cols)?;
                Ok(Grid::Ggml {
                    ty,
                    d: vec![0.0; rows * cols / 32],
                    codes: vec![0; rows * cols],
                })
            }
            GptqTarget::Ggml(ty) => Err(CoreError::invalid(
                "target",
                format!(
                    "GPTQ supports the GGML types q4_0 and q8_0, got {}",
                    ty.name()
                ),
            )
            .into()),
        }
    }

    /// Columns per parameter group.
    pub(crate) fn group(&self) -> usize {
        match self {
            Grid::Uniform { group, .. } => *group,
            Grid::Ggml { .. } => 32,
        }
    }

    /// Fits the parameters of group `g` from its current weights `values` (`[group columns,
    /// rows]`, in column order).
    pub(crate) fn fit(&mut self, g: usize, values: ArrayView2<'_, f64>) {
        let rows = values.ncols();
        match self {
            Grid::Uniform {
                scheme,
                group,
                shared,
                scales,
                zps,
                ..
            } => {
                let (cols, group) = (values.nrows(), *group);
                debug_assert_eq!(cols, group);
                let groups_per_row = scales.len() / rows.max(1);
                if *shared {
                    let (lo, hi) = values
                        .iter()
                        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                            (l.min(v as f32), h.max(v as f32))
                        });
                    let (s, z) = scheme.params_for_range(lo, hi);
                    scales[0] = s;
                    zps[0] = z;
                    return;
                }
                for r in 0..rows {
                    let col = values.column(r);
                    let (lo, hi) = col
                        .iter()
                        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                            (l.min(v as f32), h.max(v as f32))
                        });
                    let (s, z) = scheme.params_for_range(lo, hi);
                    scales[r * groups_per_row + g] = s;
                    zps[r * groups_per_row + g] = z;
                }
            }
            Grid::Ggml { ty, d, .. } => {
                let blocks_per_row = d.len() / rows.max(1);
                for r in 0..rows {
                    let mut x = [0f32; 32];
                    for (o, &v) in x.iter_mut().zip(values.column(r)) {
                        *o = v as f32;
                    }
                    // llama.cpp's scale formulas (`quantize_row_q4_0_ref`, `_q8_0_ref`).
                    d[r * blocks_per_row + g] = match ty {
                        GgmlType::Q4_0 => x[first_abs_max_index_32(&x)] / -8.0,
                        _ => x.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0,
                    };
                }
            }
        }
    }

    /// Rounds column `c` (all rows, `w`) with its group's parameters: records the codes and
    /// writes the dequantized values (what the stored tensor decodes to) into `q`.
    pub(crate) fn round(&mut self, c: usize, w: &[f64], q: &mut [f64]) {
        match self {
            Grid::Uniform {
                scheme,
                group,
                shared,
                scales,
                zps,
                codes,
            } => {
                let g = c / *group;
                let gpr = scales.len() / w.len().max(1);
                let ncols = codes.len() / w.len().max(1);
                for (r, (&x, o)) in w.iter().zip(q.iter_mut()).enumerate() {
                    let p = if *shared { 0 } else { r * gpr + g };
                    let (s, z) = (scales[p], zps[p]);
                    // The kernels' map: x * (1/s) clamped to the code range, ties to even.
                    let inv = 1.0 / s;
                    let (lo, hi) = ((scheme.qmin - z) as f32, (scheme.qmax - z) as f32);
                    let y = (x as f32 * inv).clamp(lo, hi).round_ties_even();
                    let code = y as i32 + z;
                    codes[r * ncols + c] = code as i8;
                    *o = f64::from((code - z) as f32 * s);
                }
            }
            Grid::Ggml { ty, d, codes } => {
                let ncols = codes.len() / w.len().max(1);
                let bpr = ncols / 32;
                for (r, (&x, o)) in w.iter().zip(q.iter_mut()).enumerate() {
                    let d32 = d[r * bpr + c / 32];
                    let id = if d32 != 0.0 { 1.0 / d32 } else { 0.0 };
                    let dh = f16_to_f32(f32_to_f16(d32));
                    let code = match ty {
                        // trunc(x * id + 8.5), clamped: GPTQ's updates can push a weight past
                        // the block's largest magnitude.
                        GgmlType::Q4_0 => {
                            ((x as f32 * id + 8.5).trunc()).clamp(0.0, 15.0) as i32 - 8
                        }
                        _ => round_half_away(x as f32 * id).clamp(-127.0, 127.0) as i32,
                    };
                    codes[r * ncols + c] = code as i8;
                    *o = f64::from(code as f32 * dh);
                }
            }
        }
    }

    /// The stored uniform tensor (`[rows, cols]`).
    pub(crate) fn into_uniform(self, rows: usize, cols: usize) -> Result<UniformQuantized<Ix2>> {
        let Grid::Uniform {
            scheme,
            scales,
            zps,
            codes,
            ..
        } = self
        else {
            return Err(CoreError::invalid("target", "not a uniform grid").into());
        };
        let shape = params_shape(&[rows, cols], scheme.granularity);
        let params = QuantParams::from_vecs(shape, scales, zps, scheme.granularity)?;
        let bytes: Vec<u8> = codes.iter().map(|&c| c as u8).collect();
        let data = if scheme.is_packed() {
            pack_nibbles(&bytes)
        } else {
            bytes
        };
        UniformQuantized::from_stored(Ix2(rows, cols), scheme, params, data)
    }

    /// The GGML rows (`rows` rows of `cols / 32` blocks each), bytes as llama.cpp stores them.
    pub(crate) fn into_ggml(self) -> Result<Vec<u8>> {
        let Grid::Ggml { ty, d, codes } = self else {
            return Err(CoreError::invalid("target", "not a GGML grid").into());
        };
        let mut out = Vec::with_capacity(d.len() * ty.type_size());
        for (&d32, q) in d.iter().zip(codes.chunks_exact(32)) {
            out.extend_from_slice(&f32_to_f16(d32).to_le_bytes());
            match ty {
                GgmlType::Q4_0 => {
                    for j in 0..16 {
                        let lo = (q[j] + 8) as u8;
                        let hi = (q[j + 16] + 8) as u8;
                        out.push(lo | (hi << 4));
                    }
                }
                _ => out.extend(q.iter().map(|&c| c as u8)),
            }
        }
        Ok(out)
    }
}
