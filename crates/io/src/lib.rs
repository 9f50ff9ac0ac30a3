//! # modelopt-io
//!
//! Model files for modelopt: read and write safetensors and GGUF, one tensor at a time.
//!
//! - [`SafetensorsFile`] / [`SafetensorsWriter`]: memory-mapped, validated reading (F32, F16, BF16,
//!   F64 to f32; integer tensors' bytes untouched) and streaming writing.
//! - [`GgufFile`] / [`GgufWriter`]: GGUF v3 with metadata of every [`GgufType`], tensor infos
//!   (dimensions reversed from the row-major shape), `general.alignment` padding and
//!   `general.quantization_version = 2`; tensor data of any [`DType`] including GGML block types.
//! - [`QuantLayout`]: the quantized-safetensors convention of `docs/formats.md`.
//! - [`Checkpoint`]: either format, with quantized tensors seen through their logical type.
//! - [`Imatrix`]: llama.cpp's legacy `imatrix.dat` importance matrices, read and written.
//! - [`AtomicFile`]: every writer goes through a temporary file renamed into place on success;
//!   [`TensorOut`] fills one tensor in parts, from several threads, at its place in the file.
//!
//! Readers validate the whole header against the file before touching data: a corrupt, truncated
//! or hostile file is an [`IoError::Format`] naming the file and the problem, never a panic, and no
//! allocation is sized by an unchecked header field.
//!
//! ```
//! use modelopt_io::{Checkpoint, DType, GgufWriter, TensorInfo, f32_to_bytes};
//! let path = std::env::temp_dir().join(format!("modelopt-io-doc-{}.gguf", std::process::id()));
//! let mut w = GgufWriter::create(&path, vec![], vec![TensorInfo::new("w", DType::F16, vec![2])])?;
//! let halves: Vec<u8> = [1.0f32, -2.0].iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect();
//! w.write_tensor("w", &halves)?;
//! w.finish()?;
//! assert_eq!(Checkpoint::open(&path)?.tensor_f32("w")?, vec![1.0, -2.0]);
//! # std::fs::remove_file(&path).unwrap();
//! # Ok::<(), modelopt_io::IoError>(())
//! ```

mod atomic;
mod checkpoint;
mod codebook_layout;
mod dtype;
mod error;
mod gguf_reader;
mod gguf_value;
mod gguf_writer;
mod imatrix;
mod mapped;
mod quantized;
mod safetensors_reader;
mod safetensors_writer;
mod tensor_info;
mod tensor_out;

pub use atomic::{AtomicFile, same_file};
pub use checkpoint::{Checkpoint, CheckpointTensor, FileFormat};
pub use codebook_layout::{
    ABSMAX_CODE_SUFFIX, ABSMAX_OFFSET_SUFFIX, ABSMAX_SUFFIX, ABSMAX2_SUFFIX, CODEBOOK_SUFFIX,
};
pub use dtype::{DType, decode_f32, element_count, encode_f32, f32_to_bytes};
pub use error::{IoError, Result};
pub use gguf_reader::{GGUF_DEFAULT_ALIGNMENT, GgufFile};
pub use gguf_value::{GgufType, GgufValue};
pub use gguf_writer::{GGML_QUANTIZATION_VERSION, GGUF_VERSION, GgufWriter};
pub use imatrix::{Imatrix, ImatrixEntry};
pub use quantized::{
    FORMAT_KEY, FORMAT_VERSION, QUANT_KEY_PREFIX, QuantLayout, SCALE_SUFFIX, quant_layouts,
};
pub use safetensors_reader::SafetensorsFile;
pub use safetensors_writer::SafetensorsWriter;
pub use tensor_info::TensorInfo;
pub use tensor_out::TensorOut;
