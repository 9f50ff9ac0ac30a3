use crate::{DType, Result};

/// A stored tensor's name, element type and row-major shape.
///
/// ```
/// use modelopt_io::{DType, TensorInfo};
/// let t = TensorInfo::new("w", DType::F16, vec![4, 8]);
/// assert_eq!(t.elements()?, 32);
/// assert_eq!(t.bytes()?, 64);
/// # Ok::<(), modelopt_io::IoError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name, as in the file.
    pub name: String,
    /// Its element type.
    pub dtype: DType,
    /// Its shape, row-major (the last dimension is the row; GGUF stores it reversed).
    pub shape: Vec<usize>,
}

impl TensorInfo {
    /// A tensor description.
    ///
    /// ```
    /// let t = modelopt_io::TensorInfo::new("b", modelopt_io::DType::I64, vec![3]);
    /// assert_eq!(t.name, "b");
    /// ```
    pub fn new(name: impl Into<String>, dtype: DType, shape: Vec<usize>) -> Self {
        TensorInfo {
            name: name.into(),
            dtype,
            shape,
        }
    }

    /// Number of elements (overflow checked).
    ///
    /// ```
    /// let t = modelopt_io::TensorInfo::new("s", modelopt_io::DType::F32, vec![]);
    /// assert_eq!(t.elements()?, 1);
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn elements(&self) -> Result<usize> {
        crate::element_count(&self.shape)
    }

    /// Bytes of the stored data (overflow checked; block types need whole blocks per row).
    ///
    /// ```
    /// use modelopt_io::{DType, TensorInfo};
    /// use modelopt_quantize::ggml::GgmlType;
    /// let t = TensorInfo::new("w", DType::Ggml(GgmlType::Q4_0), vec![2, 32]);
    /// assert_eq!(t.bytes()?, 36);
    /// # Ok::<(), modelopt_io::IoError>(())
    /// ```
    pub fn bytes(&self) -> Result<usize> {
        self.dtype.storage_bytes(&self.shape)
    }
}
