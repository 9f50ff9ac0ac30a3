//! The CNN student a [`super::Pipeline`] makes: `[Conv BN ReLU MaxPool] x n, Flatten, Linear`.

use modelopt_nn::{Activation, BatchNorm2d, Conv2d, Dense, Init, Layer, MaxPool2d, Sequential};
use modelopt_tensor_core::CoreError;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::Result;

/// The shape of a CNN student: for each entry of `channels`, a `kernel x kernel` convolution
/// (no padding) with that many filters, a batch norm (on by default: the pipeline prunes filters by
/// its scales and folds it before quantization), ReLU and 2x2 max pooling; then Flatten and a
/// linear classifier. Layers are named by index as torch's `nn.Sequential` of the same modules
/// (`0.weight`, `1.running_mean`, `9.weight`).
///
/// ```
/// use modelopt::pipeline::CnnStudent;
/// let net = CnnStudent::new([1, 28, 28], &[8, 16], 10).build(0)?;
/// // 28 -conv3-> 26 -pool-> 13 -conv3-> 11 -pool-> 5: 16 * 5 * 5 features.
/// assert_eq!(net.shapes()[net.shapes().len() - 2], vec![16 * 5 * 5]);
/// assert_eq!(net.output_len(), 10);
/// assert!(CnnStudent::new([1, 28, 28], &[0, 16], 10).build(0).is_err());
/// # Ok::<(), modelopt::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CnnStudent {
    input_shape: [usize; 3],
    channels: Vec<usize>,
    classes: usize,
    kernel: usize,
    batch_norm: bool,
}

impl CnnStudent {
    /// A student for images of `input_shape` (`[channels, height, width]`) with one convolution
    /// block per entry of `channels` and `classes` outputs; 3x3 kernels, batch norm.
    pub fn new(input_shape: [usize; 3], channels: &[usize], classes: usize) -> Self {
        CnnStudent {
            input_shape,
            channels: channels.to_vec(),
            classes,
            kernel: 3,
            batch_norm: true,
        }
    }

    /// Kernel size of every convolution.
    pub fn kernel(mut self, kernel: usize) -> Self {
        self.kernel = kernel;
        self
    }

    /// With or without batch norm after each convolution.
    pub fn batch_norm(mut self, batch_norm: bool) -> Self {
        self.batch_norm = batch_norm;
        self
    }

    /// Per-sample input shape.
    pub fn input_shape(&self) -> [usize; 3] {
        self.input_shape
    }

    /// Number of outputs.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The network, initialised (He normal) from `seed`; errors name the layer whose shape does
    /// not fit (e.g. a kernel larger than its input).
    pub fn build(&self, seed: u64) -> Result<Sequential<f32>> {
        if self.channels.is_empty() || self.channels.contains(&0) || self.classes == 0 {
            return Err(CoreError::invalid(
                "CNN student",
                format!(
                    "needs at least one non-zero channel count and classes > 0, got channels {:?}, classes {}",
                    self.channels, self.classes
                ),
            )
            .into());
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut b = Sequential::builder(&self.input_shape);
        let mut cin = self.input_shape[0];
        let [mut h, mut w] = [self.input_shape[1], self.input_shape[2]];
        for &cout in &self.channels {
            b = b.push(Layer::Conv2d(
                Conv2d::builder(cin, cout, self.kernel).build(&mut rng)?,
            ));
            if self.batch_norm {
                b = b.push(Layer::BatchNorm2d(BatchNorm2d::new(cout)?));
            }
            b = b
                .push(Layer::Activation(Activation::Relu))
                .push(Layer::MaxPool2d(MaxPool2d::new(2, 2, 0)?));
            cin = cout;
            // Only to size the classifier; the builder checks every shape and names the layer.
            h = h.saturating_sub(self.kernel.saturating_sub(1)) / 2;
            w = w.saturating_sub(self.kernel.saturating_sub(1)) / 2;
        }
        let features = (cin * h * w).max(1);
        Ok(b.push(Layer::Flatten)
            .push(Layer::Linear(Dense::new(
                features,
                self.classes,
                Init::HeNormal,
                &mut rng,
            )?))
            .build()?)
    }
}
