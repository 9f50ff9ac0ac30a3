//! How a granularity cuts a row-major tensor into runs of contiguous elements sharing parameters.

use modelopt_tensor_core::{CoreError, Granularity};

use crate::Result;

/// The runs of a standard-layout tensor: `(start, len, param_index)` triples covering it in order.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Runs {
    /// Parameter set `p` covers exactly `[p * block, (p + 1) * block)`: per tensor, per channel
    /// along the outermost axis, per group along the innermost axis.
    Blocks { block: usize, count: usize },
    /// Per channel with leading dimensions: run `(o, c)` is `inner` elements with parameters `c`.
    Channels {
        outer: usize,
        len: usize,
        inner: usize,
    },
    /// Per group along a non-innermost axis: each element has its own parameter index.
    StridedGroups {
        outer: usize,
        len: usize,
        inner: usize,
        group: usize,
    },
}

impl Runs {
    /// Runs of a tensor of `shape` under `granularity` (which must have passed `check(shape)`).
    pub(crate) fn new(shape: &[usize], granularity: Granularity) -> Result<Runs> {
        granularity.check(shape)?;
        let n: usize = shape.iter().product();
        let split = |axis: usize| {
            let outer: usize = shape[..axis].iter().product();
            let inner: usize = shape[axis + 1..].iter().product();
            (outer, shape[axis], inner)
        };
        Ok(match granularity {
            Granularity::PerTensor => Runs::Blocks { block: n, count: 1 },
            Granularity::PerChannel { axis } => match split(axis) {
                (1, len, inner) => Runs::Blocks {
                    block: inner,
                    count: len,
                },
                (outer, len, inner) => Runs::Channels { outer, len, inner },
            },
            Granularity::PerGroup { axis, group_size } => match split(axis) {
                (_, _, 1) => Runs::Blocks {
                    block: group_size,
                    count: n / group_size,
                },
                (outer, len, inner) => Runs::StridedGroups {
                    outer,
                    len,
                    inner,
                    group: group_size,
                },
            },
            other => {
                return Err(CoreError::invalid(
                    "granularity",
                    format!("{other:?} is not supported by uniform quantization"),
                )
                .into());
            }
        })
    }

    /// Calls `f(start, len, param)` for every run, in memory order.
    pub(crate) fn for_each(&self, mut f: impl FnMut(usize, usize, usize)) {
        match *self {
            Runs::Blocks { block, count } => (0..count).for_each(|p| f(p * block, block, p)),
            Runs::Channels { outer, len, inner } => {
                for o in 0..outer {
                    for c in 0..len {
                        f((o * len + c) * inner, inner, c);
                    }
                }
            }
            Runs::StridedGroups {
                outer,
                len,
                inner,
                group,
            } => {
                let groups = len / group;
                for o in 0..outer {
                    for c in 0..len {
                        let base = (o * groups + c / group) * inner;
                        let start = (o * len + c) * inner;
                        (0..inner).for_each(|i| f(start + i, 1, base + i));
                    }
                }
            }
        }
    }
}
