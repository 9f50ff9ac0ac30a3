//! # modelopt-prune
//!
//! Pruning: removing the weights and channels that matter least.
