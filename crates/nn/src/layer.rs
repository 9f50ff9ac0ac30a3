use std::collections::BTreeMap;

use modelopt_tensor_core::{CoreError, Float};
use ndarray::{Array1, ArrayD, ArrayViewD, Dimension, Ix1, Ix2, Ix4, IxDyn, Zip};

use crate::{
    Activation, AvgPool2d, BatchNorm2d, Conv2d, Dense, Dropout, MaxPool2d, NnError, PoolIndices,
    Result, global_avg_pool, global_avg_pool_backward,
};

/// One layer of a [`crate::Sequential`]. Shapes are per sample: images are `[channels, height,
/// width]`, vectors `[features]`; the batch dimension comes first at run time.
///
/// Parameterless layers (pooling, flatten, activations, dropout) hold no tensors but keep their
/// index, so a network's `state_dict` names line up with torch's `nn.Sequential`.
///
/// ```
/// use modelopt_nn::{Activation, Layer, MaxPool2d};
/// let relu = Layer::<f32>::Activation(Activation::Relu);
/// assert_eq!(relu.output_shape(&[8, 26, 26])?, vec![8, 26, 26]);
/// let pool = Layer::<f32>::MaxPool2d(MaxPool2d::new(2, 2, 0)?);
/// assert_eq!(pool.output_shape(&[8, 26, 26])?, vec![8, 13, 13]);
/// assert_eq!(Layer::<f32>::Flatten.output_shape(&[8, 13, 13])?, vec![8 * 13 * 13]);
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Layer<A> {
    /// `nn.Conv2d`.
    Conv2d(Conv2d<A>),
    /// `nn.BatchNorm2d`.
    BatchNorm2d(BatchNorm2d<A>),
    /// `nn.MaxPool2d`.
    MaxPool2d(MaxPool2d),
    /// `nn.AvgPool2d`.
    AvgPool2d(AvgPool2d),
    /// `nn.AdaptiveAvgPool2d(1)`: `[C, H, W] -> [C, 1, 1]`.
    GlobalAvgPool,
    /// `nn.Flatten()`: `[C, H, W] -> [C * H * W]`.
    Flatten,
    /// `nn.Linear` on `[features]`.
    Linear(Dense<A>),
    /// An element-wise activation (`nn.ReLU`, `nn.GELU(approximate="tanh")`, `nn.Tanh`).
    Activation(Activation),
    /// `nn.Dropout` (every element independently; identity in eval mode).
    Dropout(Dropout),
}

/// What a layer's backward pass needs beyond its input and output.
#[derive(Debug, Clone)]
pub(crate) enum Extra<A> {
    None,
    Indices(PoolIndices),
    Mask(ArrayD<A>),
}

fn as_dim<'a, A, D: Dimension>(
    x: ArrayViewD<'a, A>,
    what: &str,
) -> Result<ndarray::ArrayView<'a, A, D>> {
    let shape = x.shape().to_vec();
    x.into_dimensionality::<D>().map_err(|_| {
        CoreError::invalid(
            "input",
            format!("expects a {what} input, got shape {shape:?}"),
        )
        .into()
    })
}

const IMAGES: &str = "4-D [batch, channels, height, width]";
const VECTORS: &str = "2-D [batch, features]";

fn image_shape(s: &[usize]) -> Result<[usize; 3]> {
    match *s {
        [c, h, w] => Ok([c, h, w]),
        _ => Err(CoreError::invalid(
            "input",
            format!("expects [channels, height, width] images, got per-sample shape {s:?}"),
        )
        .into()),
    }
}

impl<A: Float> Layer<A> {
    /// The layer's kind, as torch names the module.
    ///
    /// ```
    /// use modelopt_nn::Layer;
    /// assert_eq!(Layer::<f32>::Flatten.kind(), "Flatten");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Conv2d(_) => "Conv2d",
            Layer::BatchNorm2d(_) => "BatchNorm2d",
            Layer::MaxPool2d(_) => "MaxPool2d",
            Layer::AvgPool2d(_) => "AvgPool2d",
            Layer::GlobalAvgPool => "AdaptiveAvgPool2d",
            Layer::Flatten => "Flatten",
            Layer::Linear(_) => "Linear",
            Layer::Activation(_) => "Activation",
            Layer::Dropout(_) => "Dropout",
        }
    }

    /// Per-sample output shape for a per-sample input shape; an error on channels that do not
    /// match, a kernel larger than the padded input, or a vector where an image is expected.
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(match self {
            Layer::Conv2d(c) => c.output_shape(image_shape(input)?)?.to_vec(),
            Layer::BatchNorm2d(b) => {
                let s = image_shape(input)?;
                if s[0] != b.channels() {
                    return Err(CoreError::invalid(
                        "channels",
                        format!(
                            "input has {} channels, batch norm has {}",
                            s[0],
                            b.channels()
                        ),
                    )
                    .into());
                }
                s.to_vec()
            }
            Layer::MaxPool2d(p) => p.output_shape(image_shape(input)?)?.to_vec(),
            Layer::AvgPool2d(p) => p.output_shape(image_shape(input)?)?.to_vec(),
            Layer::GlobalAvgPool => vec![image_shape(input)?[0], 1, 1],
            Layer::Flatten => vec![input.iter().product()],
            Layer::Linear(d) => match *input {
                [f] if f == d.in_features() => vec![d.out_features()],
                _ => {
                    return Err(CoreError::invalid(
                        "features",
                        format!(
                            "a linear layer of {} inputs got per-sample shape {input:?} (flatten images first)",
                            d.in_features()
                        ),
                    )
                    .into());
                }
            },
            Layer::Activation(_) | Layer::Dropout(_) => input.to_vec(),
        })
    }

    /// Multiply-accumulates per sample (convolutions and linear layers; the rest is counted as 0).
    pub fn macs(&self, input: &[usize]) -> Result<usize> {
        Ok(match self {
            Layer::Conv2d(c) => c.macs(image_shape(input)?)?,
            Layer::Linear(d) => d.weight().len(),
            _ => 0,
        })
    }

    /// Number of trainable scalars.
    pub fn parameter_count(&self) -> usize {
        match self {
            Layer::Conv2d(c) => c.weight().len() + c.bias().map_or(0, |b| b.len()),
            Layer::BatchNorm2d(b) => 2 * b.channels(),
            Layer::Linear(d) => d.weight().len() + d.bias().len(),
            _ => 0,
        }
    }

    /// Inference output for a batch (batch norm uses its running statistics, dropout is off).
    pub fn forward(&self, x: &ArrayD<A>) -> Result<ArrayD<A>> {
        Ok(match self {
            Layer::Conv2d(c) => c.forward(&as_dim::<A, Ix4>(x.view(), IMAGES)?)?.into_dyn(),
            Layer::BatchNorm2d(b) => b
                .forward_eval(&as_dim::<A, Ix4>(x.view(), IMAGES)?)?
                .into_dyn(),
            Layer::MaxPool2d(p) => p.forward(&as_dim::<A, Ix4>(x.view(), IMAGES)?)?.into_dyn(),
            Layer::AvgPool2d(p) => p.forward(&as_dim::<A, Ix4>(x.view(), IMAGES)?)?.into_dyn(),
            Layer::GlobalAvgPool => {
                global_avg_pool(&as_dim::<A, Ix4>(x.view(), IMAGES)?)?.into_dyn()
            }
            Layer::Flatten => flatten(x)?,
            Layer::Linear(d) => d.forward(&as_dim::<A, Ix2>(x.view(), VECTORS)?)?.into_dyn(),
            Layer::Activation(a) => a.forward(x),
            Layer::Dropout(_) => x.clone(),
        })
    }

    /// Training-mode output (batch statistics, dropout on) and what the backward pass needs.
    pub(crate) fn forward_train(&mut self, x: &ArrayD<A>) -> Result<(ArrayD<A>, Extra<A>)> {
        Ok(match self {
            Layer::BatchNorm2d(b) => (
                b.forward_train(&as_dim::<A, Ix4>(x.view(), IMAGES)?)?
                    .into_dyn(),
                Extra::None,
            ),
            Layer::MaxPool2d(p) => {
                let (y, idx) = p.forward_with_indices(&as_dim::<A, Ix4>(x.view(), IMAGES)?)?;
                (y.into_dyn(), Extra::Indices(idx))
            }
            Layer::Dropout(d) => {
                let mask = d.mask_like::<A, _>(IxDyn(x.shape()));
                let y = Zip::from(x).and(&mask).map_collect(|&v, &m| v * m);
                (y, Extra::Mask(mask))
            }
            other => (other.forward(x)?, Extra::None),
        })
    }

    /// Backward from `dy`, given the layer's input `x` and output `y` of the training forward.
    pub(crate) fn backward(
        &mut self,
        x: &ArrayD<A>,
        y: &ArrayD<A>,
        extra: &Extra<A>,
        mut dy: ArrayD<A>,
        input_grad: bool,
    ) -> Result<Option<ArrayD<A>>> {
        let dims4 = |x: &ArrayD<A>| -> Result<(usize, usize, usize, usize)> {
            Ok(as_dim::<A, Ix4>(x.view(), IMAGES)?.dim())
        };
        Ok(match self {
            Layer::Conv2d(c) => c
                .backward(
                    &as_dim::<A, Ix4>(x.view(), IMAGES)?,
                    &as_dim::<A, Ix4>(dy.view(), IMAGES)?,
                    input_grad,
                )?
                .map(|d| d.into_dyn()),
            Layer::Linear(d) => d
                .backward(
                    &as_dim::<A, Ix2>(x.view(), VECTORS)?,
                    &as_dim::<A, Ix2>(dy.view(), VECTORS)?,
                    input_grad,
                )?
                .map(|d| d.into_dyn()),
            Layer::BatchNorm2d(b) => Some(
                b.backward_train(
                    &as_dim::<A, Ix4>(x.view(), IMAGES)?,
                    &as_dim::<A, Ix4>(dy.view(), IMAGES)?,
                )?
                .into_dyn(),
            ),
            Layer::MaxPool2d(p) => {
                let Extra::Indices(idx) = extra else {
                    return Err(NnError::NoForwardCache {
                        layer: "MaxPool2d".into(),
                    });
                };
                Some(
                    p.backward(dims4(x)?, idx, &as_dim::<A, Ix4>(dy.view(), IMAGES)?)?
                        .into_dyn(),
                )
            }
            Layer::AvgPool2d(p) => Some(
                p.backward(dims4(x)?, &as_dim::<A, Ix4>(dy.view(), IMAGES)?)?
                    .into_dyn(),
            ),
            Layer::GlobalAvgPool => Some(
                global_avg_pool_backward(dims4(x)?, &as_dim::<A, Ix4>(dy.view(), IMAGES)?)?
                    .into_dyn(),
            ),
            Layer::Flatten => Some(
                dy.into_shape_with_order(IxDyn(x.shape()))
                    .map_err(|e| CoreError::invalid("flatten gradient", e.to_string()))?,
            ),
            Layer::Activation(a) => {
                check_same(&dy, y)?;
                a.backward(x, y, &mut dy);
                Some(dy)
            }
            Layer::Dropout(_) => {
                let Extra::Mask(mask) = extra else {
                    return Err(NnError::NoForwardCache {
                        layer: "Dropout".into(),
                    });
                };
                check_same(&dy, mask)?;
                Zip::from(&mut dy).and(mask).for_each(|g, &m| *g = *g * m);
                Some(dy)
            }
        })
    }

    /// The layer's tensors by `state_dict` suffix (`weight`, `bias`, `running_mean`, ...).
    pub(crate) fn state(&self) -> Vec<(&'static str, ArrayD<A>)> {
        match self {
            Layer::Conv2d(c) => {
                let mut v = vec![("weight", c.weight().clone().into_dyn())];
                if let Some(b) = c.bias() {
                    v.push(("bias", b.clone().into_dyn()));
                }
                v
            }
            Layer::BatchNorm2d(b) => vec![
                ("weight", b.weight().clone().into_dyn()),
                ("bias", b.bias().clone().into_dyn()),
                ("running_mean", b.running_mean().clone().into_dyn()),
                ("running_var", b.running_var().clone().into_dyn()),
                (
                    "num_batches_tracked",
                    ArrayD::from_elem(
                        IxDyn(&[]),
                        crate::float_const(b.num_batches_tracked() as f64),
                    ),
                ),
            ],
            Layer::Linear(d) => vec![
                ("weight", d.weight().clone().into_dyn()),
                ("bias", d.bias().clone().into_dyn()),
            ],
            _ => Vec::new(),
        }
    }

    /// Replace the layer's tensors from `map` (names `{prefix}.{suffix}`), every one required with
    /// its shape except batch norm's `num_batches_tracked`. Returns the names used.
    pub(crate) fn load_state(
        &mut self,
        prefix: &str,
        map: &BTreeMap<String, ArrayD<A>>,
    ) -> Result<Vec<String>> {
        let mut used = Vec::new();
        let mut take = |suffix: &str, shape: &[usize]| -> Result<ArrayD<A>> {
            let name = format!("{prefix}.{suffix}");
            let a = map.get(&name).ok_or_else(|| NnError::Parameter {
                name: name.clone(),
                reason: "missing".into(),
            })?;
            if a.shape() != shape {
                return Err(NnError::Parameter {
                    name,
                    reason: format!("expected shape {shape:?}, found {:?}", a.shape()),
                });
            }
            used.push(name);
            Ok(a.clone())
        };
        let fix = |name: &str, e: ndarray::ShapeError| NnError::Parameter {
            name: format!("{prefix}.{name}"),
            reason: e.to_string(),
        };
        match self {
            Layer::Conv2d(c) => {
                let w = take("weight", c.weight().shape())?
                    .into_dimensionality::<Ix4>()
                    .map_err(|e| fix("weight", e))?;
                let b = match c.bias() {
                    Some(b) => Some(
                        take("bias", b.shape())?
                            .into_dimensionality::<Ix1>()
                            .map_err(|e| fix("bias", e))?,
                    ),
                    None => None,
                };
                *c = Conv2d::from_parts(w, b, *c.window(), c.groups())?;
            }
            Layer::BatchNorm2d(b) => {
                let ch = [b.channels()];
                let mut one = |s: &str| -> Result<Array1<A>> {
                    take(s, &ch)?
                        .into_dimensionality::<Ix1>()
                        .map_err(|e| fix(s, e))
                };
                let (w, bi, m, v) = (
                    one("weight")?,
                    one("bias")?,
                    one("running_mean")?,
                    one("running_var")?,
                );
                b.weight_mut().assign(&w);
                b.bias_mut().assign(&bi);
                b.running_mean_mut().assign(&m);
                b.running_var_mut().assign(&v);
                let name = format!("{prefix}.num_batches_tracked");
                if let Some(n) = map.get(&name) {
                    let count = n.iter().next().map_or(0.0, |v| v.to_f64_lossless());
                    if n.len() != 1 || !(count >= 0.0 && count.is_finite()) {
                        return Err(NnError::Parameter {
                            name,
                            reason: "expected one non-negative count".into(),
                        });
                    }
                    b.set_num_batches_tracked(count as u64);
                    used.push(name);
                }
            }
            Layer::Linear(d) => {
                let w = take("weight", d.weight().shape())?
                    .into_dimensionality::<Ix2>()
                    .map_err(|e| fix("weight", e))?;
                let b = take("bias", d.bias().shape())?
                    .into_dimensionality::<Ix1>()
                    .map_err(|e| fix("bias", e))?;
                *d = Dense::from_parts(w, b)?;
            }
            _ => {}
        }
        Ok(used)
    }
}

fn flatten<A: Float>(x: &ArrayD<A>) -> Result<ArrayD<A>> {
    let n = x.shape().first().copied().unwrap_or(0);
    let rest: usize = x.shape().iter().skip(1).product();
    Ok(x.as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&[n, rest]))
        .map_err(|e| CoreError::invalid("flatten", e.to_string()))?)
}

fn check_same<A>(a: &ArrayD<A>, b: &ArrayD<A>) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(CoreError::ShapeMismatch {
            expected: b.shape().to_vec(),
            found: a.shape().to_vec(),
        }
        .into());
    }
    Ok(())
}
