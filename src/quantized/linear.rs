//! `QuantizedLinear`: a dense layer that runs in integers.

use modelopt_kernels::{
    ActScale, BlockFormat, Epilogue, Isa, PackedBlocks, PackedI8, Par, QuantizedActivations,
    w8a8_with,
};
use modelopt_nn::Dense;
use modelopt_quantize::observer::Observer;
use modelopt_quantize::{QuantScheme, ggml};
use modelopt_tensor_core::CoreError;
use ndarray::{Array2, ArrayRef2, s};

use crate::Result;

/// How a [`QuantizedLinear`] computes.
///
/// ```
/// use modelopt::quantized::LinearScheme;
/// use modelopt::kernels::BlockFormat;
/// assert_eq!(LinearScheme::W8A8Dynamic.name(), "w8a8-dynamic");
/// assert_eq!(LinearScheme::WeightOnly(BlockFormat::Int4 { group: 32 }).name(), "int4-g32");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinearScheme {
    /// int8 weights (symmetric, one scale per output channel) times activations quantized per
    /// token at run time (affine u8 over each row's range): torch's `quantize_dynamic`, exact
    /// int32 products.
    W8A8Dynamic,
    /// int8 weights times activations quantized with one scale and zero point calibrated on data
    /// ([`QuantizedLinear::calibrate`]); running before calibration is an error.
    W8A8Static,
    /// Low-bit weights in a block format; the f32 activations are quantized on the fly to 8-bit
    /// blocks (llama.cpp's scheme).
    WeightOnly(BlockFormat),
}

impl LinearScheme {
    /// A short name (`w8a8-dynamic`, `w8a8-static`, `q4_0`, `int4-g32`, ...).
    pub fn name(&self) -> String {
        match self {
            LinearScheme::W8A8Dynamic => "w8a8-dynamic".into(),
            LinearScheme::W8A8Static => "w8a8-static".into(),
            LinearScheme::WeightOnly(f) => f.name(),
        }
    }

    /// Parses [`LinearScheme::name`].
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "w8a8-dynamic" => LinearScheme::W8A8Dynamic,
            "w8a8-static" => LinearScheme::W8A8Static,
            "q8_0" => LinearScheme::WeightOnly(BlockFormat::Q8_0),
            "q4_0" => LinearScheme::WeightOnly(BlockFormat::Q4_0),
            "iq4_nl" => LinearScheme::WeightOnly(BlockFormat::IQ4_NL),
            "q4_K" => LinearScheme::WeightOnly(BlockFormat::Q4_K),
            other => match other.strip_prefix("int4-g").and_then(|g| g.parse().ok()) {
                Some(group) => LinearScheme::WeightOnly(BlockFormat::Int4 { group }),
                None => {
                    return Err(CoreError::invalid(
                        "scheme",
                        format!("unknown quantized scheme `{other}`"),
                    )
                    .into());
                }
            },
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Weights {
    Int8 {
        packed: PackedI8,
        epilogue: Epilogue,
    },
    Blocks {
        packed: PackedBlocks,
        bias: Vec<f32>,
        relu: bool,
    },
}

/// A dense layer `y = x W^T + b` whose product runs in integers (see [`LinearScheme`]), with
/// bias and an optional ReLU fused into the epilogue.
///
/// ```
/// use modelopt::nn::Dense;
/// use modelopt::quantized::{LinearScheme, QuantizedLinear};
/// use modelopt::kernels::Par;
/// use ndarray::array;
/// let dense = Dense::from_parts(array![[0.5f32, -1.0], [2.0, 0.25]], array![0.0, 1.0])?;
/// let q = QuantizedLinear::from_dense(&dense, LinearScheme::W8A8Dynamic)?;
/// let y = q.forward(&array![[1.0f32, 2.0]], Par::Seq)?;
/// assert!((y[[0, 0]] + 1.5).abs() < 0.02 && (y[[0, 1]] - 3.5).abs() < 0.02);
/// let mut s = QuantizedLinear::from_dense(&dense, LinearScheme::W8A8Static)?;
/// assert!(s.forward(&array![[1.0f32, 2.0]], Par::Seq).is_err()); // not calibrated
/// # Ok::<(), modelopt::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedLinear {
    /// Inputs (the packed int4 weights may hold more: zero columns up to the group).
    pub(crate) in_features: usize,
    pub(crate) scheme: LinearScheme,
    pub(crate) weights: Weights,
    pub(crate) input: Option<ActScale>,
    pub(crate) isa: Isa,
}

/// The int4 layout of rows of `k` inputs in groups of `group`: `(packed inputs, group)`. A group
/// that does not divide `k` gives one group per row, as the pipeline's int4 simulation does
/// (`WeightFormat::effective_group`), padded with zero columns to a multiple of 8 for the
/// kernels: the zeros change neither the row's scale nor its codes, and meet zero activations.
pub(crate) fn int4_layout(k: usize, group: usize) -> Result<(usize, usize)> {
    if group == 0 || k == 0 {
        return Err(CoreError::invalid(
            "group",
            format!("int4 needs inputs and a group size, got {k} inputs, group {group}"),
        )
        .into());
    }
    if k.is_multiple_of(group) && group.is_multiple_of(8) {
        Ok((k, group))
    } else if k.is_multiple_of(group) {
        Err(CoreError::invalid(
            "group",
            format!("the int4 group {group} is not a multiple of 8 (the kernels' lanes)"),
        )
        .into())
    } else {
        let padded = k.div_ceil(8) * 8;
        Ok((padded, padded))
    }
}

/// The u8 affine scheme static activations are calibrated for.
pub(crate) fn activation_scheme() -> Result<modelopt_quantize::CheckedScheme> {
    Ok(QuantScheme::int8().affine().signed(false).check()?)
}

impl QuantizedLinear {
    /// Quantizes `dense` for `scheme`: int8 symmetric per output channel for W8A8 (the
    /// pipeline's `int8` weights), the GGML quantizers for Q8_0/Q4_0/IQ4_NL/Q4_K, symmetric int4 in
    /// `[-7, 7]` per group for `Int4` (the pipeline's `int4-g*`).
    pub fn from_dense(dense: &Dense<f32>, scheme: LinearScheme) -> Result<Self> {
        let (n, k) = dense.weight().dim();
        let w = dense.weight();
        let bias: Vec<f32> = dense.bias().iter().copied().collect();
        let weights = match scheme {
            LinearScheme::W8A8Dynamic | LinearScheme::W8A8Static => {
                let q = QuantScheme::int8().per_channel(0).quantize(w)?;
                let codes: Vec<i8> = q.codes().iter().map(|&c| c as i8).collect();
                let scales: Vec<f32> = q.scales().iter().copied().collect();
                Weights::Int8 {
                    packed: PackedI8::new(&codes, n, k)?,
                    epilogue: Epilogue::new(scales)?.bias(bias)?,
                }
            }
            LinearScheme::WeightOnly(format) => {
                let packed = match format {
                    BlockFormat::Int4 { group } => {
                        let (kp, g) = int4_layout(k, group)?;
                        let mut padded = Array2::<f32>::zeros((n, kp));
                        padded.slice_mut(s![.., ..k]).assign(w);
                        let q = QuantScheme::int4().per_group(1, g).quantize(&padded)?;
                        let codes: Vec<i8> = q.codes().iter().map(|&c| c as i8).collect();
                        let scales: Vec<f32> = q.scales().iter().copied().collect();
                        PackedBlocks::int4(&codes, &scales, n, kp, g)?
                    }
                    other => {
                        let ty = match other {
                            BlockFormat::Q8_0 => ggml::GgmlType::Q8_0,
                            BlockFormat::Q4_0 => ggml::GgmlType::Q4_0,
                            BlockFormat::IQ4_NL => ggml::GgmlType::IQ4_NL,
                            _ => ggml::GgmlType::Q4_K,
                        };
                        let flat: Vec<f32> = w.iter().copied().collect();
                        PackedBlocks::from_ggml(ty, &ggml::quantize(ty, &flat)?, n, k)?
                    }
                };
                if let Some(i) = bias.iter().position(|b| !b.is_finite()) {
                    return Err(
                        CoreError::invalid("bias", format!("value {i} is {}", bias[i])).into(),
                    );
                }
                Weights::Blocks {
                    packed,
                    bias,
                    relu: false,
                }
            }
        };
        Ok(QuantizedLinear {
            in_features: k,
            scheme,
            weights,
            input: None,
            isa: Isa::best(),
        })
    }

    /// The scheme.
    pub fn scheme(&self) -> LinearScheme {
        self.scheme
    }

    /// Inputs.
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// Outputs.
    pub fn out_features(&self) -> usize {
        match &self.weights {
            Weights::Int8 { packed, .. } => packed.rows(),
            Weights::Blocks { packed, .. } => packed.rows(),
        }
    }

    /// Bytes of weights the kernels read (codes and scales; biases not counted).
    pub fn weight_bytes(&self) -> usize {
        match &self.weights {
            Weights::Int8 { packed, .. } => packed.packed_bytes() + 4 * packed.rows(),
            Weights::Blocks { packed, .. } => packed.packed_bytes(),
        }
    }

    /// The static activation scale, once calibrated (or set).
    pub fn input_scale(&self) -> Option<ActScale> {
        self.input
    }

    /// Sets the static activation scale (W8A8 static only).
    pub fn set_input_scale(&mut self, scale: ActScale) -> Result<()> {
        if self.scheme != LinearScheme::W8A8Static || matches!(scale, ActScale::PerToken) {
            return Err(CoreError::invalid(
                "input scale",
                format!(
                    "a per-tensor input scale is for w8a8-static layers, not {}",
                    self.scheme.name()
                ),
            )
            .into());
        }
        self.input = Some(scale);
        Ok(())
    }

    /// Sets the static activation scale and zero point from an observer that has seen this
    /// layer's inputs (min-max, percentile, MSE or entropy), for u8 affine codes.
    pub fn calibrate(&mut self, observer: &dyn Observer) -> Result<()> {
        let params = observer.quant_params(&activation_scheme()?)?;
        let scale = ActScale::per_tensor(params.scales()[[0]], params.zero_points()[[0]])?;
        self.set_input_scale(scale)
    }

    /// Fuses ReLU into the epilogue (or removes it).
    pub fn set_relu(&mut self, on: bool) {
        match &mut self.weights {
            Weights::Int8 { epilogue, .. } => *epilogue = epilogue.clone().relu(on),
            Weights::Blocks { relu, .. } => *relu = on,
        }
    }

    /// Whether ReLU is fused into the epilogue.
    pub fn relu(&self) -> bool {
        match &self.weights {
            Weights::Int8 { epilogue, .. } => epilogue.has_relu(),
            Weights::Blocks { relu, .. } => *relu,
        }
    }

    /// Runs on the instruction set `isa` instead of the best one (to compare them).
    pub fn with_isa(mut self, isa: Isa) -> Result<Self> {
        if !isa.is_available() {
            return Err(modelopt_kernels::KernelError::IsaUnavailable(isa).into());
        }
        self.isa = isa;
        Ok(self)
    }

    /// `x W^T + b` (then ReLU if fused) for `x` `[batch, in]` (finite).
    pub fn forward(&self, x: &ArrayRef2<f32>, par: Par) -> Result<Array2<f32>> {
        let (m, k) = x.dim();
        if k != self.in_features() {
            return Err(CoreError::ShapeMismatch {
                expected: vec![m, self.in_features()],
                found: vec![m, k],
            }
            .into());
        }
        let n = self.out_features();
        let mut out = vec![0f32; m * n];
        match &self.weights {
            Weights::Int8 { packed, epilogue } => {
                let act = match self.scheme {
                    LinearScheme::W8A8Dynamic => ActScale::PerToken,
                    _ => self.input.ok_or_else(|| {
                        CoreError::invalid(
                            "input scale",
                            "this w8a8-static layer is not calibrated: call calibrate (or set_input_scale) first",
                        )
                    })?,
                };
                let xs: Vec<f32> = x.iter().copied().collect();
                let q = QuantizedActivations::quantize(&xs, m, k, act)?;
                w8a8_with(self.isa, par, &q, packed, epilogue, &mut out)?;
            }
            Weights::Blocks { packed, bias, relu } => {
                // Rows padded with zeros to the packed width (int4 rows not a multiple of 8).
                let kp = packed.cols();
                let mut xs = vec![0f32; m * kp];
                for (dst, src) in xs.chunks_exact_mut(kp).zip(x.rows()) {
                    dst[..k].iter_mut().zip(src).for_each(|(d, &v)| *d = v);
                }
                packed.matmul_with(self.isa, par, &xs, m, &mut out)?;
                for row in out.chunks_exact_mut(n) {
                    for (v, b) in row.iter_mut().zip(bias) {
                        *v += b;
                        if *relu {
                            *v = v.max(0.0);
                        }
                    }
                }
            }
        }
        Ok(Array2::from_shape_vec((m, n), out).expect("m x n values"))
    }
}
