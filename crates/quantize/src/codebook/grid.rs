//! A sorted set of levels and the exact nearest-level rule.

use modelopt_tensor_core::CoreError;

use crate::Result;

/// A sorted set of reconstruction levels (a codebook) with its decision thresholds.
///
/// **Nearest-level rule, by midpoints** (bitsandbytes 0.50.2's rule, `torch.bucketize` over
/// the midpoints, which this crate reproduces bit for bit): with `m_i = (l_i + l_{i+1}) / 2`
/// computed in `f32`, a value `x` goes to level `#{i : x > m_i}`. So a value exactly at a
/// midpoint goes to the **lower** level, values below the first level to the first, above the
/// last to the last; of two *equal* levels (FP4's two zeros) a value above them takes the
/// second, a value at or below them the first. (Within one `f32` ulp of a midpoint the rounded
/// midpoint decides, which can differ from comparing the two rounded distances.)
///
/// Quantizing a value is counting the thresholds `next_up(m_i)` at or below it.
///
/// ```
/// use modelopt_quantize::codebook::Grid;
/// let g = Grid::new(&[-1.0, 0.0, 0.5, 1.0])?;
/// assert_eq!(g.nearest(0.25), 1); // the exact midpoint of 0 and 0.5 goes down
/// assert_eq!(g.nearest(0.2501), 2);
/// assert_eq!(g.nearest(-7.0), 0);
/// assert_eq!(g.bits(), 2);
/// assert!(Grid::new(&[0.0, 0.0]).is_err()); // levels must increase
/// # Ok::<(), modelopt_quantize::QuantError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    levels: Vec<f32>,
    thresholds: Vec<f32>,
}

impl Grid {
    /// A grid from strictly increasing finite levels, 1 to 256 of them.
    ///
    /// ```
    /// use modelopt_quantize::codebook::Grid;
    /// assert!(Grid::new(&[]).is_err());
    /// assert!(Grid::new(&[0.0, f32::NAN]).is_err());
    /// assert_eq!(Grid::new(&[3.0])?.nearest(-1.0), 0);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn new(levels: &[f32]) -> Result<Grid> {
        if levels.is_empty() || levels.len() > 256 {
            return Err(CoreError::invalid(
                "levels",
                format!("need 1..=256 levels, got {}", levels.len()),
            )
            .into());
        }
        if let Some(i) = levels.iter().position(|l| !l.is_finite()) {
            return Err(CoreError::invalid(
                "levels",
                format!("level {i} is {}, levels must be finite", levels[i]),
            )
            .into());
        }
        if let Some(i) = levels.windows(2).position(|w| w[0] >= w[1]) {
            return Err(CoreError::invalid(
                "levels",
                format!(
                    "must increase strictly: level {i} = {} is not below level {} = {}",
                    levels[i],
                    i + 1,
                    levels[i + 1]
                ),
            )
            .into());
        }
        Ok(Grid::from_sorted(levels.to_vec()))
    }

    /// A grid from non-decreasing finite levels (equal neighbours allowed; see the type docs).
    pub(crate) fn from_sorted(levels: Vec<f32>) -> Grid {
        let thresholds = levels.windows(2).map(|w| threshold(w[0], w[1])).collect();
        Grid { levels, thresholds }
    }

    /// llama.cpp's IQ4_NL table `{-127, -104, ..., 113} / 127` (the non-uniform 4-bit grid of
    /// GGML's IQ4 types), as a user grid.
    ///
    /// ```
    /// let g = modelopt_quantize::codebook::Grid::iq4_nl();
    /// assert_eq!((g.len(), g.levels()[0], g.levels()[8]), (16, -1.0, 1.0 / 127.0));
    /// ```
    pub fn iq4_nl() -> Grid {
        const T: [i8; 16] = [
            -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
        ];
        Grid::from_sorted(T.iter().map(|&v| f32::from(v) / 127.0).collect())
    }

    /// The levels, sorted.
    ///
    /// ```
    /// let g = modelopt_quantize::codebook::Grid::new(&[-1.0, 1.0])?;
    /// assert_eq!(g.levels(), &[-1.0, 1.0]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn levels(&self) -> &[f32] {
        &self.levels
    }

    /// Number of levels.
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::codebook::Grid::new(&[0.0, 1.0, 2.0])?.len(), 3);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// Always false (a grid has at least one level).
    ///
    /// ```
    /// assert!(!modelopt_quantize::codebook::Grid::new(&[0.0])?.is_empty());
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Index bits needed: `ceil(log2(len))`, at least 1.
    ///
    /// ```
    /// assert_eq!(modelopt_quantize::codebook::Grid::new(&[0.0, 1.0, 2.0])?.bits(), 2);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn bits(&self) -> u8 {
        bits_for(self.levels.len())
    }

    /// The decision thresholds: value `x` goes to level `#{t : t <= x}`.
    ///
    /// ```
    /// let g = modelopt_quantize::codebook::Grid::new(&[0.0, 1.0])?;
    /// assert_eq!(g.thresholds(), &[f32::from_bits(0.5f32.to_bits() + 1)]);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    pub fn thresholds(&self) -> &[f32] {
        &self.thresholds
    }

    /// Index of the level `x` maps to (see the type docs for the rule). NaN maps to 0.
    ///
    /// ```
    /// let g = modelopt_quantize::codebook::Grid::new(&[0.0, 1.0, 4.0])?;
    /// assert_eq!((g.nearest(0.6), g.nearest(2.5), g.nearest(2.4)), (1, 1, 1));
    /// assert_eq!(g.nearest(2.6), 2);
    /// # Ok::<(), modelopt_quantize::QuantError>(())
    /// ```
    #[inline]
    pub fn nearest(&self, x: f32) -> usize {
        if self.thresholds.len() <= 16 {
            self.thresholds.iter().map(|&t| usize::from(x >= t)).sum()
        } else {
            self.thresholds.partition_point(|&t| t <= x)
        }
    }
}

/// Index bits for `n` levels: `ceil(log2(n))`, at least 1.
pub(crate) fn bits_for(n: usize) -> u8 {
    let mut b = 1u8;
    while (1usize << b) < n {
        b += 1;
    }
    b
}

/// Smallest `f32` that goes to `b` rather than `a` (`a <= b`): just above their `f32` midpoint.
fn threshold(a: f32, b: f32) -> f32 {
    from_key(key((a + b) / 2.0) + 1)
}

/// Total-order key of a finite f32 (-0 just below +0).
fn key(x: f32) -> i64 {
    let b = x.to_bits();
    if b >> 31 == 1 {
        -i64::from(b & 0x7FFF_FFFF) - 1
    } else {
        i64::from(b)
    }
}

fn from_key(k: i64) -> f32 {
    if k < 0 {
        f32::from_bits(((-(k + 1)) as u32) | 0x8000_0000)
    } else {
        f32::from_bits(k as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule spelled out: the number of midpoints strictly below `x`.
    fn midpoint_rule(levels: &[f32], x: f32) -> usize {
        levels
            .windows(2)
            .filter(|w| x > (w[0] + w[1]) / 2.0)
            .count()
    }

    #[test]
    fn thresholds_reproduce_the_rule_near_every_midpoint() {
        let levels = [
            -1.0f32,
            -0.696_192_8,
            -0.1,
            0.0,
            0.0,
            0.005_208_333,
            0.33,
            1.0,
        ];
        let g = Grid::from_sorted(levels.to_vec());
        for w in levels.windows(2) {
            let m = 0.5 * (w[0] + w[1]);
            for d in -300i64..300 {
                let x = from_key(key(m) + d);
                assert_eq!(g.nearest(x), midpoint_rule(&levels, x), "x = {x:e}");
            }
        }
        for x in [-2.0f32, -1.0, -0.0, 0.0, 1e-45, -1e-45, 1.0, 3.0] {
            assert_eq!(g.nearest(x), midpoint_rule(&levels, x), "x = {x:e}");
        }
        // FP4's two zeros: exactly zero takes the first, anything above the second.
        assert_eq!(
            (g.nearest(0.0), g.nearest(1e-45), g.nearest(-1e-45)),
            (3, 4, 3)
        );
    }

    #[test]
    fn key_round_trips() {
        for x in [-1.5f32, -0.0, 0.0, 1e-45, -1e-45, f32::MAX, f32::MIN] {
            assert_eq!(from_key(key(x)).to_bits(), x.to_bits());
        }
        assert_eq!(key(-0.0) + 1, key(0.0));
    }

    #[test]
    fn bits_for_counts() {
        assert_eq!(
            [1, 2, 3, 4, 5, 16, 17, 256].map(bits_for),
            [1, 1, 2, 2, 3, 4, 5, 8]
        );
    }
}
