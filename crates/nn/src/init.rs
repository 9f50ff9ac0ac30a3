use modelopt_tensor_core::Float;
use ndarray::Array2;
use rand::RngExt;
use rand::rngs::StdRng;

use crate::float_const as c;

/// Weight initialisation of a dense layer (biases start at zero).
///
/// - `HeNormal`: `N(0, 2 / fan_in)` (He et al. 2015), the default, made for ReLU;
/// - `HeUniform`: `U(-b, b)` with `b = sqrt(6 / fan_in)`;
/// - `XavierNormal`: `N(0, 2 / (fan_in + fan_out))` (Glorot & Bengio 2010), for tanh;
/// - `XavierUniform`: `U(-b, b)` with `b = sqrt(6 / (fan_in + fan_out))`.
///
/// ```
/// use modelopt_nn::Init;
/// use rand::SeedableRng;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let w = Init::XavierUniform.weight::<f32>(3, 5, &mut rng);
/// assert_eq!(w.dim(), (3, 5));
/// assert!(w.iter().all(|v| v.abs() <= (6.0f32 / 8.0).sqrt()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Init {
    /// Normal with variance `2 / fan_in`.
    #[default]
    HeNormal,
    /// Uniform with variance `2 / fan_in`.
    HeUniform,
    /// Normal with variance `2 / (fan_in + fan_out)`.
    XavierNormal,
    /// Uniform with variance `2 / (fan_in + fan_out)`.
    XavierUniform,
}

impl Init {
    /// A `[fan_out, fan_in]` weight matrix (torch's `nn.Linear` layout) drawn from `rng`.
    ///
    /// ```
    /// use modelopt_nn::Init;
    /// use rand::SeedableRng;
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    /// assert_eq!(Init::HeNormal.weight::<f64>(4, 2, &mut rng).dim(), (4, 2));
    /// ```
    pub fn weight<A: Float>(self, fan_out: usize, fan_in: usize, rng: &mut StdRng) -> Array2<A> {
        let (fi, fo) = (fan_in.max(1) as f64, fan_out.max(1) as f64);
        match self {
            Init::HeNormal => normal(fan_out, fan_in, (2.0 / fi).sqrt(), rng),
            Init::XavierNormal => normal(fan_out, fan_in, (2.0 / (fi + fo)).sqrt(), rng),
            Init::HeUniform => uniform(fan_out, fan_in, (6.0 / fi).sqrt(), rng),
            Init::XavierUniform => uniform(fan_out, fan_in, (6.0 / (fi + fo)).sqrt(), rng),
        }
    }
}

fn uniform<A: Float>(rows: usize, cols: usize, bound: f64, rng: &mut StdRng) -> Array2<A> {
    Array2::from_shape_simple_fn(
        (rows, cols),
        || c(bound * (2.0 * rng.random::<f64>() - 1.0)),
    )
}

/// Box-Muller: two independent uniforms to one standard normal (the second is dropped for simplicity).
fn normal<A: Float>(rows: usize, cols: usize, std: f64, rng: &mut StdRng) -> Array2<A> {
    Array2::from_shape_simple_fn((rows, cols), || {
        let u1 = 1.0 - rng.random::<f64>(); // in (0, 1], so ln is finite
        let u2 = rng.random::<f64>();
        c(std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos())
    })
}
