use modelopt_tensor_core::{CoreError, Float};
use ndarray::{Array1, Array2, ArrayRef2, Axis};
use rand::rngs::StdRng;

use crate::matmul::gemm;
use crate::{Init, Result};

/// A fully connected layer `y = x W^T + b`, with `W` of shape `[out, in]` (torch's `nn.Linear`
/// layout) and `b` of length `out`.
///
/// The layer keeps no activations: [`Dense::backward`] takes the input it saw in the forward pass,
/// and stores the gradients of the last backward call in [`Dense::weight_grad`] and
/// [`Dense::bias_grad`] (overwritten, not accumulated). Matrix products are batched (one GEMM each, no
/// transposed copies), never per sample.
///
/// ```
/// use modelopt_nn::Dense;
/// use ndarray::array;
/// let layer = Dense::from_parts(array![[1.0f32, 2.0]], array![0.5])?;
/// let y = layer.forward(&array![[1.0, 1.0], [0.0, 1.0]])?;
/// assert_eq!(y, array![[3.5], [2.5]]);
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Dense<A> {
    weight: Array2<A>,
    bias: Array1<A>,
    weight_grad: Array2<A>,
    bias_grad: Array1<A>,
}

impl<A: Float> Dense<A> {
    /// A new layer with `in_features -> out_features`, weights from `init`, zero bias.
    ///
    /// ```
    /// use modelopt_nn::{Dense, Init};
    /// use rand::SeedableRng;
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    /// let d = Dense::<f32>::new(8, 3, Init::HeNormal, &mut rng)?;
    /// assert_eq!(d.weight().dim(), (3, 8));
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn new(
        in_features: usize,
        out_features: usize,
        init: Init,
        rng: &mut StdRng,
    ) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(CoreError::invalid(
                "features",
                format!("a dense layer needs at least one input and output, got {in_features} -> {out_features}"),
            )
            .into());
        }
        Self::from_parts(
            init.weight(out_features, in_features, rng),
            Array1::zeros(out_features),
        )
    }

    /// A layer from an existing weight `[out, in]` and bias `[out]`.
    ///
    /// ```
    /// use modelopt_nn::Dense;
    /// use ndarray::array;
    /// assert!(Dense::from_parts(array![[1.0f32, 2.0]], array![0.0, 0.0]).is_err());
    /// ```
    pub fn from_parts(weight: Array2<A>, bias: Array1<A>) -> Result<Self> {
        if weight.nrows() != bias.len() {
            return Err(CoreError::ShapeMismatch {
                expected: vec![weight.nrows()],
                found: vec![bias.len()],
            }
            .into());
        }
        if weight.is_empty() {
            return Err(CoreError::Empty {
                what: "dense weight",
            }
            .into());
        }
        let weight_grad = Array2::zeros(weight.raw_dim());
        let bias_grad = Array1::zeros(bias.raw_dim());
        Ok(Dense {
            weight,
            bias,
            weight_grad,
            bias_grad,
        })
    }

    /// Number of input features.
    ///
    /// ```
    /// use modelopt_nn::Dense;
    /// use ndarray::array;
    /// assert_eq!(Dense::from_parts(array![[1.0f32, 2.0]], array![0.0])?.in_features(), 2);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn in_features(&self) -> usize {
        self.weight.ncols()
    }

    /// Number of output features.
    ///
    /// ```
    /// use modelopt_nn::Dense;
    /// use ndarray::array;
    /// assert_eq!(Dense::from_parts(array![[1.0f32, 2.0]], array![0.0])?.out_features(), 1);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn out_features(&self) -> usize {
        self.weight.nrows()
    }

    /// The weight `[out, in]`.
    ///
    /// ```
    /// use modelopt_nn::Dense;
    /// use ndarray::array;
    /// let d = Dense::from_parts(array![[1.0f32, 2.0]], array![0.0])?;
    /// assert_eq!(d.weight()[[0, 1]], 2.0);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn weight(&self) -> &Array2<A> {
        &self.weight
    }

    /// The weight, mutable (e.g. to re-apply a pruning mask after an optimizer step).
    ///
    /// ```
    /// use modelopt_nn::Dense;
    /// use ndarray::array;
    /// let mut d = Dense::from_parts(array![[1.0f32, 2.0]], array![0.0])?;
    /// d.weight_mut()[[0, 0]] = 0.0;
    /// assert_eq!(d.weight()[[0, 0]], 0.0);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn weight_mut(&mut self) -> &mut Array2<A> {
        &mut self.weight
    }

    /// The bias `[out]`.
    ///
    /// ```
    /// use modelopt_nn::Dense;
    /// use ndarray::array;
    /// assert_eq!(Dense::from_parts(array![[1.0f32]], array![0.5])?.bias()[0], 0.5);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn bias(&self) -> &Array1<A> {
        &self.bias
    }

    /// The bias, mutable.
    ///
    /// ```
    /// use modelopt_nn::Dense;
    /// use ndarray::array;
    /// let mut d = Dense::from_parts(array![[1.0f32]], array![0.5])?;
    /// d.bias_mut()[0] = 1.0;
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn bias_mut(&mut self) -> &mut Array1<A> {
        &mut self.bias
    }

    /// Gradient of the loss w.r.t. the weight from the last [`Dense::backward`].
    ///
    /// ```
    /// use modelopt_nn::Dense;
    /// use ndarray::array;
    /// let d = Dense::from_parts(array![[1.0f32]], array![0.5])?;
    /// assert_eq!(d.weight_grad()[[0, 0]], 0.0);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn weight_grad(&self) -> &Array2<A> {
        &self.weight_grad
    }

    /// Gradient of the loss w.r.t. the bias from the last [`Dense::backward`].
    ///
    /// ```
    /// use modelopt_nn::Dense;
    /// use ndarray::array;
    /// let d = Dense::from_parts(array![[1.0f32]], array![0.5])?;
    /// assert_eq!(d.bias_grad()[0], 0.0);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn bias_grad(&self) -> &Array1<A> {
        &self.bias_grad
    }

    /// Parameters and gradients together (weight, bias, weight grad, bias grad), for optimizers.
    pub(crate) fn parts_mut(&mut self) -> (&mut Array2<A>, &mut Array1<A>, &Array2<A>, &Array1<A>) {
        (
            &mut self.weight,
            &mut self.bias,
            &self.weight_grad,
            &self.bias_grad,
        )
    }

    /// `x W^T + b` for a batch `x` of shape `[batch, in]`.
    ///
    /// ```
    /// use modelopt_nn::Dense;
    /// use ndarray::array;
    /// let d = Dense::from_parts(array![[1.0f32, 1.0]], array![0.0])?;
    /// assert!(d.forward(&array![[1.0f32, 2.0, 3.0]]).is_err()); // 3 features, expects 2
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn forward(&self, x: &ArrayRef2<A>) -> Result<Array2<A>> {
        self.check_input(x)?;
        // Start from the broadcast bias and let gemm add x W^T into it (beta = 1): one pass, no temporary.
        let mut y = Array2::zeros((x.nrows(), self.out_features()));
        y.rows_mut()
            .into_iter()
            .for_each(|mut row| row.assign(&self.bias));
        gemm(A::one(), x, &self.weight.t(), A::one(), &mut y);
        Ok(y)
    }

    /// Backward pass: from the forward input `x` `[batch, in]` and `dy = dL/dy` `[batch, out]`, store
    /// `dL/dW = dy^T x` and `dL/db = sum_rows(dy)`, and return `dL/dx = dy W` when `input_grad`
    /// (the first layer of a network does not need it, which saves a third of the backward work).
    ///
    /// ```
    /// use modelopt_nn::Dense;
    /// use ndarray::array;
    /// let mut d = Dense::from_parts(array![[2.0f64]], array![0.0])?;
    /// let dx = d.backward(&array![[3.0]], &array![[1.0]], true)?.unwrap();
    /// assert_eq!((d.weight_grad()[[0, 0]], dx[[0, 0]]), (3.0, 2.0));
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn backward(
        &mut self,
        x: &ArrayRef2<A>,
        dy: &ArrayRef2<A>,
        input_grad: bool,
    ) -> Result<Option<Array2<A>>> {
        self.check_input(x)?;
        if dy.dim() != (x.nrows(), self.out_features()) {
            return Err(CoreError::ShapeMismatch {
                expected: vec![x.nrows(), self.out_features()],
                found: dy.shape().to_vec(),
            }
            .into());
        }
        gemm(A::one(), &dy.t(), x, A::zero(), &mut self.weight_grad);
        self.bias_grad.assign(&dy.sum_axis(Axis(0)));
        if !input_grad {
            return Ok(None);
        }
        let mut dx = Array2::zeros((x.nrows(), self.in_features()));
        gemm(A::one(), dy, &self.weight, A::zero(), &mut dx);
        Ok(Some(dx))
    }

    fn check_input(&self, x: &ArrayRef2<A>) -> Result<()> {
        if x.ncols() != self.in_features() {
            return Err(CoreError::ShapeMismatch {
                expected: vec![x.nrows(), self.in_features()],
                found: x.shape().to_vec(),
            }
            .into());
        }
        Ok(())
    }
}
