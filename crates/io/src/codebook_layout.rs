//! Storage of the nonlinear (codebook) quantized tensors in safetensors: bitsandbytes' NF4/FP4
//! and learned codebooks over absmax blocks (docs/formats.md).

use modelopt_quantize::codebook::{
    Absmax, Bnb4Kind, Bnb4Quantized, CodebookQuantized, DOUBLE_QUANT_BLOCK, DYNAMIC_CODE, Sharing,
    packed_len,
};
use ndarray::IxDyn;

use crate::{DType, IoError, Result, decode_f32};

/// Suffix of the absmax companion (f32, or u8 codes when double-quantized): `<name>.absmax`.
pub const ABSMAX_SUFFIX: &str = ".absmax";
/// Suffix of the second-level absmax scales of double quantization: `<name>.absmax2`.
pub const ABSMAX2_SUFFIX: &str = ".absmax2";
/// Suffix of the double-quantization offset (one f32): `<name>.absmax_offset`.
pub const ABSMAX_OFFSET_SUFFIX: &str = ".absmax_offset";
/// Suffix of the 256-entry code table of double quantization (f32): `<name>.absmax_code`.
pub const ABSMAX_CODE_SUFFIX: &str = ".absmax_code";
/// Suffix of a learned codebook (f32 levels): `<name>.codebook`.
pub const CODEBOOK_SUFFIX: &str = ".codebook";

/// The companions of an NF4/FP4 tensor of `n` elements.
pub(crate) fn bnb_companions(
    n: usize,
    block: usize,
    double: bool,
) -> Vec<(&'static str, DType, Vec<usize>)> {
    let blocks = n.div_ceil(block.max(1));
    if double {
        vec![
            (ABSMAX_SUFFIX, DType::U8, vec![blocks]),
            (
                ABSMAX2_SUFFIX,
                DType::F32,
                vec![blocks.div_ceil(DOUBLE_QUANT_BLOCK)],
            ),
            (ABSMAX_OFFSET_SUFFIX, DType::F32, vec![1]),
            (ABSMAX_CODE_SUFFIX, DType::F32, vec![DYNAMIC_CODE.len()]),
        ]
    } else {
        vec![(ABSMAX_SUFFIX, DType::F32, vec![blocks])]
    }
}

/// The companions of a learned-codebook tensor of `n` elements.
pub(crate) fn codebook_companions(
    n: usize,
    bits: u8,
    block: usize,
) -> Vec<(&'static str, DType, Vec<usize>)> {
    vec![
        (CODEBOOK_SUFFIX, DType::F32, vec![1usize << bits.min(8)]),
        (
            crate::SCALE_SUFFIX,
            DType::F32,
            vec![n.div_ceil(block.max(1))],
        ),
    ]
}

fn f32s(bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    let mut out = vec![0f32; n];
    decode_f32(DType::F32, bytes, &mut out)?;
    Ok(out)
}

/// Decodes an NF4/FP4 tensor.
pub(crate) fn bnb_dequantize(
    kind: Bnb4Kind,
    block: usize,
    double: bool,
    shape: &[usize],
    codes: &[u8],
    companions: &[&[u8]],
) -> Result<Vec<f32>> {
    let n = crate::element_count(shape)?;
    let comp = bnb_companions(n, block, double);
    let part = |i: usize| companions.get(i).copied().unwrap_or(&[]);
    let absmax = if double {
        let absmax2 = f32s(part(1), comp[1].2[0])?;
        let offset = f32s(part(2), 1)?[0];
        let table = f32s(part(3), DYNAMIC_CODE.len())?;
        if table
            .iter()
            .zip(&DYNAMIC_CODE)
            .any(|(a, b)| a.to_bits() != b.to_bits())
        {
            return Err(IoError::Usage(
                "double quantization with a code table other than bitsandbytes' dynamic map".into(),
            ));
        }
        Absmax::Double {
            codes: part(0).to_vec(),
            absmax2,
            offset,
        }
    } else {
        Absmax::F32(f32s(part(0), comp[0].2[0])?)
    };
    let q = Bnb4Quantized::from_stored(IxDyn(shape), kind, block, codes.to_vec(), absmax)?;
    Ok(q.dequantize().into_raw_vec_and_offset().0)
}

/// Decodes a learned-codebook tensor.
pub(crate) fn codebook_dequantize(
    bits: u8,
    block: usize,
    shape: &[usize],
    codes: &[u8],
    companions: &[&[u8]],
) -> Result<Vec<f32>> {
    let n = crate::element_count(shape)?;
    let part = |i: usize| companions.get(i).copied().unwrap_or(&[]);
    let levels = f32s(part(0), 1usize << bits.min(8))?;
    let scales = f32s(part(1), n.div_ceil(block.max(1)))?;
    let q = CodebookQuantized::from_stored(
        IxDyn(shape),
        bits,
        Sharing::PerTensor,
        levels,
        Some((Sharing::Blocks { size: block }, scales)),
        codes.to_vec(),
    )?;
    Ok(q.dequantize().into_raw_vec_and_offset().0)
}

/// Bytes of the packed indices of a codebook tensor.
pub(crate) fn codebook_code_bytes(n: usize, bits: u8) -> usize {
    packed_len(n, bits)
}

/// Checks the parameters of a codebook layout.
pub(crate) fn check_codebook(bits: u8, block: usize) -> Result<()> {
    if !(1..=8).contains(&bits) || block == 0 {
        return Err(IoError::Usage(format!(
            "codebook: bits must be in 1..=8 and block_size >= 1, got {bits} and {block}"
        )));
    }
    Ok(())
}

/// Checks the block size of an NF4/FP4 layout.
pub(crate) fn check_bnb(block: usize) -> Result<()> {
    if block < 32 || !block.is_power_of_two() {
        return Err(IoError::Usage(format!(
            "nf4/fp4: block_size must be a power of two >= 32, got {block}"
        )));
    }
    Ok(())
}
