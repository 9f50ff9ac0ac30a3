//! Weight-only low-bit products: GGML Q8_0 / Q4_0 / Q4_K and grouped int4 weights times
//! activations quantized on the fly to 8-bit blocks (llama.cpp's `ggml_vec_dot_q4_0_q8_0`
//! scheme), f32 results.
//!
//! For row `r` and activation row `x`, with weight blocks `b` of scale `d_w` and activation
//! blocks of scale `d_x`: `y = sum_b (d_w[r][b] * d_x[b]) * isum_b` where `isum_b` is the exact
//! integer dot product of the codes (Q4_0 codes minus 8, Q8_0 codes as stored, int4 codes).
//! Q4_K against Q8_K: per 256-value super-block, `S1 = sum_j sc_j * dot_j` and
//! `S2 = sum_j m_j * sum(q_x over sub-block j)`, then `y += (d * d_x) * S1`,
//! `y -= (dmin * d_x) * S2`. Every operation is an f32 multiply or add in that order (no fused
//! multiply-add), so the SIMD kernels (one row per lane) equal the portable one bit for bit.
//!
//! Weights are repacked once (`PackedBlocks`) into panels of 16 rows with the codes of a block
//! interleaved `[k/4][16][4]` (4-bit: two k-groups per byte) so one 512-bit `vpdpbusd` takes 4
//! inputs of 16 rows; the bytes per weight are those of the GGML format (Q4_K's 6-bit scales
//! are unpacked to bytes: 4.625 instead of 4.5 bits).

pub(crate) mod act;
mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;

use crate::aligned::Aligned;
use half::f16;
use modelopt_quantize::ggml::{
    BlockIQ4_NL, BlockQ4_0, BlockQ4_K, BlockQ8_0, GgmlType, KVALUES_IQ4NL,
};
use modelopt_tensor_core::{CoreError, Par};

use crate::error::{invalid, shape};
use crate::{Isa, Result};
use act::{Q8Kind, Q8Rows};

/// Rows per panel (one 512-bit lane each).
pub(crate) const PR: usize = 16;

/// The weight formats of [`PackedBlocks`].
///
/// ```
/// use modelopt_kernels::BlockFormat;
/// assert_eq!(BlockFormat::Q4_0.block_size(), 32);
/// assert_eq!(BlockFormat::Int4 { group: 128 }.block_size(), 128);
/// assert_eq!(BlockFormat::Q4_K.name(), "q4_K");
/// ```
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlockFormat {
    /// GGML Q8_0: 32 int8 codes and an f16 scale; activations as Q8_0.
    Q8_0,
    /// GGML Q4_0: 32 4-bit codes (offset 8) and an f16 scale; activations as Q8_0.
    Q4_0,
    /// GGML IQ4_NL: 32 4-bit indices into the non-uniform levels `KVALUES_IQ4NL` and an f16
    /// scale; activations as Q8_0 (`ggml_vec_dot_iq4_nl_q8_0`).
    IQ4_NL,
    /// GGML Q4_K: 256-value super-blocks, 6-bit sub-block scales and mins; activations as Q8_K.
    Q4_K,
    /// Symmetric int4 codes in `-8..=7` with one f32 scale per `group` inputs (a multiple of 8);
    /// activations as int8 blocks of the same size with f32 scales.
    Int4 {
        /// Inputs per scale.
        group: usize,
    },
}

impl BlockFormat {
    /// Inputs per weight block.
    pub fn block_size(self) -> usize {
        match self {
            BlockFormat::Q8_0 | BlockFormat::Q4_0 | BlockFormat::IQ4_NL => 32,
            BlockFormat::Q4_K => 256,
            BlockFormat::Int4 { group } => group,
        }
    }

    /// A short name (`q8_0`, `q4_0`, `q4_K`, `int4-g32`).
    pub fn name(self) -> String {
        match self {
            BlockFormat::Q8_0 => "q8_0".into(),
            BlockFormat::Q4_0 => "q4_0".into(),
            BlockFormat::IQ4_NL => "iq4_nl".into(),
            BlockFormat::Q4_K => "q4_K".into(),
            BlockFormat::Int4 { group } => format!("int4-g{group}"),
        }
    }

    /// Packed bytes of one block of 16 rows.
    fn record_bytes(self) -> usize {
        match self {
            BlockFormat::Q8_0 => 32 * PR + 2 * PR,
            BlockFormat::Q4_0 | BlockFormat::IQ4_NL => 16 * PR + 2 * PR,
            BlockFormat::Q4_K => 128 * PR + 4 * PR + 16 * PR,
            BlockFormat::Int4 { group } => group / 2 * PR + 4 * PR,
        }
    }

    fn activation_kind(self) -> Q8Kind {
        match self {
            BlockFormat::Q8_0 | BlockFormat::Q4_0 | BlockFormat::IQ4_NL => Q8Kind::Q8_0,
            BlockFormat::Q4_K => Q8Kind::Q8K,
            BlockFormat::Int4 { .. } => Q8Kind::F32Scale,
        }
    }
}

/// A weight matrix `[n, k]` in a low-bit block format, repacked for the product kernels.
///
/// ```
/// use modelopt_kernels::{BlockFormat, PackedBlocks, Par};
/// use modelopt_quantize::ggml::{self, GgmlType};
/// let (n, k) = (3, 64);
/// let w: Vec<f32> = (0..n * k).map(|i| ((i % 7) as f32 - 3.0) * 0.1).collect();
/// let packed = PackedBlocks::from_ggml(GgmlType::Q4_0, &ggml::quantize(GgmlType::Q4_0, &w)?, n, k)?;
/// let x = vec![1.0f32; k];
/// let mut y = vec![0f32; n];
/// packed.matmul(Par::Seq, &x, 1, &mut y)?;
/// let exact: f32 = w[..k].iter().sum();
/// assert!((y[0] - exact).abs() < 0.1);
/// # Ok::<(), modelopt_kernels::KernelError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PackedBlocks {
    format: BlockFormat,
    n: usize,
    k: usize,
    data: Aligned<u8>,
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j`.
fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Inverse of [`scale_min_k4`].
fn pack_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0x0f) | ((lm[j] & 0x0f) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}

/// IQ4_NL's levels plus 128, as the u8 operand of `vpdpbusd` (`128 * sum(x)` is subtracted).
pub(crate) const IQ4NL_U8: [u8; 16] = {
    let mut t = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        t[i] = (KVALUES_IQ4NL[i] as i16 + 128) as u8;
        i += 1;
    }
    t
};

/// Offset of 4-bit code `c` (0..block) of panel row `r` in a block's code area: vector `c / 8`,
/// row `r`, byte `c % 4`, high nibble for the second k-group of the pair.
fn nibble_at(r: usize, c: usize) -> (usize, bool) {
    ((c / 8) * 64 + r * 4 + c % 4, (c / 4) % 2 == 1)
}

impl PackedBlocks {
    fn empty(format: BlockFormat, n: usize, k: usize) -> Result<Self> {
        if n == 0 || k == 0 {
            return Err(invalid(
                "shape",
                format!("need rows and columns, got [{n}, {k}]"),
            ));
        }
        let bs = format.block_size();
        if bs == 0 || !bs.is_multiple_of(8) || !k.is_multiple_of(bs) {
            return Err(invalid(
                "block size",
                format!(
                    "{}: {k} inputs must be a multiple of the block size {bs} (itself a multiple of 8)",
                    format.name()
                ),
            ));
        }
        let data = Aligned::zeroed(n.div_ceil(PR) * (k / bs) * format.record_bytes());
        Ok(PackedBlocks { format, n, k, data })
    }

    fn record_mut(&mut self, p: usize, b: usize) -> &mut [u8] {
        let rb = self.format.record_bytes();
        let nb = self.k / self.format.block_size();
        &mut self.data.as_mut_slice()[(p * nb + b) * rb..(p * nb + b + 1) * rb]
    }

    fn record(&self, p: usize, b: usize) -> &[u8] {
        let rb = self.format.record_bytes();
        let nb = self.k / self.format.block_size();
        &self.data.as_slice()[(p * nb + b) * rb..(p * nb + b + 1) * rb]
    }

    /// Repacks GGML rows (`n` rows of `k` values, `ty` Q8_0, Q4_0, IQ4_NL or Q4_K, as
    /// `modelopt_quantize::ggml::quantize` writes them). The scales must be finite.
    pub fn from_ggml(ty: GgmlType, bytes: &[u8], n: usize, k: usize) -> Result<Self> {
        let format = match ty {
            GgmlType::Q8_0 => BlockFormat::Q8_0,
            GgmlType::Q4_0 => BlockFormat::Q4_0,
            GgmlType::IQ4_NL => BlockFormat::IQ4_NL,
            GgmlType::Q4_K => BlockFormat::Q4_K,
            other => {
                return Err(invalid(
                    "GGML type",
                    format!(
                        "{} has no product kernel (Q8_0, Q4_0, Q4_K do)",
                        other.name()
                    ),
                ));
            }
        };
        let mut out = Self::empty(format, n, k)?;
        let row_bytes = ty.row_bytes(k)?;
        if n.checked_mul(row_bytes) != Some(bytes.len()) {
            return Err(shape(vec![n * row_bytes], vec![bytes.len()]));
        }
        let (ts, nb) = (ty.type_size(), k / format.block_size());
        let mut bad_scale = None;
        for (row_index, row) in bytes.chunks_exact(row_bytes).enumerate() {
            let (p, r) = (row_index / PR, row_index % PR);
            for (b, blk) in row.chunks_exact(ts).enumerate() {
                let rec = out.record_mut(p, b);
                let mut check = |d: f16| {
                    if !d.is_finite() {
                        bad_scale.get_or_insert((row_index, b));
                    }
                };
                match format {
                    BlockFormat::Q8_0 => {
                        let q = BlockQ8_0::from_bytes(blk.try_into().expect("block size"));
                        check(q.d);
                        for (c, &v) in q.qs.iter().enumerate() {
                            rec[(c / 4) * 64 + r * 4 + c % 4] = (v as u8) ^ 0x80;
                        }
                        rec[32 * PR + 2 * r..32 * PR + 2 * r + 2]
                            .copy_from_slice(&q.d.to_le_bytes());
                    }
                    BlockFormat::Q4_0 | BlockFormat::IQ4_NL => {
                        // Same layout: f16 d, then element j / j + 16 in the low / high nibble.
                        let q = BlockQ4_0::from_bytes(blk.try_into().expect("block size"));
                        check(q.d);
                        for j in 0..16 {
                            for (c, v) in [(j, q.qs[j] & 15), (j + 16, q.qs[j] >> 4)] {
                                let (at, high) = nibble_at(r, c);
                                rec[at] |= if high { v << 4 } else { v };
                            }
                        }
                        rec[16 * PR + 2 * r..16 * PR + 2 * r + 2]
                            .copy_from_slice(&q.d.to_le_bytes());
                    }
                    BlockFormat::Q4_K => {
                        let q = BlockQ4_K::from_bytes(blk.try_into().expect("block size"));
                        check(q.d);
                        check(q.dmin);
                        for g in 0..4 {
                            for l in 0..32 {
                                let byte = q.qs[32 * g + l];
                                for (c, v) in
                                    [(64 * g + l, byte & 15), (64 * g + 32 + l, byte >> 4)]
                                {
                                    let (at, high) = nibble_at(r, c);
                                    rec[at] |= if high { v << 4 } else { v };
                                }
                            }
                        }
                        let base = 128 * PR;
                        rec[base + 2 * r..base + 2 * r + 2].copy_from_slice(&q.d.to_le_bytes());
                        rec[base + 2 * PR + 2 * r..base + 2 * PR + 2 * r + 2]
                            .copy_from_slice(&q.dmin.to_le_bytes());
                        for j in 0..8 {
                            let (sc, m) = scale_min_k4(j, &q.scales);
                            rec[base + 4 * PR + j * PR + r] = sc;
                            rec[base + 12 * PR + j * PR + r] = m;
                        }
                    }
                    BlockFormat::Int4 { .. } => unreachable!("not a GGML type"),
                }
            }
            let _ = nb;
        }
        if let Some((row, block)) = bad_scale {
            return Err(invalid(
                "GGML scales",
                format!("row {row}, block {block}: the f16 scale is not finite"),
            ));
        }
        Ok(out)
    }

    /// Packs symmetric int4 codes (`[n, k]`, each in `-8..=7`) with one scale per `group`
    /// consecutive inputs of a row (`[n, k / group]`, finite).
    pub fn int4(codes: &[i8], scales: &[f32], n: usize, k: usize, group: usize) -> Result<Self> {
        let mut out = Self::empty(BlockFormat::Int4 { group }, n, k)?;
        if n.checked_mul(k) != Some(codes.len()) {
            return Err(shape(vec![n, k], vec![codes.len()]));
        }
        if scales.len() != n * (k / group) {
            return Err(shape(vec![n, k / group], vec![scales.len()]));
        }
        if let Some(i) = codes.iter().position(|c| !(-8..=7).contains(c)) {
            return Err(invalid(
                "int4 codes",
                format!("code {i} is {}, outside -8..=7", codes[i]),
            ));
        }
        if let Some(i) = scales.iter().position(|s| !s.is_finite()) {
            return Err(CoreError::NonFinite {
                value: scales[i] as f64,
                index: i,
                position: vec![i / (k / group), i % (k / group)],
            }
            .into());
        }
        for row_index in 0..n {
            let (p, r) = (row_index / PR, row_index % PR);
            for b in 0..k / group {
                let rec = out.record_mut(p, b);
                for c in 0..group {
                    let v = (codes[row_index * k + b * group + c] + 8) as u8;
                    let (at, high) = nibble_at(r, c);
                    rec[at] |= if high { v << 4 } else { v };
                }
                let s = scales[row_index * (k / group) + b];
                rec[group / 2 * PR + 4 * r..group / 2 * PR + 4 * r + 4]
                    .copy_from_slice(&s.to_le_bytes());
            }
        }
        Ok(out)
    }

    /// The weights back as GGML rows (for Q8_0, Q4_0, IQ4_NL, Q4_K; `None` for int4).
    pub fn to_ggml(&self) -> Option<Vec<u8>> {
        let nb = self.k / self.format.block_size();
        let mut out = Vec::new();
        for row_index in 0..self.n {
            let (p, r) = (row_index / PR, row_index % PR);
            for b in 0..nb {
                let rec = self.record(p, b);
                let nib = |c: usize| {
                    let (at, high) = nibble_at(r, c);
                    if high { rec[at] >> 4 } else { rec[at] & 15 }
                };
                let f16_at = |o: usize| f16::from_le_bytes([rec[o], rec[o + 1]]);
                match self.format {
                    BlockFormat::Q8_0 => {
                        let blk = BlockQ8_0 {
                            d: f16_at(32 * PR + 2 * r),
                            qs: std::array::from_fn(|c| {
                                (rec[(c / 4) * 64 + r * 4 + c % 4] ^ 0x80) as i8
                            }),
                        };
                        out.extend_from_slice(&blk.to_bytes());
                    }
                    BlockFormat::Q4_0 => {
                        let blk = BlockQ4_0 {
                            d: f16_at(16 * PR + 2 * r),
                            qs: std::array::from_fn(|j| nib(j) | (nib(j + 16) << 4)),
                        };
                        out.extend_from_slice(&blk.to_bytes());
                    }
                    BlockFormat::IQ4_NL => {
                        let blk = BlockIQ4_NL {
                            d: f16_at(16 * PR + 2 * r),
                            qs: std::array::from_fn(|j| nib(j) | (nib(j + 16) << 4)),
                        };
                        out.extend_from_slice(&blk.to_bytes());
                    }
                    BlockFormat::Q4_K => {
                        let base = 128 * PR;
                        let ls: [u8; 8] = std::array::from_fn(|j| rec[base + 4 * PR + j * PR + r]);
                        let lm: [u8; 8] = std::array::from_fn(|j| rec[base + 12 * PR + j * PR + r]);
                        let blk = BlockQ4_K {
                            d: f16_at(base + 2 * r),
                            dmin: f16_at(base + 2 * PR + 2 * r),
                            scales: pack_scale_min_k4(&ls, &lm),
                            qs: std::array::from_fn(|i| {
                                let (g, l) = (i / 32, i % 32);
                                nib(64 * g + l) | (nib(64 * g + 32 + l) << 4)
                            }),
                        };
                        out.extend_from_slice(&blk.to_bytes());
                    }
                    BlockFormat::Int4 { .. } => return None,
                }
            }
        }
        Some(out)
    }

    /// The int4 codes (`[n, k]`) and scales (`[n, k / group]`) back (`None` unless int4).
    pub fn to_int4(&self) -> Option<(Vec<i8>, Vec<f32>)> {
        let BlockFormat::Int4 { group } = self.format else {
            return None;
        };
        let mut codes = Vec::with_capacity(self.n * self.k);
        let mut scales = Vec::new();
        for row_index in 0..self.n {
            let (p, r) = (row_index / PR, row_index % PR);
            for b in 0..self.k / group {
                let rec = self.record(p, b);
                codes.extend((0..group).map(|c| {
                    let (at, high) = nibble_at(r, c);
                    (if high { rec[at] >> 4 } else { rec[at] & 15 }) as i8 - 8
                }));
                let o = group / 2 * PR + 4 * r;
                scales.push(f32::from_le_bytes(
                    rec[o..o + 4].try_into().expect("4 bytes"),
                ));
            }
        }
        Some((codes, scales))
    }

    /// The format.
    pub fn format(&self) -> BlockFormat {
        self.format
    }

    /// Output channels (rows).
    pub fn rows(&self) -> usize {
        self.n
    }

    /// Inputs (columns).
    pub fn cols(&self) -> usize {
        self.k
    }

    /// Bytes the kernels read per product (codes and scales, padding rows included).
    pub fn packed_bytes(&self) -> usize {
        self.data.len()
    }

    /// `y = x W^T` (`x` `[m, k]` f32, finite; `out` `[m, n]`) with `x` quantized on the fly to
    /// the format's 8-bit activation blocks, on the best instruction set.
    pub fn matmul(&self, par: Par, x: &[f32], m: usize, out: &mut [f32]) -> Result<()> {
        self.matmul_with(Isa::best(), par, x, m, out)
    }

    /// [`PackedBlocks::matmul`] on the instruction set `isa`.
    pub fn matmul_with(
        &self,
        isa: Isa,
        par: Par,
        x: &[f32],
        m: usize,
        out: &mut [f32],
    ) -> Result<()> {
        let isa = isa.checked()?;
        if m == 0 {
            return Err(CoreError::Empty {
                what: "activations",
            }
            .into());
        }
        if m.checked_mul(self.k) != Some(x.len()) {
            return Err(shape(vec![m, self.k], vec![x.len()]));
        }
        if out.len() != m * self.n {
            return Err(shape(vec![m, self.n], vec![out.len()]));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(CoreError::NonFinite {
                value: x[i] as f64,
                index: i,
                position: vec![i / self.k, i % self.k],
            }
            .into());
        }
        let q = Q8Rows::quantize(
            x,
            self.k,
            self.format.block_size(),
            self.format.activation_kind(),
        );
        let n = self.n;
        let nb = self.k / self.format.block_size();
        let rb = self.format.record_bytes();
        let tiles = par.map_range(n.div_ceil(PR), |p| {
            let panel = &self.data.as_slice()[p * nb * rb..(p + 1) * nb * rb];
            let mut vals = vec![0f32; m * PR];
            for (i, v) in vals.chunks_exact_mut(PR).enumerate() {
                let (codes, scales, sums) = q.row(i);
                let v: &mut [f32; PR] = v.try_into().expect("16 lanes");
                panel_dot(isa, self.format, panel, nb, codes, scales, sums, v);
            }
            vals
        });
        for (p, vals) in tiles.iter().enumerate() {
            let (r0, r1) = (p * PR, ((p + 1) * PR).min(n));
            for i in 0..m {
                out[i * n + r0..i * n + r1].copy_from_slice(&vals[i * PR..i * PR + (r1 - r0)]);
            }
        }
        Ok(())
    }
}

/// One activation row against one panel: `out[r]` for the panel's 16 rows.
#[allow(clippy::too_many_arguments)]
fn panel_dot(
    isa: Isa,
    format: BlockFormat,
    panel: &[u8],
    nb: usize,
    codes: &[i8],
    scales: &[f32],
    sums: &[i32],
    out: &mut [f32; PR],
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked that the CPU has AVX-512 F/BW/VNNI.
        Isa::Avx512Vnni | Isa::Amx => unsafe {
            x86::panel_avx512(format, panel, nb, codes, scales, sums, out)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked that the CPU has AVX2, FMA and F16C.
        Isa::Avx2 => unsafe { x86::panel_avx2(format, panel, nb, codes, scales, sums, out) },
        _ => portable::panel(format, panel, nb, codes, scales, sums, out),
    }
}

#[cfg(test)]
mod tests;
