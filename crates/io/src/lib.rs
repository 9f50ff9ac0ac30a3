//! # modelopt-io
//!
//! Model files: safetensors and GGUF.
