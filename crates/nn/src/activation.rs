use modelopt_tensor_core::Float;
use ndarray::{Array, ArrayRef, Dimension, Zip};

use crate::float_const as c;

/// An element-wise activation between layers, on arrays of any dimension (a batch of vectors
/// `[batch, features]` or of images `[batch, channels, height, width]`).
///
/// [`Activation::Gelu`] is the **tanh approximation**
/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))` (torch's `GELU(approximate="tanh")`),
/// because Rust's standard library has no stable `erf`.
///
/// ```
/// use modelopt_nn::Activation;
/// use ndarray::array;
/// let z = array![[-1.0f64, 2.0]];
/// let y = Activation::Relu.forward(&z);
/// assert_eq!(y, array![[0.0, 2.0]]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// `max(0, x)`.
    #[default]
    Relu,
    /// GELU, tanh approximation.
    Gelu,
    /// Hyperbolic tangent.
    Tanh,
    /// No activation (a linear network).
    Identity,
}

impl Activation {
    /// Whether [`Activation::backward`] needs the pre-activation `z` (GELU) rather than only the output.
    ///
    /// ```
    /// use modelopt_nn::Activation;
    /// assert!(Activation::Gelu.needs_input());
    /// assert!(!Activation::Relu.needs_input());
    /// ```
    pub fn needs_input(self) -> bool {
        matches!(self, Activation::Gelu)
    }

    /// Apply the activation to `z`, returning a new array.
    ///
    /// ```
    /// use modelopt_nn::Activation;
    /// use ndarray::array;
    /// let y = Activation::Tanh.forward(&array![[0.0f32]]);
    /// assert_eq!(y[[0, 0]], 0.0);
    /// ```
    pub fn forward<A: Float, D: Dimension>(self, z: &ArrayRef<A, D>) -> Array<A, D> {
        let mut y = z.to_owned();
        self.forward_inplace(&mut y);
        y
    }

    /// Apply the activation in place (turns a pre-activation into the output).
    ///
    /// ```
    /// use modelopt_nn::Activation;
    /// use ndarray::array;
    /// let mut z = array![[-3.0f32, 3.0]];
    /// Activation::Relu.forward_inplace(&mut z);
    /// assert_eq!(z, array![[0.0, 3.0]]);
    /// ```
    pub fn forward_inplace<A: Float, D: Dimension>(self, z: &mut ArrayRef<A, D>) {
        match self {
            Activation::Relu => z.mapv_inplace(|v| if v > A::zero() { v } else { A::zero() }),
            Activation::Tanh => z.mapv_inplace(|v| v.tanh()),
            Activation::Gelu => z.mapv_inplace(gelu),
            Activation::Identity => {}
        }
    }

    /// Multiply `grad` (d loss / d output) in place by the activation's derivative, giving
    /// d loss / d pre-activation. `input` is the pre-activation `z` (used by GELU), `output` the
    /// activation's output (used by ReLU and tanh); pass whichever you have for the other.
    ///
    /// ```
    /// use modelopt_nn::Activation;
    /// use ndarray::array;
    /// let z = array![[-1.0f64, 2.0]];
    /// let y = Activation::Relu.forward(&z);
    /// let mut g = array![[5.0, 5.0]];
    /// Activation::Relu.backward(&z, &y, &mut g);
    /// assert_eq!(g, array![[0.0, 5.0]]);
    /// ```
    pub fn backward<A: Float, D: Dimension>(
        self,
        input: &ArrayRef<A, D>,
        output: &ArrayRef<A, D>,
        grad: &mut ArrayRef<A, D>,
    ) {
        match self {
            // A select rather than a branch: about half the units are off, unpredictably.
            Activation::Relu => Zip::from(grad).and(output).for_each(|g, &y| {
                *g = if y > A::zero() { *g } else { A::zero() };
            }),
            Activation::Tanh => Zip::from(grad)
                .and(output)
                .for_each(|g, &y| *g = *g * (A::one() - y * y)),
            Activation::Gelu => Zip::from(grad)
                .and(input)
                .for_each(|g, &x| *g = *g * gelu_derivative(x)),
            Activation::Identity => {}
        }
    }
}

/// GELU, tanh approximation (Hendrycks & Gimpel 2016, eq. for the fast approximation).
fn gelu<A: Float>(x: A) -> A {
    let k: A = c(0.797_884_560_802_865_4); // sqrt(2/pi)
    let inner = k * (x + c::<A>(0.044715) * x * x * x);
    c::<A>(0.5) * x * (A::one() + inner.tanh())
}

fn gelu_derivative<A: Float>(x: A) -> A {
    let k: A = c(0.797_884_560_802_865_4);
    let a: A = c(0.044715);
    let inner = k * (x + a * x * x * x);
    let t = inner.tanh();
    let dinner = k * (A::one() + c::<A>(3.0) * a * x * x);
    c::<A>(0.5) * (A::one() + t) + c::<A>(0.5) * x * (A::one() - t * t) * dinner
}
