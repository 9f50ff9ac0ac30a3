//! Saving and loading a [`QuantizedSequential`] as safetensors (layout in `docs/formats.md`):
//! the network's structure in the metadata, layer by layer, and each integer layer's tensors as
//! a [`QuantizedLinear`] is stored (a convolution once per group).

use std::collections::BTreeMap;
use std::path::Path;

use modelopt_io::{DType, SafetensorsFile, SafetensorsWriter, TensorInfo};
use modelopt_nn::{Activation, AvgPool2d, Dropout, Layer, MaxPool2d, Window};
use modelopt_tensor_core::CoreError;

use super::file::{get_linear, put_linear};
use super::{QuantizedConv2d, QuantizedLayer, QuantizedSequential};
use crate::Result;

/// Metadata key marking a quantized-network file; its value is the layout version.
pub const QUANTIZED_SEQUENTIAL_KEY: &str = "modelopt.quantized_sequential";

fn bad(key: &str, reason: impl Into<String>) -> crate::Error {
    CoreError::invalid(
        "quantized network file",
        format!("{key}: {}", reason.into()),
    )
    .into()
}

fn numbers(text: &str, key: &str) -> Result<Vec<usize>> {
    text.split(',')
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| bad(key, format!("`{text}` is not a list of numbers")))
        })
        .collect()
}

fn list(v: &[usize]) -> String {
    v.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

/// A square pooling window as `kernel,stride,padding`; other windows have no constructor.
fn square(w: &Window, name: &str) -> Result<String> {
    let sq = |a: [usize; 2]| a[0] == a[1];
    if !(sq(w.kernel) && sq(w.stride) && sq(w.padding)) || w.dilation != [1, 1] {
        return Err(bad(name, format!("pooling window {w:?} is not square")));
    }
    Ok(list(&[w.kernel[0], w.stride[0], w.padding[0]]))
}

impl QuantizedSequential {
    /// Writes the network to `path` (whole or not at all); returns the file size in bytes.
    /// Batch norm that was not folded (not after a convolution) cannot be saved: an error.
    ///
    /// ```
    /// use modelopt::nn::{Activation, Conv2d, Dense, Init, Layer, Sequential};
    /// use modelopt::quantized::{Calibration, LinearScheme, QuantizedSequential};
    /// use modelopt::kernels::Par;
    /// use ndarray::Array2;
    /// use rand::SeedableRng;
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    /// let net = Sequential::builder(&[1, 6, 6])
    ///     .push(Layer::Conv2d(Conv2d::<f32>::builder(1, 4, 3).build(&mut rng)?))
    ///     .push(Layer::Activation(Activation::Relu))
    ///     .push(Layer::Flatten)
    ///     .push(Layer::Linear(Dense::new(64, 3, Init::HeNormal, &mut rng)?))
    ///     .build()?;
    /// let x = Array2::from_shape_fn((8, 36), |(i, j)| ((i + j) % 5) as f32 / 5.0);
    /// let q = QuantizedSequential::from_sequential(&net, LinearScheme::W8A8Static, &x, 4, Calibration::MinMax)?;
    /// let path = std::env::temp_dir().join(format!("modelopt-qseq-doc-{}.safetensors", std::process::id()));
    /// q.save(&path)?;
    /// let back = QuantizedSequential::load(&path)?;
    /// assert_eq!(back.predict(&x, Par::Seq)?, q.predict(&x, Par::Seq)?);
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), modelopt::Error>(())
    /// ```
    pub fn save(&self, path: impl AsRef<Path>) -> Result<u64> {
        let path = path.as_ref();
        let (mut infos, mut payloads) = (Vec::new(), Vec::<Vec<u8>>::new());
        let mut meta = BTreeMap::new();
        meta.insert(QUANTIZED_SEQUENTIAL_KEY.to_string(), "1".to_string());
        meta.insert("input_shape".into(), list(&self.input_shape));
        meta.insert("layers".into(), self.layers.len().to_string());
        let mut add = |name: String, dtype: DType, shape: Vec<usize>, bytes: Vec<u8>| {
            infos.push(TensorInfo::new(name, dtype, shape));
            payloads.push(bytes);
        };
        for (i, (name, layer)) in self.layers.iter().enumerate() {
            let p = |s: &str| format!("layers.{i}.{s}");
            meta.insert(p("name"), name.clone());
            let (kind, params) = match layer {
                QuantizedLayer::Conv2d(c) => {
                    let w = c.window();
                    let window = [w.kernel, w.stride, w.padding, w.dilation].concat();
                    for (g, l) in c.group_layers().iter().enumerate() {
                        put_linear(l, &p(&format!("group.{g}.")), &mut add, &mut meta);
                    }
                    let groups = c.group_layers().len();
                    (
                        "conv2d",
                        format!("{};{groups};{}", list(&window), c.in_channels()),
                    )
                }
                QuantizedLayer::Linear(l) => {
                    put_linear(l, &p(""), &mut add, &mut meta);
                    ("linear", String::new())
                }
                QuantizedLayer::Float(f) => match f {
                    Layer::MaxPool2d(m) => ("max_pool2d", square(m.window(), name)?),
                    Layer::AvgPool2d(a) => (
                        "avg_pool2d",
                        format!("{};{}", square(a.window(), name)?, a.includes_pad()),
                    ),
                    Layer::GlobalAvgPool => ("global_avg_pool", String::new()),
                    Layer::Flatten => ("flatten", String::new()),
                    Layer::Dropout(d) => ("dropout", d.p().to_string()),
                    Layer::Activation(a) => (
                        "activation",
                        match a {
                            Activation::Relu => "relu",
                            Activation::Gelu => "gelu",
                            Activation::Tanh => "tanh",
                            _ => "identity",
                        }
                        .to_string(),
                    ),
                    other => {
                        return Err(bad(
                            name,
                            format!(
                                "a {} layer in f32 cannot be saved (fold batch norm into the convolution before it)",
                                other.kind()
                            ),
                        ));
                    }
                },
            };
            meta.insert(p("kind"), kind.to_string());
            meta.insert(p("params"), params);
        }
        Ok(SafetensorsWriter::write_all(path, infos, &payloads, meta)?)
    }

    /// Reads a file written by [`QuantizedSequential::save`]; every tensor's dtype and shape is
    /// checked, and the layers must chain (an error names the first that does not).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let f = SafetensorsFile::open(path)?;
        let meta = f.metadata();
        let get = |key: &str| {
            meta.get(key)
                .ok_or_else(|| bad(key, "missing from the metadata"))
        };
        if get(QUANTIZED_SEQUENTIAL_KEY)? != "1" {
            return Err(bad(QUANTIZED_SEQUENTIAL_KEY, "unsupported layout version"));
        }
        let input_shape = numbers(get("input_shape")?, "input_shape")?;
        let count: usize = get("layers")?
            .parse()
            .map_err(|_| bad("layers", "not a number"))?;
        let mut layers = Vec::with_capacity(count.min(1 << 16));
        for i in 0..count {
            let p = |s: &str| format!("layers.{i}.{s}");
            let name = get(&p("name"))?.clone();
            let params = get(&p("params"))?;
            let parts: Vec<&str> = params.split(';').collect();
            let pool = |text: &str| -> Result<(usize, usize, usize)> {
                match numbers(text, &p("params"))?[..] {
                    [k, s, pad] => Ok((k, s, pad)),
                    _ => Err(bad(&p("params"), "expected kernel,stride,padding")),
                }
            };
            let layer = match get(&p("kind"))?.as_str() {
                "conv2d" => {
                    let (window, groups, in_channels) = match parts[..] {
                        [w, g, c] => (
                            numbers(w, &p("params"))?,
                            g.parse::<usize>()
                                .map_err(|_| bad(&p("params"), "groups"))?,
                            c.parse::<usize>()
                                .map_err(|_| bad(&p("params"), "channels"))?,
                        ),
                        _ => return Err(bad(&p("params"), "expected window;groups;channels")),
                    };
                    let [kh, kw, sh, sw, ph, pw, dh, dw] = window[..] else {
                        return Err(bad(&p("params"), "a window of 8 numbers"));
                    };
                    let window = Window::new([kh, kw], [sh, sw], [ph, pw], [dh, dw])?;
                    let group_layers = (0..groups)
                        .map(|g| get_linear(&f, &p(&format!("group.{g}."))))
                        .collect::<Result<Vec<_>>>()?;
                    QuantizedLayer::Conv2d(QuantizedConv2d::from_groups(
                        group_layers,
                        window,
                        in_channels,
                    )?)
                }
                "linear" => QuantizedLayer::Linear(get_linear(&f, &p(""))?),
                "max_pool2d" => {
                    let (k, s, pad) = pool(params)?;
                    QuantizedLayer::Float(Layer::MaxPool2d(MaxPool2d::new(k, s, pad)?))
                }
                "avg_pool2d" => {
                    let [w, inc] = parts[..] else {
                        return Err(bad(&p("params"), "expected window;include_pad"));
                    };
                    let (k, s, pad) = pool(w)?;
                    let include = inc.parse().map_err(|_| bad(&p("params"), "include_pad"))?;
                    QuantizedLayer::Float(Layer::AvgPool2d(
                        AvgPool2d::new(k, s, pad)?.count_include_pad(include),
                    ))
                }
                "global_avg_pool" => QuantizedLayer::Float(Layer::GlobalAvgPool),
                "flatten" => QuantizedLayer::Float(Layer::Flatten),
                "dropout" => {
                    let rate = params
                        .parse()
                        .map_err(|_| bad(&p("params"), "dropout rate"))?;
                    QuantizedLayer::Float(Layer::Dropout(Dropout::new(rate, 0)?))
                }
                "activation" => QuantizedLayer::Float(Layer::Activation(match params.as_str() {
                    "relu" => Activation::Relu,
                    "gelu" => Activation::Gelu,
                    "tanh" => Activation::Tanh,
                    "identity" => Activation::Identity,
                    other => return Err(bad(&p("params"), format!("activation `{other}`"))),
                })),
                other => return Err(bad(&p("kind"), format!("unknown layer kind `{other}`"))),
            };
            layers.push((name, layer));
        }
        QuantizedSequential::from_layers(layers, input_shape)
    }
}
