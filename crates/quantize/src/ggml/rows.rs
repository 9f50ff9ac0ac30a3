//! Row-level entry points: type dispatch, length and finiteness checks, CPU-feature selection
//! and the parallel split over rows.

use std::sync::Mutex;

use modelopt_tensor_core::{CoreError, Par};

use super::iq4::{self, Kernel};
use super::simd::{all_finite, first_non_finite};
use super::{
    BlockIQ4_NL, BlockIQ4_XS, BlockQ2_K, BlockQ3_K, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0,
    BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0, GgmlType, float,
};
use crate::{QuantError, Result};

/// A block type seen as bytes: `N` weights <-> `S` bytes.
pub(crate) trait BlockCodec<const N: usize, const S: usize> {
    fn encode(x: &[f32; N]) -> [u8; S];
    fn decode(b: &[u8; S]) -> [f32; N];
}

macro_rules! codec {
    ($($block:ty => $n:literal, $s:literal;)*) => {$(
        impl BlockCodec<$n, $s> for $block {
            #[inline(always)]
            fn encode(x: &[f32; $n]) -> [u8; $s] {
                <$block>::quantize(x).to_bytes()
            }
            #[inline(always)]
            fn decode(b: &[u8; $s]) -> [f32; $n] {
                <$block>::from_bytes(b).dequantize()
            }
        }
    )*};
}

codec! {
    BlockQ8_0 => 32, 34;
    BlockQ4_0 => 32, 18;
    BlockQ4_1 => 32, 20;
    BlockQ5_0 => 32, 22;
    BlockQ5_1 => 32, 24;
    BlockQ2_K => 256, 84;
    BlockQ3_K => 256, 110;
    BlockQ4_K => 256, 144;
    BlockQ5_K => 256, 176;
    BlockQ6_K => 256, 210;
}

/// The IQ4 blocks decode like the others; they encode through [`encode_iq4`], which takes the
/// search kernel and the importance weights.
macro_rules! decode_only {
    ($($block:ty => $n:literal, $s:literal;)*) => {$(
        impl BlockCodec<$n, $s> for $block {
            #[inline(always)]
            fn encode(x: &[f32; $n]) -> [u8; $s] {
                <$block>::quantize_with(Kernel::Portable, x, None).to_bytes()
            }
            #[inline(always)]
            fn decode(b: &[u8; $s]) -> [f32; $n] {
                <$block>::from_bytes(b).dequantize()
            }
        }
    )*};
}

decode_only! {
    BlockIQ4_NL => 32, 18;
    BlockIQ4_XS => 256, 136;
}

/// Quantizes a row of IQ4_NL or IQ4_XS blocks with `kernel`, each block with its slice of
/// `importance` (one weight per element of `src`) if given. `Err(i)`: element `i` of `src` is
/// not finite. Other types: `Ok` without writing (not called for them).
#[inline(always)]
pub(crate) fn encode_iq4(
    kernel: Kernel,
    ty: GgmlType,
    src: &[f32],
    importance: Option<&[f32]>,
    dst: &mut [u8],
) -> Result<(), usize> {
    match ty {
        GgmlType::IQ4_NL => encode_iq4_blocks::<BlockIQ4_NL, 32, 18>(kernel, src, importance, dst),
        GgmlType::IQ4_XS => {
            encode_iq4_blocks::<BlockIQ4_XS, 256, 136>(kernel, src, importance, dst)
        }
        _ => Ok(()),
    }
}

/// An IQ4 block type as bytes. A trait, not a closure, so that the whole block quantizer is
/// inlined into (and compiled with the CPU features of) the calling row kernel.
trait Iq4Codec<const N: usize, const S: usize> {
    fn encode_with(kernel: Kernel, x: &[f32; N], qw: Option<&[f32; N]>) -> [u8; S];
}

impl Iq4Codec<32, 18> for BlockIQ4_NL {
    #[inline(always)]
    fn encode_with(kernel: Kernel, x: &[f32; 32], qw: Option<&[f32; 32]>) -> [u8; 18] {
        BlockIQ4_NL::quantize_with(kernel, x, qw).to_bytes()
    }
}

impl Iq4Codec<256, 136> for BlockIQ4_XS {
    #[inline(always)]
    fn encode_with(kernel: Kernel, x: &[f32; 256], qw: Option<&[f32; 256]>) -> [u8; 136] {
        BlockIQ4_XS::quantize_with(kernel, x, qw).to_bytes()
    }
}

#[inline(always)]
fn encode_iq4_blocks<B: Iq4Codec<N, S>, const N: usize, const S: usize>(
    kernel: Kernel,
    src: &[f32],
    importance: Option<&[f32]>,
    dst: &mut [u8],
) -> Result<(), usize> {
    let (xs, _) = src.as_chunks::<N>();
    let (os, _) = dst.as_chunks_mut::<S>();
    let qws = importance.map(|q| q.as_chunks::<N>().0);
    for (i, (x, o)) in xs.iter().zip(os).enumerate() {
        if !all_finite(x) {
            return Err(i * N + first_non_finite(x).unwrap_or(0));
        }
        *o = B::encode_with(kernel, x, qws.map(|q| &q[i]));
    }
    Ok(())
}

/// Quantizes the blocks of a row; `Err(i)` names the first non-finite element.
#[inline(always)]
fn encode_blocks<B: BlockCodec<N, S>, const N: usize, const S: usize>(
    src: &[f32],
    dst: &mut [u8],
) -> Result<(), usize> {
    let (xs, _) = src.as_chunks::<N>();
    let (os, _) = dst.as_chunks_mut::<S>();
    for (i, (x, o)) in xs.iter().zip(os).enumerate() {
        if !all_finite(x) {
            return Err(i * N + first_non_finite(x).unwrap_or(0));
        }
        *o = B::encode(x);
    }
    Ok(())
}

#[inline(always)]
fn decode_blocks<B: BlockCodec<N, S>, const N: usize, const S: usize>(src: &[u8], dst: &mut [f32]) {
    let (bs, _) = src.as_chunks::<S>();
    let (ys, _) = dst.as_chunks_mut::<N>();
    for (b, y) in bs.iter().zip(ys) {
        *y = B::decode(b);
    }
}

/// The kernels behind [`quantize_row`]; lengths already checked. `Err(i)`: element `i` is not
/// finite.
#[inline(always)]
fn encode_any(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), usize> {
    match ty {
        GgmlType::F32 => float::encode_f32(src, dst),
        GgmlType::F16 => float::encode_f16(src, dst),
        GgmlType::BF16 => float::encode_bf16(src, dst),
        GgmlType::Q8_0 => encode_blocks::<BlockQ8_0, 32, 34>(src, dst),
        GgmlType::Q4_0 => encode_blocks::<BlockQ4_0, 32, 18>(src, dst),
        GgmlType::Q4_1 => encode_blocks::<BlockQ4_1, 32, 20>(src, dst),
        GgmlType::Q5_0 => encode_blocks::<BlockQ5_0, 32, 22>(src, dst),
        GgmlType::Q5_1 => encode_blocks::<BlockQ5_1, 32, 24>(src, dst),
        GgmlType::Q2_K => encode_blocks::<BlockQ2_K, 256, 84>(src, dst),
        GgmlType::Q3_K => encode_blocks::<BlockQ3_K, 256, 110>(src, dst),
        GgmlType::Q4_K => encode_blocks::<BlockQ4_K, 256, 144>(src, dst),
        GgmlType::Q5_K => encode_blocks::<BlockQ5_K, 256, 176>(src, dst),
        GgmlType::Q6_K => encode_blocks::<BlockQ6_K, 256, 210>(src, dst),
        GgmlType::IQ4_NL | GgmlType::IQ4_XS => encode_iq4(Kernel::Portable, ty, src, None, dst),
    }
}

#[inline(always)]
pub(super) fn decode_any(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    match ty {
        GgmlType::F32 => float::decode_f32(src, dst),
        GgmlType::F16 => float::decode_f16(src, dst),
        GgmlType::BF16 => float::decode_bf16(src, dst),
        GgmlType::Q8_0 => decode_blocks::<BlockQ8_0, 32, 34>(src, dst),
        GgmlType::Q4_0 => decode_blocks::<BlockQ4_0, 32, 18>(src, dst),
        GgmlType::Q4_1 => decode_blocks::<BlockQ4_1, 32, 20>(src, dst),
        GgmlType::Q5_0 => decode_blocks::<BlockQ5_0, 32, 22>(src, dst),
        GgmlType::Q5_1 => decode_blocks::<BlockQ5_1, 32, 24>(src, dst),
        GgmlType::Q2_K => decode_blocks::<BlockQ2_K, 256, 84>(src, dst),
        GgmlType::Q3_K => decode_blocks::<BlockQ3_K, 256, 110>(src, dst),
        GgmlType::Q4_K => decode_blocks::<BlockQ4_K, 256, 144>(src, dst),
        GgmlType::Q5_K => decode_blocks::<BlockQ5_K, 256, 176>(src, dst),
        GgmlType::Q6_K => decode_blocks::<BlockQ6_K, 256, 210>(src, dst),
        GgmlType::IQ4_NL => decode_blocks::<BlockIQ4_NL, 32, 18>(src, dst),
        GgmlType::IQ4_XS => decode_blocks::<BlockIQ4_XS, 256, 136>(src, dst),
    }
}

/// Which compiled copy of the kernels this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    /// The baseline target (SSE2 on x86-64).
    Baseline,
    /// x86-64 with AVX2 and F16C.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// x86-64 with AVX2, F16C, AVX-512F/BW/DQ: the simple-format row kernels of `simd_avx512`
    /// and the K-quant searches four super-blocks at a time, the AVX2 copy for everything else.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("f16c")
            {
                if super::simd_avx512::available() {
                    return Isa::Avx512;
                }
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    }
}

// The same plain-Rust kernels compiled with AVX2 enabled, so the auto-vectoriser can use 256-bit
// registers and `vroundps`. No FMA is enabled: llama.cpp's reference does a separate multiply
// and add, and LLVM never fuses them on its own.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
fn encode_avx2(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), usize> {
    match ty {
        GgmlType::Q2_K => encode_blocks::<Avx2Search<BlockQ2_K>, 256, 84>(src, dst),
        GgmlType::Q4_K => encode_blocks::<Avx2Search<BlockQ4_K>, 256, 144>(src, dst),
        GgmlType::Q5_K => encode_blocks::<Avx2Search<BlockQ5_K>, 256, 176>(src, dst),
        _ => encode_any(ty, src, dst),
    }
}

/// The AVX-512 kernels: the Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 rows, and the K-quants whose scale search runs on
/// several super-blocks per register (four at a time; the rest through the AVX2 search).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq")]
fn encode_avx512(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), usize> {
    // SAFETY (all calls below): this function only runs after `Isa::detect` checked the features.
    match ty {
        GgmlType::Q8_0 => unsafe { super::simd_avx512::quantize_row_q8_0(src, dst) },
        GgmlType::Q4_0 => unsafe { super::simd_avx512::quantize_row_q4_0(src, dst) },
        GgmlType::Q4_1 => unsafe { super::simd_avx512::quantize_row_q4_1(src, dst) },
        GgmlType::Q5_0 => unsafe { super::simd_avx512::quantize_row_q5_0(src, dst) },
        GgmlType::Q5_1 => unsafe { super::simd_avx512::quantize_row_q5_1(src, dst) },
        GgmlType::Q2_K => encode_in_fours::<Avx2Search<BlockQ2_K>, 84>(src, dst, |x| {
            unsafe { BlockQ2_K::quantize4_avx512(x) }.map(|b| b.to_bytes())
        }),
        GgmlType::Q4_K => encode_in_fours::<Avx2Search<BlockQ4_K>, 144>(src, dst, |x| {
            unsafe { BlockQ4_K::quantize4_avx512(x) }.map(|b| b.to_bytes())
        }),
        GgmlType::Q5_K => encode_in_fours::<Avx2Search<BlockQ5_K>, 176>(src, dst, |x| {
            unsafe { BlockQ5_K::quantize4_avx512(x) }.map(|b| b.to_bytes())
        }),
        GgmlType::IQ4_NL | GgmlType::IQ4_XS => {
            encode_iq4(iq4::kernel_for(Isa::Avx512), ty, src, None, dst)
        }
        _ => encode_avx2(ty, src, dst),
    }
}

/// Quantizes a row four super-blocks at a time with `four`, the remaining blocks with `B`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn encode_in_fours<B: BlockCodec<256, S>, const S: usize>(
    src: &[f32],
    dst: &mut [u8],
    four: impl Fn(&[[f32; 256]; 4]) -> [[u8; S]; 4],
) -> Result<(), usize> {
    let (xs, _) = src.as_chunks::<256>();
    let (os, _) = dst.as_chunks_mut::<S>();
    let (x4, x_rest) = xs.as_chunks::<4>();
    let (o4, o_rest) = os.as_chunks_mut::<4>();
    for (k, (x, o)) in x4.iter().zip(o4.iter_mut()).enumerate() {
        let flat = x.as_flattened();
        if !all_finite(flat) {
            return Err(k * 1024 + first_non_finite(flat).unwrap_or(0));
        }
        *o = four(x);
    }
    let done = x4.len() * 1024;
    encode_blocks::<B, 256, S>(x_rest.as_flattened(), o_rest.as_flattened_mut())
        .map_err(|i| done + i)
}

/// A K-quant block through its AVX2 scale search; only used inside `encode_avx2`.
#[cfg(target_arch = "x86_64")]
struct Avx2Search<B>(std::marker::PhantomData<B>);

#[cfg(target_arch = "x86_64")]
macro_rules! avx2_codec {
    ($($block:ty => $s:literal;)*) => {$(
        impl BlockCodec<256, $s> for Avx2Search<$block> {
            #[inline(always)]
            fn encode(x: &[f32; 256]) -> [u8; $s] {
                // SAFETY: only instantiated in `encode_avx2`, which runs after the AVX2 check.
                unsafe { <$block>::quantize_avx2(x) }.to_bytes()
            }
            #[inline(always)]
            fn decode(b: &[u8; $s]) -> [f32; 256] {
                <$block>::from_bytes(b).dequantize()
            }
        }
    )*};
}

#[cfg(target_arch = "x86_64")]
avx2_codec! {
    BlockQ2_K => 84;
    BlockQ4_K => 144;
    BlockQ5_K => 176;
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
fn decode_avx2(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    decode_any(ty, src, dst)
}

pub(crate) fn encode_with(
    isa: Isa,
    ty: GgmlType,
    src: &[f32],
    dst: &mut [u8],
) -> Result<(), usize> {
    match isa {
        Isa::Baseline => encode_any(ty, src, dst),
        // SAFETY: `Isa::Avx2` is only produced by `detect` after checking avx2 and f16c.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { encode_avx2(ty, src, dst) },
        // SAFETY: `Isa::Avx512` is only produced by `detect` after checking avx2, f16c,
        // avx512f and avx512bw.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { encode_avx512(ty, src, dst) },
    }
}

pub(crate) fn decode_with(isa: Isa, ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    match isa {
        Isa::Baseline => decode_any(ty, src, dst),
        // SAFETY: `Isa::Avx2` is only produced by `detect` after checking avx2 and f16c.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 => unsafe { decode_avx2(ty, src, dst) },
    }
}

impl GgmlType {
    /// Whether [`quantize_row`] and [`dequantize_row`] implement this type.
    ///
    /// ```
    /// use modelopt_quantize::ggml::GgmlType;
    /// assert!(GgmlType::Q4_K.is_supported());
    /// ```
    pub fn is_supported(self) -> bool {
        Self::ALL.contains(&self)
    }
}

pub(super) fn check_supported(ty: GgmlType) -> Result<()> {
    if ty.is_supported() {
        Ok(())
    } else {
        Err(CoreError::invalid("ggml type", format!("{} is not implemented", ty.name())).into())
    }
}

pub(super) fn length_error(
    what: &'static str,
    expected: usize,
    found: usize,
    unit: &'static str,
) -> QuantError {
    QuantError::Length {
        what,
        expected,
        found,
        unit,
    }
}

pub(super) fn non_finite(src: &[f32], index: usize) -> QuantError {
    CoreError::NonFinite {
        index,
        position: vec![index],
        value: src.get(index).map_or(f64::NAN, |v| *v as f64),
    }
    .into()
}

/// Quantizes `src` (length a multiple of `ty.block_size()`) into `dst`
/// (exactly `ty.row_bytes(src.len())` bytes), bit-exact with llama.cpp.
///
/// Errors: a length that does not fit, a type not implemented, or a NaN/±Inf in `src` (the
/// error names its index; `dst` is then partly written).
///
/// ```
/// use modelopt_quantize::ggml::{quantize_row, GgmlType};
/// let src = [0.5f32; 32];
/// let mut dst = [0u8; 18];
/// quantize_row(GgmlType::Q4_0, &src, &mut dst)?;
/// assert_eq!(dst[2], 0x00); // every code is 0: 0.5 = (0 - 8) * d with d = -1/16
/// assert!(quantize_row(GgmlType::Q4_0, &[f32::NAN; 32], &mut dst).is_err());
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<()> {
    check_supported(ty)?;
    let bytes = ty.row_bytes(src.len())?;
    if dst.len() != bytes {
        return Err(length_error("quantized row", bytes, dst.len(), "bytes"));
    }
    encode_with(Isa::detect(), ty, src, dst).map_err(|i| non_finite(src, i))
}

/// Dequantizes `src` (whole blocks of `ty`) into `dst`, whose length must be the number of
/// weights those blocks hold.
///
/// ```
/// use modelopt_quantize::ggml::{dequantize_row, quantize_row, GgmlType};
/// let mut q = [0u8; 34];
/// quantize_row(GgmlType::Q8_0, &[1.0; 32], &mut q)?;
/// let mut y = [0f32; 32];
/// dequantize_row(GgmlType::Q8_0, &q, &mut y)?;
/// assert!(y.iter().all(|v| (v - 1.0).abs() < 1e-3));
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<()> {
    check_supported(ty)?;
    let bytes = ty.row_bytes(dst.len())?;
    if src.len() != bytes {
        return Err(length_error("quantized row", bytes, src.len(), "bytes"));
    }
    decode_with(Isa::detect(), ty, src, dst);
    Ok(())
}

/// Quantizes `src` into a new buffer (see [`quantize_row`]).
///
/// ```
/// use modelopt_quantize::ggml::{quantize, GgmlType};
/// assert_eq!(quantize(GgmlType::Q4_K, &[0.0; 512])?.len(), 288);
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
pub fn quantize(ty: GgmlType, src: &[f32]) -> Result<Vec<u8>> {
    let mut dst = vec![0u8; ty.row_bytes(src.len())?];
    quantize_row(ty, src, &mut dst)?;
    Ok(dst)
}

/// Dequantizes `n` weights from `src` into a new buffer (see [`dequantize_row`]).
///
/// ```
/// use modelopt_quantize::ggml::{dequantize, quantize, GgmlType};
/// let q = quantize(GgmlType::BF16, &[1.5, -2.0])?;
/// assert_eq!(dequantize(GgmlType::BF16, &q, 2)?, vec![1.5, -2.0]);
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
pub fn dequantize(ty: GgmlType, src: &[u8], n: usize) -> Result<Vec<f32>> {
    let bytes = ty.row_bytes(n)?;
    if src.len() != bytes {
        return Err(length_error("quantized data", bytes, src.len(), "bytes"));
    }
    let mut dst = vec![0f32; n];
    dequantize_row(ty, src, &mut dst)?;
    Ok(dst)
}

/// Rows handed to one task: enough work to amortise scheduling (~256 K weights).
pub(super) fn rows_per_task(row_len: usize) -> usize {
    (262_144 / row_len.max(1)).max(1)
}

/// Quantizes a row-major matrix of rows of `row_len` weights, the rows split over the threads
/// `par` allows. Same checks and bytes as calling [`quantize_row`] on each row; on several
/// non-finite values the error names the first (by flat index).
///
/// ```
/// use modelopt_quantize::ggml::{quantize_rows, GgmlType, Par};
/// let src = vec![0.25f32; 4 * 64];
/// let mut dst = vec![0u8; 4 * 2 * 34];
/// quantize_rows(GgmlType::Q8_0, &src, 64, &mut dst, Par::Seq)?;
/// assert_eq!(dst[..68], dst[68..136]);
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
pub fn quantize_rows(
    ty: GgmlType,
    src: &[f32],
    row_len: usize,
    dst: &mut [u8],
    par: Par,
) -> Result<()> {
    check_supported(ty)?;
    let row_bytes = check_rows(ty, src.len(), row_len, dst.len())?;
    if src.is_empty() {
        return Ok(());
    }
    let isa = Isa::detect();
    let per_task = rows_per_task(row_len);
    let first_bad: Mutex<Option<usize>> = Mutex::new(None);
    par.for_each_chunk_mut(dst, per_task * row_bytes, |t, out| {
        let start = t * per_task * row_len;
        let rows = out.len() / row_bytes;
        let x = &src[start..start + rows * row_len];
        if let Err(i) = encode_with(isa, ty, x, out) {
            // A poisoned lock only means another task panicked; the value is still usable.
            let mut bad = first_bad.lock().unwrap_or_else(|e| e.into_inner());
            let i = start + i;
            *bad = Some(bad.map_or(i, |b| b.min(i)));
        }
    });
    match first_bad.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(i) => Err(non_finite(src, i)),
        None => Ok(()),
    }
}

/// Dequantizes a row-major matrix of rows of `row_len` weights, split over threads like
/// [`quantize_rows`].
///
/// ```
/// use modelopt_quantize::ggml::{dequantize_rows, quantize_rows, GgmlType, Par};
/// let src = vec![0.5f32; 2 * 256];
/// let mut q = vec![0u8; 2 * 210];
/// quantize_rows(GgmlType::Q6_K, &src, 256, &mut q, Par::Seq)?;
/// let mut y = vec![0f32; 512];
/// dequantize_rows(GgmlType::Q6_K, &q, 256, &mut y, Par::Seq)?;
/// assert!(y.iter().all(|v| (v - 0.5).abs() < 1e-3));
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
pub fn dequantize_rows(
    ty: GgmlType,
    src: &[u8],
    row_len: usize,
    dst: &mut [f32],
    par: Par,
) -> Result<()> {
    check_supported(ty)?;
    let row_bytes = check_rows(ty, dst.len(), row_len, src.len())?;
    if dst.is_empty() {
        return Ok(());
    }
    let isa = Isa::detect();
    let per_task = rows_per_task(row_len);
    par.for_each_chunk_mut(dst, per_task * row_len, |t, out| {
        let start = t * per_task * row_bytes;
        let rows = out.len() / row_len;
        decode_with(isa, ty, &src[start..start + rows * row_bytes], out);
    });
    Ok(())
}

/// Checks a matrix of `n` weights in rows of `row_len` against `bytes` of quantized data;
/// returns the bytes per row.
pub(super) fn check_rows(ty: GgmlType, n: usize, row_len: usize, bytes: usize) -> Result<usize> {
    if row_len == 0 {
        return Err(CoreError::invalid("row_len", "must be at least 1").into());
    }
    if !n.is_multiple_of(row_len) {
        return Err(CoreError::invalid(
            "row_len",
            format!("{n} weights are not a whole number of rows of {row_len}"),
        )
        .into());
    }
    let row_bytes = ty.row_bytes(row_len)?;
    let expected = n / row_len * row_bytes;
    if bytes != expected {
        return Err(length_error("quantized rows", expected, bytes, "bytes"));
    }
    Ok(row_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX2 copy of the kernels must give the same bytes as the baseline copy.
    #[test]
    fn avx2_kernels_match_baseline() {
        let isa = Isa::detect();
        if isa == Isa::Baseline {
            return;
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let src: Vec<f32> = (0..4096)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let u = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                // Mix scales, exact halves and zeros.
                match i % 7 {
                    0 => (u * 64.0).round() / 2.0,
                    1 => 0.0,
                    _ => u * (1 + i % 5) as f32,
                }
            })
            .collect();
        // 4096 = 16 super-blocks (the four-at-a-time kernels only), 1280 = 5 (one left over).
        for (ty, src) in GgmlType::ALL
            .into_iter()
            .flat_map(|t| [(t, &src[..]), (t, &src[..1280])])
        {
            let n = ty.row_bytes(src.len()).unwrap_or(0);
            let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
            assert!(encode_with(Isa::Baseline, ty, src, &mut a).is_ok());
            assert!(encode_with(isa, ty, src, &mut b).is_ok());
            assert_eq!(a, b, "{}", ty.name());
            #[cfg(target_arch = "x86_64")]
            if isa != Isa::Avx2 {
                assert!(encode_with(Isa::Avx2, ty, src, &mut b).is_ok());
                assert_eq!(a, b, "{} (avx2)", ty.name());
            }
            let (mut ya, mut yb) = (vec![0f32; src.len()], vec![0f32; src.len()]);
            decode_with(Isa::Baseline, ty, &a, &mut ya);
            decode_with(isa, ty, &a, &mut yb);
            assert_eq!(ya, yb, "{}", ty.name());
        }
    }
}
