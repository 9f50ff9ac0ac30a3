//! One-dimensional (weighted) k-means: k-means++ seeding from a seed, then Lloyd iterations.
//!
//! The points are sorted once, so a Lloyd step is `k` binary searches for the cluster
//! boundaries (the midpoints between centres) and `k` differences of prefix sums for the new
//! centres: `O(k log n)` per iteration instead of `O(n k)`. A set of more than
//! [`EXACT_LIMIT`] values is first reduced to a histogram of [`HIST_BINS`] bins, each a point
//! at its weighted mean with its total weight.

/// Sets of at most this many values are clustered exactly (sorted values as points).
pub(crate) const EXACT_LIMIT: usize = 1 << 16;
/// Bins of the histogram that stands in for a larger set.
pub(crate) const HIST_BINS: usize = 1 << 16;

/// Parameters of one k-means run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct KMeansParams {
    pub(crate) k: usize,
    pub(crate) seed: u64,
    pub(crate) max_iter: usize,
    /// Stop when no centre moves more than `tol * (max - min)`.
    pub(crate) tol: f64,
}

/// Weighted points on a line, sorted, with prefix sums of `w` and `w * x`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Points {
    x: Vec<f64>,
    w: Vec<f64>,
    sw: Vec<f64>,
    swx: Vec<f64>,
}

impl Points {
    /// Points from values and optional weights (finite; weights >= 0). Equal values merge;
    /// zero-weight values are dropped.
    pub(crate) fn exact(values: &[f32], weights: Option<&[f32]>) -> Points {
        let mut pairs: Vec<(f32, f32)> = match weights {
            Some(w) => values
                .iter()
                .zip(w)
                .filter(|p| *p.1 > 0.0)
                .map(|(&v, &w)| (v, w))
                .collect(),
            None => values.iter().map(|&v| (v, 1.0)).collect(),
        };
        pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let mut x: Vec<f64> = Vec::with_capacity(pairs.len());
        let mut w: Vec<f64> = Vec::with_capacity(pairs.len());
        for (v, wt) in pairs {
            let v = f64::from(v);
            match x.last() {
                // -0 and +0 are one point.
                Some(&l) if l == v => *w.last_mut().unwrap_or(&mut 0.0) += f64::from(wt),
                _ => {
                    x.push(v);
                    w.push(f64::from(wt));
                }
            }
        }
        Points::from_xw(x, w)
    }

    /// Points from a histogram over `[lo, hi]`: per bin, the sum of weights and of `w * x`.
    pub(crate) fn from_bins(sw_bins: &[f64], swx_bins: &[f64]) -> Points {
        let mut x = Vec::new();
        let mut w = Vec::new();
        for (&s, &sx) in sw_bins.iter().zip(swx_bins) {
            if s > 0.0 {
                x.push(sx / s);
                w.push(s);
            }
        }
        Points::from_xw(x, w)
    }

    fn from_xw(x: Vec<f64>, w: Vec<f64>) -> Points {
        let mut sw = Vec::with_capacity(x.len() + 1);
        let mut swx = Vec::with_capacity(x.len() + 1);
        let (mut a, mut b) = (0.0, 0.0);
        sw.push(0.0);
        swx.push(0.0);
        for (&xi, &wi) in x.iter().zip(&w) {
            a += wi;
            b += wi * xi;
            sw.push(a);
            swx.push(b);
        }
        Points { x, w, sw, swx }
    }

    pub(crate) fn len(&self) -> usize {
        self.x.len()
    }
}

/// Histogram accumulator over `[lo, hi]` with [`HIST_BINS`] bins.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    lo: f32,
    scale: f32,
    pub(crate) sw: Vec<f64>,
    pub(crate) swx: Vec<f64>,
}

impl Histogram {
    pub(crate) fn new(lo: f32, hi: f32) -> Histogram {
        let width = hi - lo;
        let scale = if width > 0.0 && width.is_finite() {
            HIST_BINS as f32 / width
        } else {
            0.0
        };
        Histogram {
            lo,
            scale,
            sw: vec![0.0; HIST_BINS],
            swx: vec![0.0; HIST_BINS],
        }
    }

    #[inline]
    fn bin(&self, v: f32) -> usize {
        (((v - self.lo) * self.scale) as usize).min(HIST_BINS - 1)
    }

    pub(crate) fn add(&mut self, values: &[f32], weights: Option<&[f32]>) {
        match weights {
            None => {
                for &v in values {
                    let b = self.bin(v);
                    self.sw[b] += 1.0;
                    self.swx[b] += f64::from(v);
                }
            }
            Some(ws) => {
                for (&v, &w) in values.iter().zip(ws) {
                    let b = self.bin(v);
                    self.sw[b] += f64::from(w);
                    self.swx[b] += f64::from(w) * f64::from(v);
                }
            }
        }
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.sw.iter_mut().zip(&other.sw) {
            *a += b;
        }
        for (a, b) in self.swx.iter_mut().zip(&other.swx) {
            *a += b;
        }
    }

    pub(crate) fn points(&self) -> Points {
        Points::from_bins(&self.sw, &self.swx)
    }
}

/// SplitMix64: a tiny, well-mixed, seedable stream (all the randomness seeding needs).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Index drawn with probability proportional to `mass[i]` (`total > 0`).
fn draw(rng: &mut SplitMix, mass: &[f64], total: f64) -> usize {
    let r = rng.unit() * total;
    let mut acc = 0.0;
    let mut last = 0;
    for (i, &m) in mass.iter().enumerate() {
        if m > 0.0 {
            acc += m;
            last = i;
            if r < acc {
                return i;
            }
        }
    }
    last
}

/// The sorted centres (at most `p.k`; exactly the distinct points when there are no more than
/// `k` of them). Empty input gives no centres.
pub(crate) fn kmeans(pts: &Points, p: &KMeansParams) -> Vec<f64> {
    let n = pts.len();
    if n <= p.k {
        return pts.x.clone();
    }
    let mut rng = SplitMix(p.seed);
    // k-means++: first centre by weight, then by weight * squared distance to the nearest centre.
    let total_w = pts.sw[n];
    let first = draw(&mut rng, &pts.w, total_w);
    let mut centres = vec![pts.x[first]];
    let mut d2: Vec<f64> = pts.x.iter().map(|&x| (x - pts.x[first]).powi(2)).collect();
    while centres.len() < p.k {
        let mass: Vec<f64> = d2.iter().zip(&pts.w).map(|(d, w)| d * w).collect();
        let total: f64 = mass.iter().sum();
        if total <= 0.0 {
            break;
        }
        let c = pts.x[draw(&mut rng, &mass, total)];
        centres.push(c);
        for (d, &x) in d2.iter_mut().zip(&pts.x) {
            *d = d.min((x - c).powi(2));
        }
    }
    centres.sort_by(f64::total_cmp);
    let span = pts.x[n - 1] - pts.x[0];
    for _ in 0..p.max_iter {
        let mut next = Vec::with_capacity(centres.len());
        let mut empty = 0;
        let mut lo = 0;
        for i in 0..centres.len() {
            let hi = if i + 1 == centres.len() {
                n
            } else {
                let m = 0.5 * (centres[i] + centres[i + 1]);
                lo + pts.x[lo..].partition_point(|&x| x < m)
            };
            let w = pts.sw[hi] - pts.sw[lo];
            if w > 0.0 {
                next.push((pts.swx[hi] - pts.swx[lo]) / w);
            } else {
                empty += 1;
            }
            lo = hi;
        }
        // Empty clusters: re-seed each at the point that costs most (w * d^2), lowest index on
        // ties, so the run stays deterministic.
        for _ in 0..empty {
            let (mut best, mut cost) = (0, -1.0);
            for (j, (&x, &w)) in pts.x.iter().zip(&pts.w).enumerate() {
                let d = next
                    .iter()
                    .map(|&c| (x - c).abs())
                    .fold(f64::INFINITY, f64::min);
                if w * d * d > cost {
                    (best, cost) = (j, w * d * d);
                }
            }
            next.push(pts.x[best]);
        }
        next.sort_by(f64::total_cmp);
        let moved = centres
            .iter()
            .zip(&next)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        centres = next;
        if moved <= p.tol * span {
            break;
        }
    }
    centres
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(k: usize) -> KMeansParams {
        KMeansParams {
            k,
            seed: 7,
            max_iter: 100,
            tol: 0.0,
        }
    }

    #[test]
    fn two_obvious_clusters() {
        let v = [0.0f32, 0.1, -0.1, 10.0, 10.2, 9.8];
        let c = kmeans(&Points::exact(&v, None), &params(2));
        assert!(
            (c[0] - 0.0).abs() < 1e-6 && (c[1] - 10.0).abs() < 1e-6,
            "{c:?}"
        );
    }

    #[test]
    fn weights_pull_the_centre() {
        let v = [0.0f32, 1.0, 10.0];
        let c = kmeans(&Points::exact(&v, Some(&[1.0, 3.0, 1.0])), &params(2));
        assert!((c[0] - 0.75).abs() < 1e-9, "{c:?}");
    }

    #[test]
    fn fewer_points_than_levels_are_exact() {
        let c = kmeans(&Points::exact(&[2.0, 2.0, -0.0, 0.0], None), &params(4));
        assert_eq!(c, vec![0.0, 2.0]);
    }

    #[test]
    fn lloyd_reaches_a_fixed_point() {
        let v: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f32 / 100.0)
            .collect();
        let pts = Points::exact(&v, None);
        let c = kmeans(&pts, &params(5));
        // Each centre is the mean of the values nearest to it.
        for (i, &ci) in c.iter().enumerate() {
            let members: Vec<f64> = v
                .iter()
                .map(|&x| f64::from(x))
                .filter(|&x| {
                    let j = c
                        .iter()
                        .enumerate()
                        .min_by(|a, b| (x - a.1).abs().total_cmp(&(x - b.1).abs()))
                        .map(|p| p.0);
                    j == Some(i)
                })
                .collect();
            let mean = members.iter().sum::<f64>() / members.len() as f64;
            assert!((mean - ci).abs() < 1e-9, "centre {i}: {ci} vs mean {mean}");
        }
    }
}
