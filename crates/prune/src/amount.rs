//! How much to prune: a fraction, a count, or an absolute target sparsity.

use modelopt_tensor_core::CoreError;

use crate::{PruneError, Result};

/// How much of a tensor to prune, in *units* (weights, channels, blocks).
///
/// - [`Amount::fraction`]: `round(amount * n)` units of the `n` still unpruned, with round half
///   to even (torch's `_compute_nparams_toprune`); pruning again applies it to what remains, as
///   torch's `PruningContainer` composes.
/// - [`Amount::count`]: exactly that many of the units still unpruned.
/// - [`Amount::target_sparsity`]: an absolute goal: prune until `round(s * total)` units of all
///   units are pruned (counting those already pruned); nothing more if already there.
///
/// ```
/// use modelopt_prune::Amount;
/// let a = Amount::fraction(0.5)?;
/// assert_eq!(a.units_to_prune(5, 5)?, 2); // round(2.5) = 2, half to even
/// assert_eq!(Amount::count(3).units_to_prune(10, 4)?, 3);
/// assert_eq!(Amount::target_sparsity(0.9)?.units_to_prune(10, 4)?, 3); // 6 pruned + 3 = 9
/// assert!(Amount::fraction(1.5).is_err());
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Amount {
    /// A fraction in `[0, 1]` of the units that remain.
    Fraction(f64),
    /// A number of units among those that remain.
    Count(usize),
    /// A fraction in `[0, 1]` of all units that should be pruned in the end.
    TargetSparsity(f64),
}

fn check_fraction(name: &'static str, f: f64) -> Result<f64> {
    if f.is_finite() && (0.0..=1.0).contains(&f) {
        Ok(f)
    } else {
        Err(CoreError::invalid(name, format!("must be a fraction in [0, 1], got {f}")).into())
    }
}

impl Amount {
    /// A fraction of the remaining units; errors outside `[0, 1]` or on NaN.
    ///
    /// ```
    /// assert!(modelopt_prune::Amount::fraction(0.3).is_ok());
    /// assert!(modelopt_prune::Amount::fraction(-0.1).is_err());
    /// ```
    pub fn fraction(amount: f64) -> Result<Self> {
        Ok(Amount::Fraction(check_fraction("amount", amount)?))
    }

    /// A count of units (checked against the tensor when pruning).
    ///
    /// ```
    /// assert_eq!(modelopt_prune::Amount::count(100), modelopt_prune::Amount::Count(100));
    /// ```
    pub fn count(units: usize) -> Self {
        Amount::Count(units)
    }

    /// An absolute target sparsity in `[0, 1]`.
    ///
    /// ```
    /// assert!(modelopt_prune::Amount::target_sparsity(0.75).is_ok());
    /// ```
    pub fn target_sparsity(sparsity: f64) -> Result<Self> {
        Ok(Amount::TargetSparsity(check_fraction(
            "target_sparsity",
            sparsity,
        )?))
    }

    /// Units to prune now, given `total` units of which `remaining` are unpruned.
    ///
    /// Errors when a count exceeds `remaining`.
    ///
    /// ```
    /// use modelopt_prune::Amount;
    /// assert_eq!(Amount::fraction(0.3)?.units_to_prune(100, 70)?, 21);
    /// assert!(Amount::count(8).units_to_prune(10, 7).is_err());
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn units_to_prune(&self, total: usize, remaining: usize) -> Result<usize> {
        self.units_to_prune_of(total, remaining, "units")
    }

    pub(crate) fn units_to_prune_of(
        &self,
        total: usize,
        remaining: usize,
        unit: &'static str,
    ) -> Result<usize> {
        let k = match *self {
            Amount::Fraction(f) => round_half_even(f * remaining as f64),
            Amount::Count(c) => c,
            Amount::TargetSparsity(s) => {
                let goal = round_half_even(s * total as f64);
                goal.saturating_sub(total - remaining)
            }
        };
        if k > remaining {
            return Err(PruneError::AmountTooLarge {
                requested: k,
                available: remaining,
                unit,
            });
        }
        Ok(k)
    }
}

impl std::str::FromStr for Amount {
    type Err = PruneError;
    /// The command-line convention: written with a decimal point (`0.5`, `1.0`, `.3`) it is a
    /// fraction, without one (`100`) a count.
    ///
    /// ```
    /// use modelopt_prune::Amount;
    /// assert_eq!("0.25".parse::<Amount>()?, Amount::Fraction(0.25));
    /// assert_eq!("100".parse::<Amount>()?, Amount::Count(100));
    /// assert!("1.5".parse::<Amount>().is_err());
    /// assert!("-3".parse::<Amount>().is_err());
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let bad = || {
            PruneError::from(CoreError::invalid(
                "amount",
                format!("`{s}` is neither a fraction nor a count"),
            ))
        };
        if s.contains('.') {
            Amount::fraction(s.parse().map_err(|_| bad())?)
        } else {
            Ok(Amount::Count(s.parse().map_err(|_| bad())?))
        }
    }
}

/// Python's `round` on a non-negative float: nearest integer, ties to even.
fn round_half_even(x: f64) -> usize {
    // ok: callers pass products of a fraction in [0, 1] and a count, so x is finite and >= 0
    x.round_ties_even() as usize
}
