//! Saving and loading an [`Mlp`] as safetensors, with its weight matrices in f32, int8 or int4.

use std::collections::BTreeMap;
use std::path::Path;

use modelopt_io::{
    Checkpoint, DType, FORMAT_KEY, FORMAT_VERSION, QuantLayout, SafetensorsWriter, TensorInfo,
    f32_to_bytes,
};
use modelopt_nn::Mlp;
use modelopt_quantize::QuantScheme;
use ndarray::{ArrayD, IxDyn};

use crate::Result;

/// How the weight matrices of a saved network are stored (biases always stay f32).
///
/// The quantized forms follow the convention of `docs/formats.md`, so the file loads in Python
/// with `safetensors` and numpy alone, and in modelopt through [`Checkpoint`].
///
/// ```
/// use modelopt::pipeline::WeightFormat;
/// assert_eq!(WeightFormat::Int4Grouped { group_size: 32 }.name(), "int4-g32");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WeightFormat {
    /// Plain f32.
    F32,
    /// Symmetric int8, one scale per output channel (row).
    Int8PerChannel,
    /// Symmetric int4 in `[-7, 7]`, one scale per `group_size` consecutive inputs of a row; a
    /// row whose length `group_size` does not divide uses one group per row.
    Int4Grouped {
        /// Inputs per scale.
        group_size: usize,
    },
}

impl WeightFormat {
    /// A short name for tables (`f32`, `int8`, `int4-g32`).
    ///
    /// ```
    /// assert_eq!(modelopt::pipeline::WeightFormat::Int8PerChannel.name(), "int8");
    /// ```
    pub fn name(&self) -> String {
        match self {
            WeightFormat::F32 => "f32".into(),
            WeightFormat::Int8PerChannel => "int8".into(),
            WeightFormat::Int4Grouped { group_size } => format!("int4-g{group_size}"),
        }
    }

    /// The scheme a `[out, in]` weight matrix is quantized with, if any.
    ///
    /// ```
    /// use modelopt::pipeline::WeightFormat;
    /// assert!(WeightFormat::F32.scheme(16).is_none());
    /// assert!(WeightFormat::Int4Grouped { group_size: 32 }.scheme(16).is_some()); // one group per row
    /// ```
    pub fn scheme(&self, in_features: usize) -> Option<QuantScheme> {
        match *self {
            WeightFormat::F32 => None,
            WeightFormat::Int8PerChannel => Some(QuantScheme::int8().per_channel(0)),
            WeightFormat::Int4Grouped { group_size } => Some(
                QuantScheme::int4().per_group(1, Self::effective_group(group_size, in_features)),
            ),
        }
    }

    pub(crate) fn effective_group(group_size: usize, in_features: usize) -> usize {
        if group_size > 0 && in_features.is_multiple_of(group_size) {
            group_size
        } else {
            in_features
        }
    }

    fn layout(&self, shape: &[usize]) -> Option<QuantLayout> {
        match *self {
            WeightFormat::F32 => None,
            WeightFormat::Int8PerChannel => Some(QuantLayout::Int8PerChannel {
                shape: shape.to_vec(),
            }),
            WeightFormat::Int4Grouped { group_size } => Some(QuantLayout::Int4Grouped {
                shape: shape.to_vec(),
                group_size: Self::effective_group(group_size, shape[1]),
            }),
        }
    }
}

/// Writes `network`'s named parameters (`layers.0.weight`, ...) to a safetensors file at `path`,
/// weight matrices in `format`; returns the file's size in bytes. The file appears whole or not at
/// all (written to a temporary file, then renamed).
///
/// ```
/// use modelopt::nn::Mlp;
/// use modelopt::pipeline::{load_mlp, save_mlp, WeightFormat};
/// let net = Mlp::<f32>::builder(&[64, 32, 10]).seed(1).build()?;
/// let path = std::env::temp_dir().join(format!("modelopt-save-doc-{}.safetensors", std::process::id()));
/// let bytes = save_mlp(&net, &path, WeightFormat::Int8PerChannel)?;
/// assert!(bytes < 4 * net.parameter_count() as u64);
/// let back = load_mlp(&path, &net)?;
/// assert_eq!(back.sizes(), net.sizes());
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), modelopt::Error>(())
/// ```
pub fn save_mlp(network: &Mlp<f32>, path: impl AsRef<Path>, format: WeightFormat) -> Result<u64> {
    let path = path.as_ref();
    let params = network.named_parameters();
    let mut infos = Vec::new();
    let mut metadata = BTreeMap::new();
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    for (name, value) in &params {
        // Only weight matrices are quantized; biases stay f32.
        let quantized = match value.shape() {
            [_, cols] => format.scheme(*cols).zip(format.layout(value.shape())),
            _ => None,
        };
        match quantized {
            Some((scheme, layout)) => {
                let q = scheme.quantize(value)?;
                let (entries, (key, json)) = layout.safetensors_entries(name)?;
                infos.extend(entries);
                metadata.insert(key, json);
                payloads.push(q.packed_codes().to_vec());
                let scales: Vec<f32> = q.scales().iter().copied().collect();
                payloads.push(f32_to_bytes(&scales));
            }
            None => {
                infos.push(TensorInfo::new(
                    name.clone(),
                    DType::F32,
                    value.shape().to_vec(),
                ));
                let v: Vec<f32> = value.iter().copied().collect();
                payloads.push(f32_to_bytes(&v));
            }
        }
    }
    if format != WeightFormat::F32 {
        metadata.insert(FORMAT_KEY.to_string(), FORMAT_VERSION.to_string());
    }
    Ok(SafetensorsWriter::write_all(
        path, infos, &payloads, metadata,
    )?)
}

/// Reads a file written by [`save_mlp`] (any weight format; quantized weights are dequantized)
/// into a copy of `template`, which fixes the architecture. Errors name the missing tensor or
/// mismatched shape.
///
/// ```
/// use modelopt::nn::Mlp;
/// use modelopt::pipeline::{load_mlp, save_mlp, WeightFormat};
/// let net = Mlp::<f32>::builder(&[4, 2]).seed(3).build()?;
/// let path = std::env::temp_dir().join(format!("modelopt-load-doc-{}.safetensors", std::process::id()));
/// save_mlp(&net, &path, WeightFormat::F32)?;
/// assert_eq!(load_mlp(&path, &net)?.named_parameters(), net.named_parameters());
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), modelopt::Error>(())
/// ```
pub fn load_mlp(path: impl AsRef<Path>, template: &Mlp<f32>) -> Result<Mlp<f32>> {
    let file = Checkpoint::open(path)?;
    let mut params = BTreeMap::new();
    for (name, value) in template.named_parameters() {
        let data = file.tensor_f32(&name)?;
        let array = ArrayD::from_shape_vec(IxDyn(value.shape()), data).map_err(|_| {
            modelopt_tensor_core::CoreError::ShapeMismatch {
                expected: value.shape().to_vec(),
                found: vec![],
            }
        })?;
        params.insert(name, array);
    }
    let mut network = template.clone();
    network.load_named_parameters(&params)?;
    network.set_training(false);
    Ok(network)
}
