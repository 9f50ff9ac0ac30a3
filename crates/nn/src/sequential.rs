use std::collections::BTreeMap;

use modelopt_tensor_core::{CoreError, Float};
use ndarray::{Array2, ArrayD, ArrayRef2, Ix2, IxDyn, Zip};

use crate::layer::Extra;
use crate::{Layer, NnError, ParameterVisitor, Parameters, Result};

/// A feed-forward stack of [`Layer`]s, as torch's `nn.Sequential`: convolutional networks from
/// images to logits.
///
/// Inputs are rows of flattened samples `[batch, C * H * W]` (so the data sets, mini-batches and
/// trainers of the dense networks apply unchanged) and are viewed as `[batch, C, H, W]` by the
/// declared per-sample input shape; the output is `[batch, classes]`. Every layer has a name, its
/// index by default (`0`, `1`, ...) or any dotted name (`features.3`), and tensors are named
/// `{layer}.weight`, `{layer}.bias`, `{layer}.running_mean`, ... exactly as in torch's
/// `state_dict`, so [`Sequential::state_dict`] writes a file torch loads and
/// [`Sequential::load_state_dict`] reads one torch wrote.
///
/// Shapes are checked through the whole stack when built; errors name the layer.
///
/// ```
/// use modelopt_nn::{Activation, Conv2d, Dense, Layer, MaxPool2d, Sequential, softmax_cross_entropy, Adam, Optimizer};
/// use ndarray::Array2;
/// use rand::SeedableRng;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let mut net = Sequential::builder(&[1, 8, 8])
///     .push(Layer::Conv2d(Conv2d::<f32>::builder(1, 4, 3).padding(1).build(&mut rng)?))
///     .push(Layer::Activation(Activation::Relu))
///     .push(Layer::MaxPool2d(MaxPool2d::new(2, 2, 0)?))
///     .push(Layer::Flatten)
///     .push(Layer::Linear(Dense::new(4 * 4 * 4, 10, Default::default(), &mut rng)?))
///     .build()?;
/// let mut adam = Adam::builder(1e-3).build()?;
/// let x = Array2::zeros((2, 64));
/// let logits = net.forward(&x)?;
/// let (_, grad) = softmax_cross_entropy(&logits, &[3, 7])?;
/// net.backward(&grad)?;
/// adam.step(&mut net)?;
/// assert!(net.state_dict().contains_key("4.weight"));
/// assert_eq!(net.macs(), 4 * 8 * 8 * 9 + 64 * 10);
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Sequential<A> {
    input_shape: Vec<usize>,
    layers: Vec<Layer<A>>,
    names: Vec<String>,
    /// Per-sample shapes: `shapes[0]` the input, `shapes[l + 1]` the output of layer `l`.
    shapes: Vec<Vec<usize>>,
    training: bool,
    /// Training forward: `values[0]` the input, `values[l + 1]` the output of layer `l`.
    values: Vec<ArrayD<A>>,
    extras: Vec<Extra<A>>,
}

/// The layers of a [`Sequential`] before their shapes are checked.
///
/// ```
/// use modelopt_nn::{Layer, Sequential};
/// let err = Sequential::<f32>::builder(&[1, 8, 8]).push(Layer::GlobalAvgPool).build().unwrap_err();
/// assert!(err.to_string().contains("logits")); // the output must be [classes] per sample
/// ```
#[derive(Debug, Clone)]
pub struct SequentialBuilder<A> {
    input_shape: Vec<usize>,
    layers: Vec<(String, Layer<A>)>,
}

impl<A: Float> SequentialBuilder<A> {
    /// Append a layer named by its index (`0`, `1`, ...).
    pub fn push(mut self, layer: Layer<A>) -> Self {
        let name = self.layers.len().to_string();
        self.layers.push((name, layer));
        self
    }

    /// Append a layer with a `state_dict` name, e.g. `features.3` or `classifier.1`.
    pub fn push_named(mut self, name: impl Into<String>, layer: Layer<A>) -> Self {
        self.layers.push((name.into(), layer));
        self
    }

    /// Check names (unique, non-empty) and shapes through the stack, and build. The last output must
    /// be one vector per sample (the logits).
    pub fn build(self) -> Result<Sequential<A>> {
        if self.layers.is_empty() {
            return Err(CoreError::Empty {
                what: "sequential layers",
            }
            .into());
        }
        if self.input_shape.is_empty() || self.input_shape.contains(&0) {
            return Err(CoreError::invalid(
                "input_shape",
                format!("needs non-zero sizes, got {:?}", self.input_shape),
            )
            .into());
        }
        let (names, layers): (Vec<_>, Vec<_>) = self.layers.into_iter().unzip();
        for (i, n) in names.iter().enumerate() {
            if n.is_empty() || names[..i].contains(n) {
                return Err(CoreError::invalid(
                    "layer name",
                    format!("`{n}` is empty or used twice"),
                )
                .into());
            }
        }
        let shapes = infer_shapes(&self.input_shape, &layers, &names)?;
        if shapes.last().map_or(0, Vec::len) != 1 {
            return Err(CoreError::invalid(
                "output",
                format!(
                    "the last layer must give logits [classes] per sample, gives {:?}",
                    shapes.last()
                ),
            )
            .into());
        }
        Ok(Sequential {
            input_shape: self.input_shape,
            extras: Vec::new(),
            layers,
            names,
            shapes,
            training: true,
            values: Vec::new(),
        })
    }
}

fn infer_shapes<A: Float>(
    input: &[usize],
    layers: &[Layer<A>],
    names: &[String],
) -> Result<Vec<Vec<usize>>> {
    let mut shapes = vec![input.to_vec()];
    for (layer, name) in layers.iter().zip(names) {
        let next = layer
            .output_shape(shapes.last().map_or(&[][..], Vec::as_slice))
            .map_err(|e| in_layer(name, layer, e))?;
        shapes.push(next);
    }
    Ok(shapes)
}

fn in_layer<A: Float>(name: &str, layer: &Layer<A>, e: NnError) -> NnError {
    NnError::Layer {
        layer: name.to_string(),
        kind: layer.kind(),
        source: Box::new(e),
    }
}

impl<A: Float> Sequential<A> {
    /// Start a network for samples of `input_shape` (e.g. `[1, 28, 28]`); see [`SequentialBuilder`].
    pub fn builder(input_shape: &[usize]) -> SequentialBuilder<A> {
        SequentialBuilder {
            input_shape: input_shape.to_vec(),
            layers: Vec::new(),
        }
    }

    /// Rebuild with the same names and input shape from edited layers (e.g. after filter pruning
    /// or batch-norm folding), checking shapes again.
    pub fn with_layers(&self, layers: Vec<(String, Layer<A>)>) -> Result<Self> {
        let mut b = Sequential::builder(&self.input_shape);
        b.layers = layers;
        let mut net = b.build()?;
        net.training = self.training;
        Ok(net)
    }

    /// Per-sample input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Number of input features per sample (the columns of [`Sequential::forward`]'s input).
    pub fn input_len(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Number of outputs (classes).
    pub fn output_len(&self) -> usize {
        self.shapes
            .last()
            .and_then(|s| s.first())
            .copied()
            .unwrap_or(0)
    }

    /// The layers, first to last.
    pub fn layers(&self) -> &[Layer<A>] {
        &self.layers
    }

    /// The layers, mutable: values may change (masks, fake quantization); for changes of shape
    /// build a new network with [`Sequential::with_layers`].
    pub fn layers_mut(&mut self) -> &mut [Layer<A>] {
        &mut self.layers
    }

    /// Layer names, first to last.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Names and layers, cloned (to edit and rebuild with [`Sequential::with_layers`]).
    pub fn named_layers(&self) -> Vec<(String, Layer<A>)> {
        self.names
            .iter()
            .cloned()
            .zip(self.layers.iter().cloned())
            .collect()
    }

    /// Per-sample shapes: the input, then each layer's output.
    pub fn shapes(&self) -> &[Vec<usize>] {
        &self.shapes
    }

    /// Number of trainable scalars.
    pub fn parameter_count(&self) -> usize {
        self.layers.iter().map(Layer::parameter_count).sum()
    }

    /// Multiply-accumulates per sample (convolutions and linear layers).
    pub fn macs(&self) -> usize {
        self.layers
            .iter()
            .zip(&self.shapes)
            .map(|(l, s)| l.macs(s).unwrap_or(0))
            .sum()
    }

    /// Switch between training mode (batch statistics, dropout, caches) and inference mode.
    pub fn set_training(&mut self, training: bool) {
        self.training = training;
        if !training {
            self.values.clear();
            self.extras.clear();
        }
    }

    /// Whether the network is in training mode.
    pub fn is_training(&self) -> bool {
        self.training
    }

    fn input(&self, x: &ArrayRef2<A>) -> Result<ArrayD<A>> {
        if x.ncols() != self.input_len() {
            return Err(CoreError::invalid(
                "input",
                format!(
                    "expects rows of {} = {:?} values, got {}",
                    self.input_len(),
                    self.input_shape,
                    x.ncols()
                ),
            )
            .into());
        }
        let mut shape = vec![x.nrows()];
        shape.extend(&self.input_shape);
        x.as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&shape))
            .map_err(|e| CoreError::invalid("input", e.to_string()).into())
    }

    fn output(y: ArrayD<A>) -> Result<Array2<A>> {
        y.into_dimensionality::<Ix2>()
            .map_err(|e| CoreError::invalid("output", e.to_string()).into())
    }

    /// Inference: logits for rows of flattened samples, without dropout or caching, batch norm by
    /// its running statistics.
    pub fn predict(&self, x: &ArrayRef2<A>) -> Result<Array2<A>> {
        let mut h = self.input(x)?;
        for (layer, name) in self.layers.iter().zip(&self.names) {
            h = layer.forward(&h).map_err(|e| in_layer(name, layer, e))?;
        }
        Self::output(h)
    }

    /// Inference up to and including layer `k`: its output `[batch, ...]` (e.g. a teacher's feature
    /// map for a FitNets hint), without dropout or caching.
    ///
    /// ```
    /// use modelopt_nn::{Conv2d, Dense, Init, Layer, Sequential};
    /// use ndarray::Array2;
    /// use rand::SeedableRng;
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    /// let net = Sequential::<f32>::builder(&[1, 4, 4])
    ///     .push(Layer::Conv2d(Conv2d::builder(1, 2, 3).build(&mut rng)?))
    ///     .push(Layer::Flatten)
    ///     .push(Layer::Linear(Dense::new(8, 3, Init::HeNormal, &mut rng)?))
    ///     .build()?;
    /// assert_eq!(net.features(&Array2::zeros((5, 16)), 0)?.shape(), &[5, 2, 2, 2]);
    /// assert!(net.features(&Array2::zeros((5, 16)), 3).is_err()); // no layer 3
    /// # Ok::<(), modelopt_nn::NnError>(())
    /// ```
    pub fn features(&self, x: &ArrayRef2<A>, k: usize) -> Result<ArrayD<A>> {
        if k >= self.layers.len() {
            return Err(CoreError::invalid(
                "layer",
                format!(
                    "index {k} out of range: the network has {} layers",
                    self.layers.len()
                ),
            )
            .into());
        }
        let mut h = self.input(x)?;
        for (layer, name) in self.layers[..=k].iter().zip(&self.names) {
            h = layer.forward(&h).map_err(|e| in_layer(name, layer, e))?;
        }
        Ok(h)
    }

    /// Forward pass. In training mode it caches what [`Sequential::backward`] needs, uses batch
    /// statistics (and updates the running ones) and applies dropout; otherwise it is
    /// [`Sequential::predict`].
    pub fn forward(&mut self, x: &ArrayRef2<A>) -> Result<Array2<A>> {
        if !self.training {
            return self.predict(x);
        }
        self.values.clear();
        self.extras.clear();
        let mut h = self.input(x)?;
        for (layer, name) in self.layers.iter_mut().zip(&self.names) {
            let (y, extra) = layer
                .forward_train(&h)
                .map_err(|e| in_layer(name, layer, e))?;
            self.values.push(std::mem::replace(&mut h, y));
            self.extras.push(extra);
        }
        let out = Self::output(h.clone());
        self.values.push(h);
        out
    }

    /// Output of layer `k` from the last training-mode forward pass (e.g. a feature map for a
    /// FitNets hint), `[batch, ...]`; `None` before a forward pass or out of range.
    pub fn hidden(&self, k: usize) -> Option<&ArrayD<A>> {
        self.values.get(k + 1).filter(|_| k + 1 < self.values.len())
    }

    /// Backward pass from `d_out = dL/d(logits)`: stores every layer's parameter gradients.
    pub fn backward(&mut self, d_out: &ArrayRef2<A>) -> Result<()> {
        self.backward_with_hidden(d_out, None)
    }

    /// Backward pass that also adds `dL/dh` on the output of layer `k` (see
    /// [`Sequential::hidden`]), e.g. from a hint loss.
    pub fn backward_with_hidden(
        &mut self,
        d_out: &ArrayRef2<A>,
        hidden_grad: Option<(usize, &ArrayD<A>)>,
    ) -> Result<()> {
        let n = self.layers.len();
        if self.values.len() != n + 1 {
            return Err(NnError::NoForwardCache {
                layer: self.names[0].clone(),
            });
        }
        if d_out.shape() != self.values[n].shape() {
            return Err(CoreError::ShapeMismatch {
                expected: self.values[n].shape().to_vec(),
                found: d_out.shape().to_vec(),
            }
            .into());
        }
        if let Some((k, g)) = hidden_grad
            && self.values.get(k + 1).map(|h| h.shape()) != Some(g.shape())
        {
            return Err(NnError::Parameter {
                name: format!("hidden.{k}"),
                reason: format!(
                    "gradient of shape {:?} does not match the layer output",
                    g.shape()
                ),
            });
        }
        // The first layer with parameters: no input gradient is needed below it.
        let first = self
            .layers
            .iter()
            .position(|l| l.parameter_count() > 0)
            .unwrap_or(n);
        let mut grad = d_out.to_owned().into_dyn();
        for l in (first..n).rev() {
            if let Some((k, extra)) = hidden_grad
                && k == l
            {
                Zip::from(&mut grad)
                    .and(extra)
                    .for_each(|g, &e| *g = *g + e);
            }
            let (layer, name) = (&mut self.layers[l], &self.names[l]);
            let dx = layer
                .backward(
                    &self.values[l],
                    &self.values[l + 1],
                    &self.extras[l],
                    grad,
                    l > first,
                )
                .map_err(|e| in_layer(name, layer, e))?;
            match dx {
                Some(d) => grad = d,
                None => break,
            }
        }
        Ok(())
    }

    /// Every tensor by its `state_dict` name: parameters and batch-norm buffers (`running_mean`,
    /// `running_var`, `num_batches_tracked`), as torch names them.
    pub fn state_dict(&self) -> BTreeMap<String, ArrayD<A>> {
        let mut map = BTreeMap::new();
        for (layer, name) in self.layers.iter().zip(&self.names) {
            for (suffix, t) in layer.state() {
                map.insert(format!("{name}.{suffix}"), t);
            }
        }
        map
    }

    /// Load every tensor by name: all of the network's must be present with their shapes (batch
    /// norm's `num_batches_tracked` may be absent) and names the network does not have are an error,
    /// so a mismatched file never loads half-way. Nothing changes on error.
    pub fn load_state_dict(&mut self, map: &BTreeMap<String, ArrayD<A>>) -> Result<()> {
        let mut staged = self.layers.clone();
        let mut used = std::collections::BTreeSet::new();
        for (layer, name) in staged.iter_mut().zip(&self.names) {
            let kind = layer.kind();
            let names = layer.load_state(name, map).map_err(|e| NnError::Layer {
                layer: name.clone(),
                kind,
                source: Box::new(e),
            })?;
            used.extend(names);
        }
        if let Some(extra) = map.keys().find(|k| !used.contains(*k)) {
            return Err(NnError::Parameter {
                name: extra.clone(),
                reason: "not a tensor of this network".into(),
            });
        }
        self.layers = staged;
        self.values.clear();
        self.extras.clear();
        Ok(())
    }
}

impl<A: Float> Parameters<A> for Sequential<A> {
    fn visit_parameters(&mut self, f: &mut ParameterVisitor<'_, A>) {
        for (layer, name) in self.layers.iter_mut().zip(&self.names) {
            match layer {
                Layer::Conv2d(c) => {
                    let (w, b, gw, gb) = c.parts_mut();
                    f(
                        &format!("{name}.weight"),
                        w.view_mut().into_dyn(),
                        gw.view().into_dyn(),
                    );
                    if let (Some(b), Some(gb)) = (b, gb) {
                        f(
                            &format!("{name}.bias"),
                            b.view_mut().into_dyn(),
                            gb.view().into_dyn(),
                        );
                    }
                }
                Layer::BatchNorm2d(bn) => {
                    let (w, b, gw, gb) = bn.parts_mut();
                    f(
                        &format!("{name}.weight"),
                        w.view_mut().into_dyn(),
                        gw.view().into_dyn(),
                    );
                    f(
                        &format!("{name}.bias"),
                        b.view_mut().into_dyn(),
                        gb.view().into_dyn(),
                    );
                }
                Layer::Linear(d) => {
                    let (w, b, gw, gb) = d.parts_mut();
                    f(
                        &format!("{name}.weight"),
                        w.view_mut().into_dyn(),
                        gw.view().into_dyn(),
                    );
                    f(
                        &format!("{name}.bias"),
                        b.view_mut().into_dyn(),
                        gb.view().into_dyn(),
                    );
                }
                _ => {}
            }
        }
    }
}
