//! Sparsity schedules: one-shot, linear, and cubic gradual pruning (Zhu & Gupta 2017).

use modelopt_tensor_core::CoreError;

use crate::{Amount, Result};

/// How the target sparsity grows over training steps.
///
/// From step `t0`, every `dt` steps, `n` times: the cubic schedule of Zhu & Gupta (2017),
/// `s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt))^3`, rises fast then flattens; the linear
/// one rises evenly; one-shot jumps to `s_f` at `t0`. Before `t0` the sparsity is `s_i`, after
/// `t0 + n * dt` it is `s_f`; between pruning steps it holds its last value.
///
/// ```
/// use modelopt_prune::Schedule;
/// let s = Schedule::cubic(0.0, 0.8, 0, 10, 10)?;
/// assert_eq!(s.sparsity_at(0), 0.0);
/// assert!((s.sparsity_at(50) - 0.7).abs() < 1e-12); // 0.8 - 0.8 * 0.5^3
/// assert_eq!(s.sparsity_at(1000), 0.8);
/// # Ok::<(), modelopt_prune::PruneError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    kind: ScheduleKind,
    initial: f64,
    final_sparsity: f64,
    start: u64,
    every: u64,
    steps: u64,
}

/// The shape of a [`Schedule`].
///
/// ```
/// assert_ne!(modelopt_prune::ScheduleKind::Linear, modelopt_prune::ScheduleKind::Cubic);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ScheduleKind {
    /// Straight to the final sparsity at the start step.
    OneShot,
    /// Evenly spaced increments.
    Linear,
    /// Zhu & Gupta's cubic.
    Cubic,
}

impl Schedule {
    fn build(
        kind: ScheduleKind,
        initial: f64,
        final_sparsity: f64,
        start: u64,
        every: u64,
        steps: u64,
    ) -> Result<Self> {
        for (name, v) in [
            ("initial sparsity", initial),
            ("final sparsity", final_sparsity),
        ] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err(CoreError::invalid(name, format!("must be in [0, 1], got {v}")).into());
            }
        }
        if final_sparsity < initial {
            return Err(CoreError::invalid(
                "final sparsity",
                format!("{final_sparsity} is below the initial {initial}"),
            )
            .into());
        }
        if every == 0 || steps == 0 {
            return Err(CoreError::invalid(
                "steps",
                "pruning interval and step count must be >= 1",
            )
            .into());
        }
        Ok(Schedule {
            kind,
            initial,
            final_sparsity,
            start,
            every,
            steps,
        })
    }

    /// Prune to `final_sparsity` at step `start`.
    ///
    /// ```
    /// let s = modelopt_prune::Schedule::one_shot(0.9, 5)?;
    /// assert_eq!((s.sparsity_at(4), s.sparsity_at(5)), (0.0, 0.9));
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn one_shot(final_sparsity: f64, start: u64) -> Result<Self> {
        Self::build(ScheduleKind::OneShot, 0.0, final_sparsity, start, 1, 1)
    }

    /// Linear from `initial` to `final_sparsity` over `steps` pruning steps `every` apart.
    ///
    /// ```
    /// let s = modelopt_prune::Schedule::linear(0.0, 0.5, 0, 1, 5)?;
    /// assert!((s.sparsity_at(2) - 0.2).abs() < 1e-12);
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn linear(
        initial: f64,
        final_sparsity: f64,
        start: u64,
        every: u64,
        steps: u64,
    ) -> Result<Self> {
        Self::build(
            ScheduleKind::Linear,
            initial,
            final_sparsity,
            start,
            every,
            steps,
        )
    }

    /// Cubic (Zhu & Gupta 2017) from `initial` to `final_sparsity`.
    ///
    /// ```
    /// assert!(modelopt_prune::Schedule::cubic(0.5, 0.2, 0, 1, 5).is_err());
    /// ```
    pub fn cubic(
        initial: f64,
        final_sparsity: f64,
        start: u64,
        every: u64,
        steps: u64,
    ) -> Result<Self> {
        Self::build(
            ScheduleKind::Cubic,
            initial,
            final_sparsity,
            start,
            every,
            steps,
        )
    }

    /// The schedule's shape.
    ///
    /// ```
    /// let s = modelopt_prune::Schedule::one_shot(0.5, 0)?;
    /// assert_eq!(s.kind(), modelopt_prune::ScheduleKind::OneShot);
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn kind(&self) -> ScheduleKind {
        self.kind
    }

    /// The target sparsity at training step `t` (held constant between pruning steps).
    ///
    /// ```
    /// let s = modelopt_prune::Schedule::linear(0.0, 1.0, 10, 10, 2)?;
    /// assert_eq!(s.sparsity_at(15), 0.0);
    /// assert_eq!(s.sparsity_at(20), 0.5);
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn sparsity_at(&self, t: u64) -> f64 {
        if t < self.start {
            return self.initial;
        }
        let done = ((t - self.start) / self.every).min(self.steps);
        let frac = done as f64 / self.steps as f64;
        let (si, sf) = (self.initial, self.final_sparsity);
        match self.kind {
            ScheduleKind::OneShot => sf,
            ScheduleKind::Linear => si + (sf - si) * frac,
            ScheduleKind::Cubic => sf + (si - sf) * (1.0 - frac).powi(3),
        }
    }

    /// True at the steps where the target changes (`t0`, `t0 + dt`, ... `t0 + n dt`).
    ///
    /// ```
    /// let s = modelopt_prune::Schedule::cubic(0.0, 0.5, 0, 10, 3)?;
    /// assert!(s.is_pruning_step(10) && !s.is_pruning_step(11) && !s.is_pruning_step(40));
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn is_pruning_step(&self, t: u64) -> bool {
        t >= self.start
            && (t - self.start).is_multiple_of(self.every)
            && (t - self.start) / self.every <= self.steps
    }

    /// The [`Amount`] to prune at step `t`: the target sparsity, as an absolute target.
    ///
    /// ```
    /// use modelopt_prune::{Amount, Schedule};
    /// let s = Schedule::one_shot(0.5, 0)?;
    /// assert_eq!(s.amount_at(0)?, Amount::target_sparsity(0.5)?);
    /// # Ok::<(), modelopt_prune::PruneError>(())
    /// ```
    pub fn amount_at(&self, t: u64) -> Result<Amount> {
        Amount::target_sparsity(self.sparsity_at(t))
    }
}
