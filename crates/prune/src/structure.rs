//! What a pruning unit is: a weight, a channel along an axis, a group of N:M, a block.

use std::str::FromStr;

use modelopt_tensor_core::CoreError;

use crate::{PruneError, Result};

/// The norm that turns a channel's element scores into one channel score (as
/// `torch.nn.utils.prune.ln_structured`'s `n`).
///
/// ```
/// use modelopt_prune::Norm;
/// assert_eq!("inf".parse::<Norm>()?, Norm::Inf);
/// assert_eq!("2".parse::<Norm>()?, Norm::L2);
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Norm {
    /// Sum of absolute values.
    L1,
    /// Euclidean norm (the default, as in torch).
    #[default]
    L2,
    /// Largest absolute value.
    Inf,
}

impl FromStr for Norm {
    type Err = PruneError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "1" => Ok(Norm::L1),
            "2" => Ok(Norm::L2),
            "inf" | "Inf" | "INF" => Ok(Norm::Inf),
            other => Err(CoreError::invalid(
                "norm",
                format!("expected 1, 2 or inf, got `{other}`"),
            )
            .into()),
        }
    }
}

/// The unit that is pruned.
///
/// ```
/// use modelopt_prune::{Norm, Structure};
/// assert_eq!("channels:1".parse::<Structure>()?, Structure::channels(1, Norm::L2));
/// assert_eq!("2:4".parse::<Structure>()?, Structure::n_m(2, 4)?);
/// assert_eq!("unstructured".parse::<Structure>()?, Structure::Unstructured);
/// assert!(Structure::n_m(5, 4).is_err());
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Structure {
    /// Individual weights (torch's `l1_unstructured`).
    #[default]
    Unstructured,
    /// Whole slices along `axis` (axis 0 = output channels / rows / conv filters), ranked by the
    /// `norm` of their element scores over all other dims (torch's `ln_structured`).
    Channels {
        /// The axis whose indices are the channels.
        axis: usize,
        /// How a channel's element scores are reduced.
        norm: Norm,
    },
    /// In every group of `m` consecutive weights along the input axis (axis 1 of a `[out, in]`
    /// or `[out, in, kh, kw]` tensor; axis 0 of a vector), keep the `n` highest-scoring
    /// (2:4, 4:8). The sparsity is `(m - n) / m` whatever the amount.
    NM {
        /// Weights kept per group.
        n: usize,
        /// Group length.
        m: usize,
    },
    /// `rows x cols` blocks of a 2-D tensor, ranked by the sum of their element scores.
    Block {
        /// Block height.
        rows: usize,
        /// Block width.
        cols: usize,
    },
}

impl Structure {
    /// Channels along `axis` ranked by `norm`.
    ///
    /// ```
    /// let _ = modelopt_prune::Structure::channels(0, modelopt_prune::Norm::L1);
    /// ```
    pub fn channels(axis: usize, norm: Norm) -> Self {
        Structure::Channels { axis, norm }
    }

    /// N:M, keeping `n` of every `m`; errors unless `1 <= n <= m`.
    ///
    /// ```
    /// assert!(modelopt_prune::Structure::n_m(4, 8).is_ok());
    /// assert!(modelopt_prune::Structure::n_m(0, 4).is_err());
    /// ```
    pub fn n_m(n: usize, m: usize) -> Result<Self> {
        if n == 0 || n > m {
            return Err(CoreError::invalid("n:m", format!("need 1 <= n <= m, got {n}:{m}")).into());
        }
        Ok(Structure::NM { n, m })
    }

    /// Blocks of `rows x cols`; errors on a zero side.
    ///
    /// ```
    /// assert!(modelopt_prune::Structure::block(1, 4).is_ok());
    /// assert!(modelopt_prune::Structure::block(0, 4).is_err());
    /// ```
    pub fn block(rows: usize, cols: usize) -> Result<Self> {
        if rows == 0 || cols == 0 {
            return Err(CoreError::invalid(
                "block",
                format!("sides must be >= 1, got {rows}x{cols}"),
            )
            .into());
        }
        Ok(Structure::Block { rows, cols })
    }

    /// The same structure with another channel norm (no effect on other structures).
    ///
    /// ```
    /// use modelopt_prune::{Norm, Structure};
    /// assert_eq!(Structure::channels(0, Norm::L2).with_norm(Norm::Inf), Structure::channels(0, Norm::Inf));
    /// ```
    pub fn with_norm(self, norm: Norm) -> Self {
        match self {
            Structure::Channels { axis, .. } => Structure::Channels { axis, norm },
            other => other,
        }
    }
}

fn parse_usize(what: &'static str, s: &str) -> Result<usize> {
    s.trim().parse().map_err(|_| {
        CoreError::invalid(what, format!("`{s}` is not a non-negative integer")).into()
    })
}

impl FromStr for Structure {
    type Err = PruneError;
    /// `unstructured`, `channels`, `channels:AXIS`, `N:M`, `block:RxC` (norm L2 for channels;
    /// set another with [`Structure::with_norm`]).
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s == "unstructured" {
            return Ok(Structure::Unstructured);
        }
        if s == "channels" {
            return Ok(Structure::channels(0, Norm::L2));
        }
        if let Some(axis) = s.strip_prefix("channels:") {
            return Ok(Structure::channels(parse_usize("axis", axis)?, Norm::L2));
        }
        if let Some(b) = s.strip_prefix("block:") {
            let (r, c) = b.split_once('x').ok_or_else(|| {
                PruneError::from(CoreError::invalid(
                    "block",
                    format!("expected RxC, got `{b}`"),
                ))
            })?;
            return Structure::block(parse_usize("block", r)?, parse_usize("block", c)?);
        }
        if let Some((n, m)) = s.split_once(':') {
            return Structure::n_m(parse_usize("n:m", n)?, parse_usize("n:m", m)?);
        }
        Err(CoreError::invalid(
            "structure",
            format!("expected unstructured, channels[:AXIS], N:M or block:RxC, got `{s}`"),
        )
        .into())
    }
}
