use crate::{CoreError, Result};

/// Which elements share one set of quantization parameters (or one pruning decision unit).
///
/// - `PerTensor`: the whole tensor shares one scale.
/// - `PerChannel { axis }`: each index along `axis` (e.g. an output channel, axis 0 of a
///   `[out, in]` weight) has its own scale, computed over all other dimensions.
/// - `PerGroup { axis, group_size }`: each run of `group_size` consecutive elements along `axis`
///   (for a row-major `[out, in]` weight, `axis = 1`: the GPTQ/AWQ/GGML convention) has its own
///   scale.
///
/// ```
/// use modelopt_tensor_core::Granularity;
/// let g = Granularity::PerGroup { axis: 1, group_size: 32 };
/// assert_eq!(g.num_groups(&[4, 64])?, 8);
/// assert!(g.check(&[4, 48]).is_err()); // 32 does not divide 48
/// # Ok::<(), modelopt_tensor_core::CoreError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Granularity {
    /// One parameter set for the whole tensor.
    #[default]
    PerTensor,
    /// One parameter set per index along `axis`.
    PerChannel {
        /// The channel axis.
        axis: usize,
    },
    /// One parameter set per `group_size` consecutive elements along `axis`.
    PerGroup {
        /// The axis the groups run along.
        axis: usize,
        /// Elements per group; must divide the axis length.
        group_size: usize,
    },
}

impl Granularity {
    /// Checks the granularity against a shape: the axis exists and the group size divides it.
    ///
    /// ```
    /// use modelopt_tensor_core::{CoreError, Granularity};
    /// let err = Granularity::PerChannel { axis: 2 }.check(&[3, 4]).unwrap_err();
    /// assert_eq!(err, CoreError::AxisOutOfRange { axis: 2, ndim: 2 });
    /// ```
    pub fn check(&self, shape: &[usize]) -> Result<()> {
        match *self {
            Granularity::PerTensor => Ok(()),
            Granularity::PerChannel { axis } => check_axis(axis, shape.len()),
            Granularity::PerGroup { axis, group_size } => {
                check_axis(axis, shape.len())?;
                if group_size == 0 {
                    return Err(CoreError::invalid("group_size", "must be at least 1"));
                }
                if !shape[axis].is_multiple_of(group_size) {
                    return Err(CoreError::invalid(
                        "group_size",
                        format!(
                            "{group_size} does not divide the length {} of axis {axis} (shape {shape:?})",
                            shape[axis]
                        ),
                    ));
                }
                Ok(())
            }
        }
    }

    /// How many parameter sets a tensor of `shape` needs under this granularity.
    ///
    /// ```
    /// use modelopt_tensor_core::Granularity;
    /// assert_eq!(Granularity::PerChannel { axis: 1 }.num_groups(&[2, 5])?, 5);
    /// assert_eq!(Granularity::PerTensor.num_groups(&[2, 5])?, 1);
    /// # Ok::<(), modelopt_tensor_core::CoreError>(())
    /// ```
    pub fn num_groups(&self, shape: &[usize]) -> Result<usize> {
        self.check(shape)?;
        let n: usize = shape.iter().product();
        Ok(match *self {
            Granularity::PerTensor => 1,
            Granularity::PerChannel { axis } => shape[axis],
            Granularity::PerGroup {
                axis: _,
                group_size,
            } => n / group_size,
        })
    }
}

/// Returns an error unless `axis < ndim`.
///
/// ```
/// assert!(modelopt_tensor_core::stats::check_axis(1, 2).is_ok());
/// ```
pub fn check_axis(axis: usize, ndim: usize) -> Result<()> {
    if axis < ndim {
        Ok(())
    } else {
        Err(CoreError::AxisOutOfRange { axis, ndim })
    }
}
