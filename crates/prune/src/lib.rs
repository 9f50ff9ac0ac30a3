//! # modelopt-prune
//!
//! Pruning: removing the weights and channels that matter least, with the semantics of
//! `torch.nn.utils.prune` (masks equal torch's on its reference cases) and much faster.
//!
//! - [`PruningCriterion`]: the one-method trait that scores weights (object-safe); built in:
//!   [`L1Magnitude`], [`L2Magnitude`], [`RandomScores`], [`Taylor`], [`Wanda`].
//! - [`Pruner`]: criterion + [`Amount`] (fraction, count, target sparsity) + [`Structure`]
//!   (unstructured, channels by an Ln [`Norm`], N:M, blocks), [`Scope`] local or global.
//! - [`Mask`] (apply, sparsity, combine), [`MaskedParameter`] (re-applies its mask after each
//!   update; `remove` bakes zeros in), [`Schedule`] (one-shot, linear, cubic).
//! - [`shrink`]: coupled structured pruning that returns smaller dense tensors.
//! - [`sparse`]: CSR, bitmask and 2:4 storage with sparse x dense products.
//!
//! Ties between equal scores: the lower score is pruned first, then the lower position.
//!
//! ```
//! use modelopt_prune::{Amount, L1Magnitude, Norm, Pruner, Structure};
//! use ndarray::array;
//! let w = array![[0.1f32, 0.2], [3.0, -4.0]];
//! let rows = Pruner::new(L1Magnitude)
//!     .amount(Amount::count(1))
//!     .structure(Structure::channels(0, Norm::L2))
//!     .prune(&w)?;
//! assert_eq!(rows.to_u8(), array![[0u8, 0], [1, 1]].into_dyn());
//! # Ok::<(), modelopt_prune::PruneError>(())
//! ```

mod amount;
mod channels;
mod criterion;
mod error;
mod groups;
mod in_place;
mod mask;
mod masked;
mod pruner;
mod schedule;
mod select;
pub mod shrink;
pub mod sparse;
mod stored;
mod structure;
mod taylor;
mod wanda;

pub use amount::Amount;
pub use criterion::{L1Magnitude, L2Magnitude, PruningCriterion, RandomScores, criterion_by_name};
pub use error::{PruneError, Result};
pub use in_place::{
    HalfFormat, InPlaceReport, prune_magnitude_in_place, prune_magnitude_in_place_half,
};
pub use mask::Mask;
pub use masked::MaskedParameter;
pub use pruner::{Pruner, Scope};
pub use schedule::{Schedule, ScheduleKind};
pub use stored::{select_channel_bytes, zero_pruned_bytes};
pub use structure::{Norm, Structure};
pub use taylor::Taylor;
pub use wanda::{Wanda, WandaAccumulator, WandaByName};
