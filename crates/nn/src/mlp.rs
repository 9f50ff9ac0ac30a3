use std::collections::BTreeMap;

use modelopt_tensor_core::{CoreError, Float};
use ndarray::{Array2, ArrayD, ArrayRef2, ArrayViewD, ArrayViewMutD, Ix1, Ix2, Zip};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::{Activation, Dense, Dropout, Init, NnError, ParameterVisitor, Parameters, Result};

/// A multi-layer perceptron built from layer sizes: `Dense -> activation (-> dropout)` for every
/// hidden layer, and a final `Dense` that outputs logits.
///
/// Parameters are named like torch's `nn.Sequential` of linears: `layers.{i}.weight` (`[out, in]`)
/// and `layers.{i}.bias`, so [`Mlp::named_parameters`] maps straight to a safetensors file.
///
/// In training mode ([`Mlp::set_training`], the default), [`Mlp::forward`] caches what
/// [`Mlp::backward`] needs and applies dropout; [`Mlp::predict`] is always inference (no cache, no
/// dropout) and takes `&self`.
///
/// ```
/// use modelopt_nn::{softmax_cross_entropy, Mlp, Optimizer, Sgd};
/// use ndarray::array;
/// let mut mlp = Mlp::<f32>::builder(&[2, 8, 2]).seed(3).build()?;
/// let mut opt = Sgd::builder(0.5).build()?;
/// let x = array![[0.0f32, 1.0], [1.0, 0.0]];
/// let mut first = None;
/// for _ in 0..50 {
///     let logits = mlp.forward(&x)?;
///     let (loss, grad) = softmax_cross_entropy(&logits, &[1, 0])?;
///     first.get_or_insert(loss);
///     mlp.backward(&grad)?;
///     opt.step(&mut mlp)?;
/// }
/// let (last, _) = softmax_cross_entropy(&mlp.predict(&x)?, &[1, 0])?;
/// assert!(last < first.unwrap());
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Mlp<A> {
    layers: Vec<Dense<A>>,
    names: Vec<[String; 2]>,
    activation: Activation,
    dropout: Option<Dropout>,
    training: bool,
    cache: Cache<A>,
}

/// What the backward pass needs from the last training-mode forward pass.
#[derive(Debug, Clone, Default)]
struct Cache<A> {
    /// Input of each dense layer (after the previous activation and dropout).
    inputs: Vec<Array2<A>>,
    /// Pre-activation of each hidden layer, kept only when the activation needs it (GELU).
    pre: Vec<Option<Array2<A>>>,
    /// Activation output before dropout, kept only when dropout changed it.
    act: Vec<Option<Array2<A>>>,
    /// Dropout mask of each hidden layer.
    masks: Vec<Option<Array2<A>>>,
}

/// Unchecked parameters of an [`Mlp`]. Defaults: ReLU, He-normal initialisation, no dropout, seed 0.
///
/// ```
/// use modelopt_nn::{Activation, Init, Mlp};
/// let mlp = Mlp::<f64>::builder(&[4, 16, 3])
///     .activation(Activation::Tanh)
///     .init(Init::XavierUniform)
///     .dropout(0.1)
///     .seed(42)
///     .build()?;
/// assert_eq!(mlp.parameter_count(), 4 * 16 + 16 + 16 * 3 + 3);
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
#[derive(Debug, Clone)]
pub struct MlpBuilder<A> {
    marker: std::marker::PhantomData<A>,
    sizes: Vec<usize>,
    activation: Activation,
    init: Init,
    dropout: f64,
    seed: u64,
}

impl<A: Float> MlpBuilder<A> {
    /// Activation between layers.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }
    /// Weight initialisation.
    pub fn init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }
    /// Dropout probability after each hidden activation, in `[0, 1)` (0 = none).
    pub fn dropout(mut self, p: f64) -> Self {
        self.dropout = p;
        self
    }
    /// Seed of the initialisation and of the dropout masks.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Validate and build (at least an input and an output size, none zero).
    pub fn build(self) -> Result<Mlp<A>> {
        if self.sizes.len() < 2 {
            return Err(CoreError::invalid(
                "sizes",
                format!(
                    "an MLP needs at least input and output sizes, got {:?}",
                    self.sizes
                ),
            )
            .into());
        }
        let mut rng = StdRng::seed_from_u64(self.seed);
        let layers = self
            .sizes
            .windows(2)
            .map(|w| Dense::new(w[0], w[1], self.init, &mut rng))
            .collect::<Result<Vec<_>>>()?;
        let dropout = if self.dropout > 0.0 || !(0.0..1.0).contains(&self.dropout) {
            Some(Dropout::new(
                self.dropout,
                self.seed ^ 0x9e37_79b9_7f4a_7c15,
            )?)
        } else {
            None
        };
        Mlp::from_layers(layers, self.activation, dropout)
    }
}

impl<A: Float> Mlp<A> {
    /// Parameters for an MLP with the given layer sizes, e.g. `&[64, 512, 512, 10]`.
    pub fn builder(sizes: &[usize]) -> MlpBuilder<A> {
        MlpBuilder {
            marker: std::marker::PhantomData,
            sizes: sizes.to_vec(),
            activation: Activation::Relu,
            init: Init::HeNormal,
            dropout: 0.0,
            seed: 0,
        }
    }

    /// An MLP from existing layers (consecutive sizes must chain).
    ///
    /// ```
    /// use modelopt_nn::{Activation, Dense, Mlp};
    /// use ndarray::array;
    /// let a = Dense::from_parts(array![[1.0f32, 0.0]], array![0.0])?;
    /// let b = Dense::from_parts(array![[2.0f32]], array![1.0])?;
    /// let mlp = Mlp::from_layers(vec![a, b], Activation::Relu, None)?;
    /// assert_eq!(mlp.predict(&array![[3.0f32, 5.0]])?, array![[7.0]]);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn from_layers(
        layers: Vec<Dense<A>>,
        activation: Activation,
        dropout: Option<Dropout>,
    ) -> Result<Self> {
        if layers.is_empty() {
            return Err(CoreError::Empty { what: "MLP layers" }.into());
        }
        for (i, pair) in layers.windows(2).enumerate() {
            if pair[0].out_features() != pair[1].in_features() {
                return Err(NnError::Parameter {
                    name: format!("layers.{}.weight", i + 1),
                    reason: format!(
                        "takes {} inputs but layer {i} outputs {}",
                        pair[1].in_features(),
                        pair[0].out_features()
                    ),
                });
            }
        }
        let names = (0..layers.len())
            .map(|i| [format!("layers.{i}.weight"), format!("layers.{i}.bias")])
            .collect();
        Ok(Mlp {
            layers,
            names,
            activation,
            dropout,
            training: true,
            cache: Cache::default(),
        })
    }

    /// The dense layers, first to last.
    ///
    /// ```
    /// use modelopt_nn::Mlp;
    /// let mlp = Mlp::<f32>::builder(&[4, 8, 2]).build()?;
    /// assert_eq!(mlp.layers()[1].out_features(), 2);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn layers(&self) -> &[Dense<A>] {
        &self.layers
    }

    /// The dense layers, mutable (e.g. to mask or fake-quantize weights between steps).
    ///
    /// ```
    /// use modelopt_nn::Mlp;
    /// let mut mlp = Mlp::<f32>::builder(&[4, 2]).build()?;
    /// mlp.layers_mut()[0].weight_mut().fill(0.0);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn layers_mut(&mut self) -> &mut [Dense<A>] {
        &mut self.layers
    }

    /// The activation after every hidden layer.
    ///
    /// ```
    /// use modelopt_nn::{Activation, Mlp};
    /// assert_eq!(Mlp::<f32>::builder(&[4, 2]).build()?.activation(), Activation::Relu);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// The layer sizes, input first.
    ///
    /// ```
    /// use modelopt_nn::Mlp;
    /// assert_eq!(Mlp::<f32>::builder(&[4, 8, 2]).build()?.sizes(), vec![4, 8, 2]);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn sizes(&self) -> Vec<usize> {
        let mut s = vec![self.layers[0].in_features()];
        s.extend(self.layers.iter().map(Dense::out_features));
        s
    }

    /// Total number of scalar parameters (weights and biases).
    ///
    /// ```
    /// use modelopt_nn::Mlp;
    /// assert_eq!(Mlp::<f32>::builder(&[64, 16, 10]).build()?.parameter_count(), 1210);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn parameter_count(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.weight().len() + l.bias().len())
            .sum()
    }

    /// Switch between training mode (caches for backward, dropout on) and inference mode.
    ///
    /// ```
    /// use modelopt_nn::Mlp;
    /// let mut mlp = Mlp::<f32>::builder(&[4, 2]).dropout(0.5).build()?;
    /// mlp.set_training(false);
    /// assert!(!mlp.is_training());
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn set_training(&mut self, training: bool) {
        self.training = training;
        if !training {
            self.cache = Cache::default();
        }
    }

    /// Whether the network is in training mode.
    ///
    /// ```
    /// use modelopt_nn::Mlp;
    /// assert!(Mlp::<f32>::builder(&[4, 2]).build()?.is_training());
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// Inference: logits for a batch `[batch, in]`, without dropout or caching.
    ///
    /// ```
    /// use modelopt_nn::Mlp;
    /// use ndarray::Array2;
    /// let mlp = Mlp::<f32>::builder(&[4, 8, 3]).build()?;
    /// assert_eq!(mlp.predict(&Array2::zeros((5, 4)))?.dim(), (5, 3));
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn predict(&self, x: &ArrayRef2<A>) -> Result<Array2<A>> {
        let mut h = self.layers[0].forward(x)?;
        for layer in &self.layers[1..] {
            self.activation.forward_inplace(&mut h);
            h = layer.forward(&h)?;
        }
        Ok(h)
    }

    /// Forward pass. In training mode it caches the activations for [`Mlp::backward`] and applies
    /// dropout; in inference mode it is [`Mlp::predict`].
    ///
    /// ```
    /// use modelopt_nn::Mlp;
    /// use ndarray::Array2;
    /// let mut mlp = Mlp::<f32>::builder(&[4, 8, 3]).build()?;
    /// let logits = mlp.forward(&Array2::ones((2, 4)))?;
    /// mlp.backward(&Array2::ones(logits.raw_dim()))?;
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn forward(&mut self, x: &ArrayRef2<A>) -> Result<Array2<A>> {
        if !self.training {
            return self.predict(x);
        }
        let last = self.layers.len() - 1;
        let mut cache = std::mem::take(&mut self.cache);
        cache.inputs.clear();
        cache.pre.clear();
        cache.act.clear();
        cache.masks.clear();
        cache.inputs.push(x.to_owned());
        for l in 0..last {
            let mut z = self.layers[l].forward(&cache.inputs[l])?;
            cache
                .pre
                .push(self.activation.needs_input().then(|| z.clone()));
            self.activation.forward_inplace(&mut z);
            match self.dropout.as_mut() {
                Some(d) => {
                    let mask = d.mask::<A>(z.nrows(), z.ncols());
                    cache.act.push(Some(z.clone()));
                    Zip::from(&mut z).and(&mask).for_each(|v, &m| *v = *v * m);
                    cache.masks.push(Some(mask));
                }
                None => {
                    cache.act.push(None);
                    cache.masks.push(None);
                }
            }
            cache.inputs.push(z);
        }
        let out = self.layers[last].forward(&cache.inputs[last]);
        self.cache = cache;
        out
    }

    /// The hidden feature entering layer `k` (`1 <= k < layers`) from the last training-mode
    /// forward pass: the output of hidden layer `k - 1` after activation and dropout. `None` before a
    /// forward pass or for an out-of-range `k`. This is the student feature FitNets hints read.
    ///
    /// ```
    /// use modelopt_nn::Mlp;
    /// use ndarray::Array2;
    /// let mut mlp = Mlp::<f32>::builder(&[4, 8, 3]).build()?;
    /// mlp.forward(&Array2::ones((2, 4)))?;
    /// assert_eq!(mlp.hidden(1).map(|h| h.dim()), Some((2, 8)));
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn hidden(&self, k: usize) -> Option<&Array2<A>> {
        if k == 0 {
            None
        } else {
            self.cache.inputs.get(k)
        }
    }

    /// Backward pass from `d_out = dL/d(logits)`: stores every layer's weight and bias gradient.
    ///
    /// ```
    /// use modelopt_nn::{Mlp, NnError};
    /// use ndarray::Array2;
    /// let mut mlp = Mlp::<f32>::builder(&[4, 3]).build()?;
    /// let err = mlp.backward(&Array2::ones((2, 3))).unwrap_err(); // no forward yet
    /// assert!(matches!(err, NnError::NoForwardCache { .. }));
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn backward(&mut self, d_out: &ArrayRef2<A>) -> Result<()> {
        self.backward_with_hidden(d_out, None)
    }

    /// Backward pass that also adds an extra gradient `dL/dh` on hidden feature `k` (see
    /// [`Mlp::hidden`]), e.g. from a FitNets hint loss on that feature.
    ///
    /// ```
    /// use modelopt_nn::Mlp;
    /// use ndarray::Array2;
    /// let mut mlp = Mlp::<f32>::builder(&[4, 8, 3]).build()?;
    /// let out = mlp.forward(&Array2::ones((2, 4)))?;
    /// let hint_grad = Array2::ones((2, 8));
    /// mlp.backward_with_hidden(&Array2::zeros(out.raw_dim()), Some((1, &hint_grad)))?;
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn backward_with_hidden(
        &mut self,
        d_out: &ArrayRef2<A>,
        hidden_grad: Option<(usize, &ArrayRef2<A>)>,
    ) -> Result<()> {
        let n = self.layers.len();
        if self.cache.inputs.len() != n {
            return Err(NnError::NoForwardCache {
                layer: self.names[0][0].clone(),
            });
        }
        if let Some((k, g)) = hidden_grad {
            let expected = self.cache.inputs.get(k).filter(|_| k > 0).map(|h| h.dim());
            if expected != Some(g.dim()) {
                return Err(NnError::Parameter {
                    name: format!("hidden.{k}"),
                    reason: format!(
                        "gradient of shape {:?} does not match the hidden feature {expected:?}",
                        g.shape()
                    ),
                });
            }
        }
        let mut grad: Option<Array2<A>> = None;
        for l in (0..n).rev() {
            let upstream = match grad.as_ref() {
                Some(g) => g.view(),
                None => d_out.view(),
            };
            let dx = self.layers[l].backward(&self.cache.inputs[l], &upstream, l > 0)?;
            let Some(mut g) = dx else { break };
            // g = dL/d(input of layer l) = dL/d(dropout output of hidden layer l - 1).
            if let Some((k, extra)) = hidden_grad
                && k == l
            {
                Zip::from(&mut g).and(extra).for_each(|v, &e| *v = *v + e);
            }
            let h = l - 1;
            if let Some(mask) = &self.cache.masks[h] {
                Zip::from(&mut g).and(mask).for_each(|v, &m| *v = *v * m);
            }
            let output = self.cache.act[h].as_ref().unwrap_or(&self.cache.inputs[l]);
            let input = self.cache.pre[h].as_ref().unwrap_or(output);
            self.activation.backward(input, output, &mut g);
            grad = Some(g);
        }
        Ok(())
    }

    /// Copies of all parameters by name (`layers.{i}.weight`, `layers.{i}.bias`).
    ///
    /// ```
    /// use modelopt_nn::Mlp;
    /// let p = Mlp::<f32>::builder(&[4, 3]).build()?.named_parameters();
    /// assert_eq!(p["layers.0.weight"].shape(), [3, 4]);
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn named_parameters(&self) -> BTreeMap<String, ArrayD<A>> {
        let mut map = BTreeMap::new();
        for (layer, [w, b]) in self.layers.iter().zip(&self.names) {
            map.insert(w.clone(), layer.weight().clone().into_dyn());
            map.insert(b.clone(), layer.bias().clone().into_dyn());
        }
        map
    }

    /// Load parameters by name: every parameter of the network must be present with its shape; names
    /// the network does not have are an error too (a typo must not load silently).
    ///
    /// ```
    /// use modelopt_nn::Mlp;
    /// let a = Mlp::<f32>::builder(&[4, 3]).seed(1).build()?;
    /// let mut b = Mlp::<f32>::builder(&[4, 3]).seed(2).build()?;
    /// b.load_named_parameters(&a.named_parameters())?;
    /// assert_eq!(a.named_parameters(), b.named_parameters());
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn load_named_parameters(&mut self, params: &BTreeMap<String, ArrayD<A>>) -> Result<()> {
        if let Some(unknown) = params
            .keys()
            .find(|k| !self.names.iter().any(|n| n.contains(k)))
        {
            return Err(NnError::Parameter {
                name: unknown.clone(),
                reason: "not a parameter of this network".into(),
            });
        }
        let mut staged = Vec::with_capacity(self.layers.len());
        for (layer, [wn, bn]) in self.layers.iter().zip(&self.names) {
            let w = take::<A, Ix2>(params, wn, layer.weight().shape())?;
            let b = take::<A, Ix1>(params, bn, layer.bias().shape())?;
            staged.push((w, b));
        }
        for (layer, (w, b)) in self.layers.iter_mut().zip(staged) {
            *layer = Dense::from_parts(w, b)?;
        }
        Ok(())
    }

    /// A view of one parameter by name.
    ///
    /// ```
    /// use modelopt_nn::Mlp;
    /// let mlp = Mlp::<f32>::builder(&[4, 3]).build()?;
    /// assert_eq!(mlp.parameter("layers.0.bias").map(|b| b.len()), Some(3));
    /// assert!(mlp.parameter("layers.7.bias").is_none());
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn parameter(&self, name: &str) -> Option<ArrayViewD<'_, A>> {
        let (i, which) = self.locate(name)?;
        let l = &self.layers[i];
        Some(if which == 0 {
            l.weight().view().into_dyn()
        } else {
            l.bias().view().into_dyn()
        })
    }

    /// A mutable view of one parameter by name (e.g. to re-apply a pruning mask after a step).
    ///
    /// ```
    /// use modelopt_nn::Mlp;
    /// let mut mlp = Mlp::<f32>::builder(&[4, 3]).build()?;
    /// if let Some(mut w) = mlp.parameter_mut("layers.0.weight") { w.fill(0.0); }
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn parameter_mut(&mut self, name: &str) -> Option<ArrayViewMutD<'_, A>> {
        let (i, which) = self.locate(name)?;
        let l = &mut self.layers[i];
        Some(if which == 0 {
            l.weight_mut().view_mut().into_dyn()
        } else {
            l.bias_mut().view_mut().into_dyn()
        })
    }

    fn locate(&self, name: &str) -> Option<(usize, usize)> {
        self.names
            .iter()
            .enumerate()
            .find_map(|(i, n)| n.iter().position(|x| x == name).map(|w| (i, w)))
    }
}

fn take<A: Float, D: ndarray::Dimension>(
    params: &BTreeMap<String, ArrayD<A>>,
    name: &str,
    shape: &[usize],
) -> Result<ndarray::Array<A, D>> {
    let a = params.get(name).ok_or_else(|| NnError::Parameter {
        name: name.to_string(),
        reason: "missing".into(),
    })?;
    if a.shape() != shape {
        return Err(NnError::Parameter {
            name: name.to_string(),
            reason: format!("expected shape {shape:?}, found {:?}", a.shape()),
        });
    }
    a.clone()
        .into_dimensionality::<D>()
        .map_err(|e| NnError::Parameter {
            name: name.to_string(),
            reason: e.to_string(),
        })
}

impl<A: Float> Parameters<A> for Mlp<A> {
    fn visit_parameters(&mut self, f: &mut ParameterVisitor<'_, A>) {
        for (layer, [wn, bn]) in self.layers.iter_mut().zip(&self.names) {
            let (w, b, gw, gb) = layer.parts_mut();
            f(wn, w.view_mut().into_dyn(), gw.view().into_dyn());
            f(bn, b.view_mut().into_dyn(), gb.view().into_dyn());
        }
    }
}
