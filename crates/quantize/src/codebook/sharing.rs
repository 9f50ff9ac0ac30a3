//! Which elements share a codebook or a scale.

use modelopt_tensor_core::{CoreError, Granularity};

use crate::Result;
use crate::layout::Runs;

/// Which elements of a tensor share one codebook (or one scale).
///
/// ```
/// use modelopt_quantize::codebook::Sharing;
/// assert_eq!(Sharing::PerChannel { axis: 0 }.count(&[3, 8])?, 3);
/// assert_eq!(Sharing::PerGroup { axis: 1, group_size: 4 }.count(&[3, 8])?, 6);
/// assert_eq!(Sharing::Blocks { size: 64 }.count(&[3, 50])?, 3); // 150 elements, last block partial
/// assert!(Sharing::PerGroup { axis: 1, group_size: 3 }.count(&[3, 8]).is_err());
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Sharing {
    /// The whole tensor.
    #[default]
    PerTensor,
    /// Each index along `axis` (axis 0 of `[out, in]`: per output channel).
    PerChannel {
        /// The channel axis.
        axis: usize,
    },
    /// Each `group_size` consecutive elements along `axis` (must divide it).
    PerGroup {
        /// The axis the groups run along.
        axis: usize,
        /// Elements per group.
        group_size: usize,
    },
    /// Each `size` consecutive elements of the flattened row-major tensor, the last block
    /// possibly shorter (bitsandbytes' blockwise layout).
    Blocks {
        /// Elements per block (at least 1).
        size: usize,
    },
}

impl Sharing {
    /// Number of sets a tensor of `shape` has; errors on a bad axis or group size.
    pub fn count(&self, shape: &[usize]) -> Result<usize> {
        let n: usize = shape.iter().product();
        match *self {
            Sharing::Blocks { size: 0 } => {
                Err(CoreError::invalid("block_size", "must be at least 1").into())
            }
            Sharing::Blocks { size } => Ok(n.div_ceil(size)),
            other => Ok(other.granularity().num_groups(shape)?),
        }
    }

    fn granularity(&self) -> Granularity {
        match *self {
            Sharing::PerTensor | Sharing::Blocks { .. } => Granularity::PerTensor,
            Sharing::PerChannel { axis } => Granularity::PerChannel { axis },
            Sharing::PerGroup { axis, group_size } => Granularity::PerGroup { axis, group_size },
        }
    }

    /// Calls `f(start, len, set)` for every contiguous run of a row-major tensor of `shape`, in
    /// memory order.
    pub(crate) fn for_each_run(
        &self,
        shape: &[usize],
        mut f: impl FnMut(usize, usize, usize),
    ) -> Result<()> {
        let n: usize = shape.iter().product();
        match *self {
            Sharing::Blocks { size } => {
                self.count(shape)?;
                let mut s = 0;
                let mut p = 0;
                while s < n {
                    let len = size.min(n - s);
                    f(s, len, p);
                    s += len;
                    p += 1;
                }
            }
            other => Runs::new(shape, other.granularity())?.for_each(f),
        }
        Ok(())
    }

    /// Whether every set is one contiguous run, set `p` before set `p + 1`.
    pub(crate) fn is_contiguous(&self, shape: &[usize]) -> bool {
        match *self {
            Sharing::PerTensor => true,
            Sharing::Blocks { size } => shape.iter().product::<usize>() % size == 0,
            Sharing::PerChannel { axis } => {
                shape[..axis.min(shape.len())].iter().product::<usize>() == 1
            }
            Sharing::PerGroup { axis, .. } => axis + 1 == shape.len(),
        }
    }
}
