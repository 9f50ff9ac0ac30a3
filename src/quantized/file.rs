//! Saving and loading a [`QuantizedMlp`] as safetensors (layout in `docs/formats.md`).

use std::collections::BTreeMap;
use std::path::Path;

use modelopt_io::{DType, SafetensorsFile, SafetensorsWriter, TensorInfo, f32_to_bytes};
use modelopt_kernels::{ActScale, BlockFormat, Epilogue, Isa, PackedBlocks, PackedI8};
use modelopt_nn::Activation;
use modelopt_quantize::ggml::GgmlType;
use modelopt_tensor_core::CoreError;

use super::linear::{Weights, int4_layout};
use super::{LinearScheme, QuantizedLinear, QuantizedMlp};
use crate::Result;

/// Metadata key marking a quantized-MLP file; its value is the layout version.
pub const QUANTIZED_MLP_KEY: &str = "modelopt.quantized_mlp";

fn activation_name(a: Activation) -> &'static str {
    match a {
        Activation::Relu => "relu",
        Activation::Gelu => "gelu",
        Activation::Tanh => "tanh",
        _ => "identity",
    }
}

fn bad(name: &str, reason: impl Into<String>) -> crate::Error {
    CoreError::invalid("quantized model file", format!("{name}: {}", reason.into())).into()
}

fn ggml_type(f: BlockFormat) -> Option<GgmlType> {
    match f {
        BlockFormat::Q8_0 => Some(GgmlType::Q8_0),
        BlockFormat::Q4_0 => Some(GgmlType::Q4_0),
        BlockFormat::IQ4_NL => Some(GgmlType::IQ4_NL),
        BlockFormat::Q4_K => Some(GgmlType::Q4_K),
        _ => None,
    }
}

impl QuantizedMlp {
    /// Writes the model to `path` (whole or not at all); returns the file size in bytes.
    ///
    /// ```
    /// use modelopt::nn::Mlp;
    /// use modelopt::quantized::{LinearScheme, QuantizedMlp};
    /// use modelopt::kernels::BlockFormat;
    /// let mlp = Mlp::<f32>::builder(&[64, 32, 10]).seed(1).build()?;
    /// let q = QuantizedMlp::from_mlp(&mlp, LinearScheme::WeightOnly(BlockFormat::Q4_0))?;
    /// let path = std::env::temp_dir().join(format!("modelopt-qmlp-doc-{}.safetensors", std::process::id()));
    /// q.save(&path)?;
    /// assert_eq!(QuantizedMlp::load(&path)?, q);
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), modelopt::Error>(())
    /// ```
    pub fn save(&self, path: impl AsRef<Path>) -> Result<u64> {
        let path = path.as_ref();
        let mut infos = Vec::new();
        let mut payloads: Vec<Vec<u8>> = Vec::new();
        let mut metadata = BTreeMap::new();
        metadata.insert(QUANTIZED_MLP_KEY.to_string(), "1".to_string());
        metadata.insert("activation".into(), activation_name(self.activation).into());
        metadata.insert("layers".into(), self.layers.len().to_string());
        let mut add = |name: String, dtype: DType, shape: Vec<usize>, bytes: Vec<u8>| {
            infos.push(TensorInfo::new(name, dtype, shape));
            payloads.push(bytes);
        };
        for (i, layer) in self.layers.iter().enumerate() {
            put_linear(layer, &format!("layers.{i}."), &mut add, &mut metadata);
        }
        Ok(SafetensorsWriter::write_all(
            path, infos, &payloads, metadata,
        )?)
    }

    /// Reads a file written by [`QuantizedMlp::save`]; every tensor's dtype and shape is checked.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let f = SafetensorsFile::open(path)?;
        let meta = f.metadata();
        let get = |key: &str| {
            meta.get(key)
                .ok_or_else(|| bad(key, "missing from the metadata"))
        };
        if get(QUANTIZED_MLP_KEY)? != "1" {
            return Err(bad(QUANTIZED_MLP_KEY, "unsupported layout version"));
        }
        let activation = match get("activation")?.as_str() {
            "relu" => Activation::Relu,
            "gelu" => Activation::Gelu,
            "tanh" => Activation::Tanh,
            "identity" => Activation::Identity,
            other => return Err(bad("activation", format!("unknown `{other}`"))),
        };
        let count: usize = get("layers")?
            .parse()
            .map_err(|_| bad("layers", "not a number"))?;
        let layers = (0..count)
            .map(|i| get_linear(&f, &format!("layers.{i}.")))
            .collect::<Result<Vec<_>>>()?;
        QuantizedMlp::from_layers(layers, activation)
    }
}

/// Adds linear layer `layer`'s tensors and metadata under `prefix` (`layers.3.`): its scheme,
/// inputs, fused ReLU, codes, scales, bias and calibrated input scale.
pub(crate) fn put_linear(
    layer: &QuantizedLinear,
    prefix: &str,
    add: &mut impl FnMut(String, DType, Vec<usize>, Vec<u8>),
    metadata: &mut BTreeMap<String, String>,
) {
    let (n, k) = (layer.out_features(), layer.in_features());
    let p = |s: &str| format!("{prefix}{s}");
    metadata.insert(p("scheme"), layer.scheme.name());
    metadata.insert(p("in_features"), k.to_string());
    metadata.insert(p("relu"), layer.relu().to_string());
    match &layer.weights {
        Weights::Int8 { packed, epilogue } => {
            let codes = packed.to_rows().into_iter().map(|c| c as u8).collect();
            add(p("weight"), DType::I8, vec![n, k], codes);
            add(
                p("weight_scale"),
                DType::F32,
                vec![n],
                f32_to_bytes(epilogue.weight_scales()),
            );
            let bias = epilogue
                .bias_values()
                .map(<[f32]>::to_vec)
                .unwrap_or(vec![0.0; n]);
            add(p("bias"), DType::F32, vec![n], f32_to_bytes(&bias));
            if let Some(ActScale::PerTensor { scale, zero_point }) = layer.input {
                add(
                    p("input_scale"),
                    DType::F32,
                    vec![1],
                    f32_to_bytes(&[scale]),
                );
                add(
                    p("input_zero_point"),
                    DType::I32,
                    vec![1],
                    zero_point.to_le_bytes().to_vec(),
                );
            }
        }
        Weights::Blocks { packed, bias, .. } => {
            if let Some(bytes) = packed.to_ggml() {
                let row = bytes.len() / n;
                add(p("weight"), DType::U8, vec![n, row], bytes);
            } else if let Some((codes, scales)) = packed.to_int4() {
                let nibbles = codes
                    .chunks(2)
                    .map(|c| (c[0] as u8 & 15) | ((*c.get(1).unwrap_or(&0) as u8 & 15) << 4))
                    .collect();
                add(
                    p("weight"),
                    DType::U8,
                    vec![n, packed.cols().div_ceil(2)],
                    nibbles,
                );
                let groups = scales.len() / n;
                add(
                    p("weight_scale"),
                    DType::F32,
                    vec![n, groups],
                    f32_to_bytes(&scales),
                );
            }
            add(p("bias"), DType::F32, vec![n], f32_to_bytes(bias));
        }
    }
}

/// Reads the linear layer [`put_linear`] wrote under `prefix`, checking every tensor's dtype and
/// shape.
pub(crate) fn get_linear(f: &SafetensorsFile, prefix: &str) -> Result<QuantizedLinear> {
    let meta = f.metadata();
    let get = |key: &str| {
        meta.get(key)
            .ok_or_else(|| bad(key, "missing from the metadata"))
    };
    let tensor = |name: &str, dtype: DType, shape: &[usize]| -> Result<&[u8]> {
        let info = f.tensor(name)?;
        if info.dtype != dtype || info.shape != shape {
            return Err(bad(
                name,
                format!(
                    "expected {dtype:?} {shape:?}, found {:?} {:?}",
                    info.dtype, info.shape
                ),
            ));
        }
        Ok(f.tensor_bytes(name)?)
    };
    let f32s = |b: &[u8]| {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect::<Vec<_>>()
    };
    let p = |s: &str| format!("{prefix}{s}");
    let scheme = LinearScheme::parse(get(&p("scheme"))?)?;
    let k: usize = get(&p("in_features"))?
        .parse()
        .map_err(|_| bad(&p("in_features"), "not a number"))?;
    let n = f.tensor(&p("bias"))?.shape.first().copied().unwrap_or(0);
    let bias = f32s(tensor(&p("bias"), DType::F32, &[n])?);
    let (weights, input) = match scheme {
        LinearScheme::W8A8Dynamic | LinearScheme::W8A8Static => {
            let codes: Vec<i8> = tensor(&p("weight"), DType::I8, &[n, k])?
                .iter()
                .map(|&b| b as i8)
                .collect();
            let scales = f32s(tensor(&p("weight_scale"), DType::F32, &[n])?);
            let input = if f.tensor(&p("input_scale")).is_ok() {
                let s = f32s(tensor(&p("input_scale"), DType::F32, &[1])?)[0];
                let z = tensor(&p("input_zero_point"), DType::I32, &[1])?;
                Some(ActScale::per_tensor(
                    s,
                    i32::from_le_bytes([z[0], z[1], z[2], z[3]]),
                )?)
            } else {
                None
            };
            let w = Weights::Int8 {
                packed: PackedI8::new(&codes, n, k)?,
                epilogue: Epilogue::new(scales)?.bias(bias)?,
            };
            (w, input)
        }
        LinearScheme::WeightOnly(format) => {
            let packed = match (ggml_type(format), format) {
                (Some(ty), _) => {
                    let row = ty.row_bytes(k)?;
                    PackedBlocks::from_ggml(ty, tensor(&p("weight"), DType::U8, &[n, row])?, n, k)?
                }
                (None, BlockFormat::Int4 { group }) => {
                    let (kp, g) =
                        int4_layout(k, group).map_err(|e| bad(&p("scheme"), e.to_string()))?;
                    let bytes = tensor(&p("weight"), DType::U8, &[n, kp.div_ceil(2)])?;
                    let nib = |v: u8| ((v << 4) as i8) >> 4;
                    let codes: Vec<i8> = (0..n * kp)
                        .map(|e| {
                            let b = bytes[e / 2];
                            nib(if e % 2 == 0 { b & 15 } else { b >> 4 })
                        })
                        .collect();
                    let scales = f32s(tensor(&p("weight_scale"), DType::F32, &[n, kp / g])?);
                    PackedBlocks::int4(&codes, &scales, n, kp, g)?
                }
                _ => return Err(bad(&p("scheme"), "no loader for this format")),
            };
            if let Some(j) = bias.iter().position(|b| !b.is_finite()) {
                return Err(bad(&p("bias"), format!("value {j} is not finite")));
            }
            (
                Weights::Blocks {
                    packed,
                    bias,
                    relu: false,
                },
                None,
            )
        }
    };
    let mut layer = QuantizedLinear {
        in_features: k,
        scheme,
        weights,
        input,
        isa: Isa::best(),
    };
    if let Some(r) = meta.get(&p("relu")) {
        layer.set_relu(
            r.parse()
                .map_err(|_| bad(&p("relu"), "not true or false"))?,
        );
    }
    Ok(layer)
}
