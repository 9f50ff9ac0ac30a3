//! Saving and loading a [`Sequential`] network as safetensors with torch's `state_dict` names, so
//! a network trained in PyTorch (`safetensors.torch.save_file(model.state_dict(), path)`) loads
//! here and one trained here loads in PyTorch (`model.load_state_dict(load_file(path))`).

use std::collections::BTreeMap;
use std::path::Path;

use modelopt_io::{Checkpoint, DType, SafetensorsWriter, TensorInfo, f32_to_bytes};
use modelopt_nn::{NnError, Sequential};
use ndarray::{ArrayD, IxDyn};

use crate::Result;

/// The tensors torch stores as integers (batch norm's counter), written as I64 like torch does.
fn is_counter(name: &str) -> bool {
    name.ends_with(".num_batches_tracked")
}

/// Writes every tensor of `network`'s `state_dict` (parameters and batch-norm buffers) to a
/// safetensors file at `path`, f32 except `num_batches_tracked` (I64, as torch); returns the file's
/// size in bytes. The file appears whole or not at all.
///
/// ```
/// use modelopt::nn::{Conv2d, Dense, Init, Layer, Sequential};
/// use modelopt::pipeline::{load_sequential, save_sequential};
/// use rand::SeedableRng;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let net = Sequential::builder(&[1, 4, 4])
///     .push(Layer::Conv2d(Conv2d::<f32>::builder(1, 2, 3).build(&mut rng)?))
///     .push(Layer::Flatten)
///     .push(Layer::Linear(Dense::new(8, 3, Init::HeNormal, &mut rng)?))
///     .build()?;
/// let path = std::env::temp_dir().join(format!("modelopt-cnn-doc-{}.safetensors", std::process::id()));
/// save_sequential(&net, &path)?;
/// let back = load_sequential(&path, &net)?;
/// assert_eq!(back.state_dict(), net.state_dict());
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), modelopt::Error>(())
/// ```
pub fn save_sequential(network: &Sequential<f32>, path: impl AsRef<Path>) -> Result<u64> {
    let path = path.as_ref();
    let state = network.state_dict();
    let mut infos = Vec::with_capacity(state.len());
    let mut payloads = Vec::with_capacity(state.len());
    for (name, value) in &state {
        if is_counter(name) {
            infos.push(TensorInfo::new(name.clone(), DType::I64, vec![]));
            let count = value.iter().next().copied().unwrap_or(0.0) as i64;
            payloads.push(count.to_le_bytes().to_vec());
        } else {
            infos.push(TensorInfo::new(
                name.clone(),
                DType::F32,
                value.shape().to_vec(),
            ));
            let v: Vec<f32> = value.iter().copied().collect();
            payloads.push(f32_to_bytes(&v));
        }
    }
    Ok(SafetensorsWriter::write_all(
        path,
        infos,
        &payloads,
        BTreeMap::new(),
    )?)
}

/// Reads a `state_dict` saved as safetensors (by [`save_sequential`] or by torch) into a copy of
/// `template`, which fixes the architecture and the names. Every tensor of the file must belong to
/// the network and every tensor of the network must be in the file with its shape (batch norm's
/// `num_batches_tracked` may be absent); errors name the tensor and the layer. The result is in
/// inference mode.
///
/// ```
/// use modelopt::nn::{Dense, Init, Layer, Sequential};
/// use modelopt::pipeline::{load_sequential, save_sequential};
/// use rand::SeedableRng;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let small = Sequential::builder(&[4]).push(Layer::Linear(Dense::<f32>::new(4, 2, Init::HeNormal, &mut rng)?)).build()?;
/// let large = Sequential::builder(&[4]).push(Layer::Linear(Dense::<f32>::new(4, 3, Init::HeNormal, &mut rng)?)).build()?;
/// let path = std::env::temp_dir().join(format!("modelopt-cnn-doc2-{}.safetensors", std::process::id()));
/// save_sequential(&small, &path)?;
/// let err = load_sequential(&path, &large).unwrap_err().to_string();
/// assert!(err.contains("0.weight"), "{err}");
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), modelopt::Error>(())
/// ```
pub fn load_sequential(
    path: impl AsRef<Path>,
    template: &Sequential<f32>,
) -> Result<Sequential<f32>> {
    let file = Checkpoint::open(path)?;
    let mut state = BTreeMap::new();
    for t in file.tensors() {
        let name = t.info.name.clone();
        let shape = t.info.shape.clone();
        let value = if t.info.dtype.is_float() || t.layout.is_some() {
            file.tensor_f32(&name)?
        } else if t.info.dtype == DType::I64 && is_counter(&name) {
            let bytes = file.tensor_bytes(&name)?;
            let raw: [u8; 8] = bytes.try_into().map_err(|_| NnError::Parameter {
                name: name.clone(),
                reason: format!("expected one I64 count, found {} bytes", bytes.len()),
            })?;
            vec![i64::from_le_bytes(raw) as f32]
        } else {
            return Err(NnError::Parameter {
                name,
                reason: format!("unsupported dtype {}", t.info.dtype.name()),
            }
            .into());
        };
        let array =
            ArrayD::from_shape_vec(IxDyn(&shape), value).map_err(|e| NnError::Parameter {
                name: name.clone(),
                reason: e.to_string(),
            })?;
        state.insert(name, array);
    }
    let mut network = template.clone();
    network.load_state_dict(&state)?;
    network.set_training(false);
    Ok(network)
}
