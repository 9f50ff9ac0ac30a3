use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::{
    DType, GgufFile, IoError, QuantLayout, Result, SafetensorsFile, TensorInfo, decode_f32,
    quant_layouts,
};

/// A model file format.
///
/// ```
/// use modelopt_io::FileFormat;
/// assert_eq!(FileFormat::from_extension("out/model.GGUF"), Some(FileFormat::Gguf));
/// assert_eq!(FileFormat::from_extension("m.safetensors"), Some(FileFormat::Safetensors));
/// assert_eq!(FileFormat::from_extension("m.bin"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileFormat {
    /// Hugging Face safetensors.
    Safetensors,
    /// GGUF (llama.cpp).
    Gguf,
}

impl FileFormat {
    /// The format a path's extension names (`.gguf`, `.safetensors`, case-insensitive).
    ///
    /// ```
    /// assert_eq!(modelopt_io::FileFormat::from_extension("x"), None);
    /// ```
    pub fn from_extension(path: impl AsRef<Path>) -> Option<Self> {
        let ext = path.as_ref().extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "gguf" => Some(FileFormat::Gguf),
            "safetensors" => Some(FileFormat::Safetensors),
            _ => None,
        }
    }

    /// The format of the file at `path`, from its first bytes (GGUF magic, else safetensors).
    ///
    /// ```
    /// assert!(modelopt_io::FileFormat::detect("/nonexistent").is_err());
    /// ```
    pub fn detect(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut head = [0u8; 4];
        let mut f = std::fs::File::open(path).map_err(|e| IoError::io(path, e))?;
        let n = f.read(&mut head).map_err(|e| IoError::io(path, e))?;
        Ok(if n == 4 && &head == b"GGUF" {
            FileFormat::Gguf
        } else {
            FileFormat::Safetensors
        })
    }

    /// `"safetensors"` or `"gguf"`.
    ///
    /// ```
    /// assert_eq!(modelopt_io::FileFormat::Gguf.name(), "gguf");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Safetensors => "safetensors",
            FileFormat::Gguf => "gguf",
        }
    }
}

/// One tensor of a [`Checkpoint`] as a model sees it: logical dtype and shape (a quantized
/// safetensors tensor shows its block type and f32 shape), and the bytes it takes on disk.
///
/// ```no_run
/// let c = modelopt_io::Checkpoint::open("model.safetensors")?;
/// for t in c.tensors() { println!("{} {} {:?} {}", t.info.name, t.info.dtype, t.info.shape, t.stored_bytes); }
/// # Ok::<(), modelopt_io::IoError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointTensor {
    /// Name, logical dtype and logical shape.
    pub info: TensorInfo,
    /// Bytes the tensor occupies in the file (codes and companions).
    pub stored_bytes: usize,
    /// How it is quantized, for a tensor stored by the quantized-safetensors convention.
    pub layout: Option<QuantLayout>,
}

impl CheckpointTensor {
    /// The type to show: the scheme (`"int8"`, `"q4_0"`) of a quantized tensor, else the dtype.
    ///
    /// ```
    /// use modelopt_io::{CheckpointTensor, DType, TensorInfo};
    /// let t = CheckpointTensor { info: TensorInfo::new("w", DType::F16, vec![2]), stored_bytes: 4, layout: None };
    /// assert_eq!(t.type_name(), "F16");
    /// ```
    pub fn type_name(&self) -> &'static str {
        self.layout
            .as_ref()
            .map_or_else(|| self.info.dtype.name(), QuantLayout::name)
    }

    /// Whether [`Checkpoint::tensor_f32`] can read it (float or quantized).
    ///
    /// ```
    /// use modelopt_io::{CheckpointTensor, DType, TensorInfo};
    /// let t = CheckpointTensor { info: TensorInfo::new("ids", DType::I64, vec![2]), stored_bytes: 16, layout: None };
    /// assert!(!t.is_float());
    /// ```
    pub fn is_float(&self) -> bool {
        self.layout.is_some() || self.info.dtype.is_float()
    }
}

/// A safetensors or GGUF file opened for reading, with quantized tensors seen through their
/// logical type (see docs/formats.md for the safetensors convention).
///
/// ```
/// use modelopt_io::{Checkpoint, DType, SafetensorsWriter, TensorInfo, f32_to_bytes};
/// let path = std::env::temp_dir().join(format!("modelopt-ckpt-doc-{}.safetensors", std::process::id()));
/// let mut w = SafetensorsWriter::create(&path, vec![TensorInfo::new("w", DType::F32, vec![1, 2])], Default::default())?;
/// w.write_tensor("w", &f32_to_bytes(&[0.5, 1.5]))?;
/// w.finish()?;
/// let c = Checkpoint::open(&path)?;
/// assert_eq!(c.tensors()[0].stored_bytes, 8);
/// assert_eq!(c.tensor_f32("w")?, vec![0.5, 1.5]);
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), modelopt_io::IoError>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Checkpoint {
    /// A safetensors file and the quantized tensors its metadata declares.
    Safetensors(SafetensorsFile, BTreeMap<String, QuantLayout>),
    /// A GGUF file.
    Gguf(GgufFile),
}

impl Checkpoint {
    /// Opens `path`, detecting the format from its first bytes, and checks any quantized-tensor
    /// declarations against the stored tensors.
    ///
    /// ```
    /// assert!(modelopt_io::Checkpoint::open("/nonexistent.gguf").is_err());
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        match FileFormat::detect(path)? {
            FileFormat::Gguf => Ok(Checkpoint::Gguf(GgufFile::open(path)?)),
            FileFormat::Safetensors => {
                let f = SafetensorsFile::open(path)?;
                let layouts = quant_layouts(f.metadata())
                    .map_err(|e| IoError::format(path, e.to_string()))?;
                for (name, q) in &layouts {
                    let (infos, _) = q
                        .safetensors_entries(name)
                        .map_err(|e| IoError::format(path, format!("tensor `{name}`: {e}")))?;
                    for want in infos {
                        let stored = f.tensor(&want.name).map_err(|_| {
                            IoError::format(
                                path,
                                format!(
                                    "quantized tensor `{name}` ({}) has no stored tensor `{}`",
                                    q.name(),
                                    want.name
                                ),
                            )
                        })?;
                        if stored.dtype != want.dtype || stored.shape != want.shape {
                            return Err(IoError::format(
                                path,
                                format!(
                                    "tensor `{}`: stored as {} {:?}, its {} descriptor needs {} {:?}",
                                    want.name,
                                    stored.dtype,
                                    stored.shape,
                                    q.name(),
                                    want.dtype,
                                    want.shape
                                ),
                            ));
                        }
                    }
                }
                Ok(Checkpoint::Safetensors(f, layouts))
            }
        }
    }

    /// The file's format.
    ///
    /// ```no_run
    /// let c = modelopt_io::Checkpoint::open("model.gguf")?;
    /// assert_eq!(c.format(), modelopt_io::FileFormat::Gguf);
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn format(&self) -> FileFormat {
        match self {
            Checkpoint::Safetensors(..) => FileFormat::Safetensors,
            Checkpoint::Gguf(_) => FileFormat::Gguf,
        }
    }

    /// The file's path.
    ///
    /// ```no_run
    /// let c = modelopt_io::Checkpoint::open("model.gguf")?;
    /// println!("{}", c.path().display());
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn path(&self) -> &Path {
        match self {
            Checkpoint::Safetensors(f, _) => f.path(),
            Checkpoint::Gguf(f) => f.path(),
        }
    }

    /// Every tensor with its logical dtype and shape, in file order.
    ///
    /// ```no_run
    /// let n = modelopt_io::Checkpoint::open("model.gguf")?.tensors().len();
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn tensors(&self) -> Vec<CheckpointTensor> {
        let stored = |t: &TensorInfo| t.bytes().unwrap_or(0); // ok: validated at open
        match self {
            Checkpoint::Gguf(f) => f
                .tensors()
                .iter()
                .map(|t| CheckpointTensor {
                    info: t.clone(),
                    stored_bytes: stored(t),
                    layout: None,
                })
                .collect(),
            Checkpoint::Safetensors(f, layouts) => {
                let companions = companion_names(layouts);
                f.tensors()
                    .iter()
                    .filter(|t| !companions.contains(&t.name))
                    .map(|t| match layouts.get(&t.name) {
                        Some(q) => {
                            let extra: usize = q
                                .companions()
                                .iter()
                                .filter_map(|(suffix, _, _)| {
                                    f.tensor(&format!("{}{suffix}", t.name)).ok().map(stored)
                                })
                                .sum();
                            CheckpointTensor {
                                info: TensorInfo::new(
                                    t.name.clone(),
                                    q.dtype(),
                                    q.shape().to_vec(),
                                ),
                                stored_bytes: stored(t) + extra,
                                layout: Some(q.clone()),
                            }
                        }
                        None => CheckpointTensor {
                            info: t.clone(),
                            stored_bytes: stored(t),
                            layout: None,
                        },
                    })
                    .collect()
            }
        }
    }

    /// The stored bytes of the companion tensors of quantized tensor `name` (in
    /// [`QuantLayout::companions`] order; empty for an unquantized tensor).
    ///
    /// ```no_run
    /// let c = modelopt_io::Checkpoint::open("model-int8.safetensors")?;
    /// let scales: Vec<&[u8]> = c.companion_bytes("encoder.weight")?;
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn companion_bytes(&self, name: &str) -> Result<Vec<&[u8]>> {
        match self {
            Checkpoint::Safetensors(f, layouts) => match layouts.get(name) {
                Some(q) => q
                    .companions()
                    .iter()
                    .map(|(suffix, _, _)| f.tensor_bytes(&format!("{name}{suffix}")))
                    .collect(),
                None => Ok(vec![]),
            },
            Checkpoint::Gguf(_) => Ok(vec![]),
        }
    }

    /// The stored bytes of tensor `name`, untouched.
    ///
    /// ```no_run
    /// let c = modelopt_io::Checkpoint::open("model.safetensors")?;
    /// let raw = c.tensor_bytes("position_ids")?;
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        match self {
            Checkpoint::Safetensors(f, _) => f.tensor_bytes(name),
            Checkpoint::Gguf(f) => f.tensor_bytes(name),
        }
    }

    /// Tensor `name` as f32 (row-major, logical shape): plain floats converted, quantized tensors
    /// dequantized. Integer tensors are an error.
    ///
    /// ```no_run
    /// let w = modelopt_io::Checkpoint::open("model.gguf")?.tensor_f32("output.weight")?;
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        match self {
            Checkpoint::Gguf(f) => f.tensor_f32(name),
            Checkpoint::Safetensors(f, layouts) => match layouts.get(name) {
                None => f.tensor_f32(name),
                Some(q) => {
                    let companions = self.companion_bytes(name)?;
                    q.dequantize(f.tensor_bytes(name)?, &companions)
                        .map_err(|e| IoError::format(f.path(), format!("tensor `{name}`: {e}")))
                }
            },
        }
    }

    /// Elements `first..first + out.len()` of tensor `name`, a plain float tensor (F32, F16,
    /// BF16, F64) stored as such, read from the file with `pread` instead of the map and
    /// converted to f32: the way to stream a large tensor through small buffers, with one copy
    /// and no page faults (nothing stays mapped, nothing to release). F32 on a little-endian
    /// machine is read straight into `out`.
    ///
    /// ```
    /// use modelopt_io::{Checkpoint, DType, SafetensorsWriter, TensorInfo, f32_to_bytes};
    /// let path = std::env::temp_dir().join(format!("modelopt-readat-doc-{}.safetensors", std::process::id()));
    /// let mut w = SafetensorsWriter::create(&path, vec![TensorInfo::new("w", DType::F32, vec![4])], Default::default())?;
    /// w.write_tensor("w", &f32_to_bytes(&[1.0, 2.0, 3.0, 4.0]))?;
    /// w.finish()?;
    /// let c = Checkpoint::open(&path)?;
    /// let mut out = [0f32; 2];
    /// c.read_f32_at("w", 1, &mut out)?;
    /// assert_eq!(out, [2.0, 3.0]);
    /// assert!(c.read_f32_at("w", 3, &mut out).is_err()); // past the end
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn read_f32_at(&self, name: &str, first: usize, out: &mut [f32]) -> Result<()> {
        let (info, path) = match self {
            Checkpoint::Safetensors(f, layouts) if !layouts.contains_key(name) => {
                (f.info(name)?, f.path())
            }
            Checkpoint::Gguf(f) => (f.info(name)?, f.path()),
            Checkpoint::Safetensors(f, _) => {
                return Err(IoError::format(
                    f.path(),
                    format!("tensor `{name}` is quantized: read it with tensor_f32"),
                ));
            }
        };
        let dtype = info.dtype;
        let eb = match dtype.element_bytes() {
            Some(eb) if dtype.is_float() => eb,
            _ => {
                return Err(IoError::format(
                    path,
                    format!("tensor `{name}`: {dtype} is not a plain float type"),
                ));
            }
        };
        let bad = || IoError::format(path, format!("tensor `{name}`: element range overflows"));
        let offset = first.checked_mul(eb).ok_or_else(bad)?;
        let read = |buf: &mut [u8]| match self {
            Checkpoint::Safetensors(f, _) => f.read_tensor_at(name, offset, buf),
            Checkpoint::Gguf(f) => f.read_tensor_at(name, offset, buf),
        };
        if dtype == DType::F32 && cfg!(target_endian = "little") {
            return read(bytemuck::cast_slice_mut(out));
        }
        let mut raw = vec![0u8; out.len().checked_mul(eb).ok_or_else(bad)?];
        read(&mut raw)?;
        decode_f32(dtype, &raw, out)
    }

    /// Drops the memory pages of tensor `name` after processing it.
    ///
    /// ```no_run
    /// modelopt_io::Checkpoint::open("model.gguf")?.release("output.weight")?;
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn release(&self, name: &str) -> Result<()> {
        match self {
            Checkpoint::Safetensors(f, layouts) => {
                if let Some(q) = layouts.get(name) {
                    for (suffix, _, _) in q.companions() {
                        f.release(&format!("{name}{suffix}"))?;
                    }
                }
                f.release(name)
            }
            Checkpoint::Gguf(f) => f.release(name),
        }
    }
}

/// Names of the companion tensors (`W.scale`) of the quantized tensors.
fn companion_names(layouts: &BTreeMap<String, QuantLayout>) -> std::collections::HashSet<String> {
    layouts
        .iter()
        .flat_map(|(name, q)| {
            q.companions()
                .into_iter()
                .map(move |(suffix, _, _)| format!("{name}{suffix}"))
        })
        .collect()
}
