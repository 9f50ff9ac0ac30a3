use modelopt_nn::{Adam, MiniBatches, Optimizer, Sequential};
use modelopt_tensor_core::{CoreError, Float};
use ndarray::{Array2, ArrayRef2};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::{ConvHintLoss, DistillError, Distiller, Result, SequentialStudent, Shifts, Student};

/// The training set of [`fit_shifted`]: images, labels, the shifts drawn for every batch, and
/// optionally the teacher's outputs for every shift of every image (from
/// [`Shifts::teacher_logits`]; without them the loss must not need a teacher, e.g. `KdLoss` with
/// alpha 1).
#[derive(Debug, Clone, Copy)]
pub struct ShiftedSet<'a, A> {
    /// Rows of flattened images.
    pub inputs: &'a ArrayRef2<A>,
    /// One label per row.
    pub labels: &'a [usize],
    /// The augmentation (`Shifts::new(shape, 0)` for none).
    pub shifts: &'a Shifts,
    /// `[shift][image, class]`, as [`Shifts::teacher_logits`] returns.
    pub teacher_logits: Option<&'a [Array2<A>]>,
}

/// A FitNets hint for [`fit_shifted`]: the student's output of layer `student_layer` is regressed
/// onto the teacher's output of layer `teacher_layer` (same height and width) by `loss`, whose 1x1
/// regressor is stepped by `optimizer`; the hint's gradient is scaled by `weight` and added to the
/// student's at that layer. With `hint_only` the output loss is left out (stage 1 of the original,
/// stage-wise FitNets); otherwise the two are trained jointly.
#[derive(Debug, Clone)]
pub struct HintTerm<'a, A> {
    /// The teacher (inference only).
    pub teacher: &'a Sequential<A>,
    /// Index of the teacher's guiding layer.
    pub teacher_layer: usize,
    /// Index of the student's guided layer.
    pub student_layer: usize,
    /// The hint loss with its regressor.
    pub loss: ConvHintLoss<A>,
    /// The regressor's optimizer.
    pub optimizer: Adam<A>,
    /// Weight of the hint loss.
    pub weight: f64,
    /// Train on the hint alone (no output loss).
    pub hint_only: bool,
}

/// Train a [`SequentialStudent`] for `epochs` on mini-batches of `batch_size` in which every image
/// is moved by a random shift, with `loss` against the teacher's outputs for that image and shift
/// and optionally a FitNets `hint`, at a constant `learning_rate`; batch order and shifts are
/// seeded by `seed`. Returns the mean loss of every epoch (the output loss plus the weighted hint
/// loss).
///
/// ```
/// use modelopt_distill::{KdLoss, SequentialStudent, ShiftedSet, Shifts, fit_shifted};
/// use modelopt_nn::{Adam, Conv2d, Dense, Init, Layer, Sequential};
/// use ndarray::Array2;
/// use rand::SeedableRng;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let net = Sequential::builder(&[1, 6, 6])
///     .push(Layer::Conv2d(Conv2d::<f32>::builder(1, 2, 3).build(&mut rng)?))
///     .push(Layer::Flatten)
///     .push(Layer::Linear(Dense::new(32, 2, Init::HeNormal, &mut rng)?))
///     .build()?;
/// let mut student = SequentialStudent::new(net, Adam::builder(1e-2).build()?);
/// let x = Array2::from_shape_fn((8, 36), |(i, j)| if (j % 6 < 3) == (i % 2 == 0) { 1.0 } else { 0.0 });
/// let y: Vec<usize> = (0..8).map(|i| i % 2).collect();
/// let shifts = Shifts::new([1, 6, 6], 1)?;
/// let set = ShiftedSet { inputs: &x, labels: &y, shifts: &shifts, teacher_logits: None };
/// let losses = fit_shifted(&mut student, &KdLoss::new(1.0, 1.0)?, &set, 20, 4, 1e-2, 0, None)?;
/// assert!(losses[19] < losses[0]);
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn fit_shifted<A: Float, O: Optimizer<A>, D: Distiller<A> + ?Sized>(
    student: &mut SequentialStudent<A, O>,
    loss: &D,
    set: &ShiftedSet<'_, A>,
    epochs: usize,
    batch_size: usize,
    learning_rate: f64,
    seed: u64,
    mut hint: Option<&mut HintTerm<'_, A>>,
) -> Result<Vec<f64>> {
    let n = set.labels.len();
    if set.inputs.nrows() != n {
        return Err(DistillError::BatchMismatch {
            what: "labels",
            expected: set.inputs.nrows(),
            found: n,
        });
    }
    if let Some(t) = set.teacher_logits {
        if t.len() != set.shifts.len() {
            return Err(CoreError::invalid(
                "teacher logits",
                format!(
                    "one array per shift expected ({}), got {}",
                    set.shifts.len(),
                    t.len()
                ),
            )
            .into());
        }
        if let Some(bad) = t.iter().find(|l| l.ncols() != t[0].ncols()) {
            return Err(DistillError::ClassMismatch {
                student: t[0].ncols(),
                teacher: bad.ncols(),
            });
        }
        if let Some(bad) = t.iter().find(|l| l.nrows() != n) {
            return Err(DistillError::BatchMismatch {
                what: "teacher logits",
                expected: n,
                found: bad.nrows(),
            });
        }
    }
    let classes = student.network.output_len();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut batches = MiniBatches::new(n, batch_size, seed)?;
    let mut epoch_losses = Vec::with_capacity(epochs);
    for epoch in 1..=epochs {
        let (mut sum, mut count) = (0.0, 0usize);
        for (step, idx) in batches.epoch().enumerate() {
            let (x, ids) = set.shifts.batch(set.inputs, idx, &mut rng)?;
            let y: Vec<usize> = idx.iter().map(|&i| set.labels[i]).collect();
            let t = match set.teacher_logits {
                Some(t) => {
                    let cols = t[0].ncols();
                    Array2::from_shape_fn((idx.len(), cols), |(r, c)| t[ids[r]][[idx[r], c]])
                }
                None => Array2::zeros((idx.len(), classes)),
            };
            let out = student.forward(&x)?;
            let out_loss = loss.loss(&out, &t, &y)?;
            let mut total = out_loss.total.to_f64_lossless();
            match hint.as_deref_mut() {
                None => student.backward(&out_loss.grad)?,
                Some(h) => {
                    let s_map = student
                        .network
                        .hidden(h.student_layer)
                        .ok_or_else(|| {
                            CoreError::invalid(
                                "hint",
                                format!("the student has no layer {}", h.student_layer),
                            )
                        })?
                        .clone();
                    let t_map = h.teacher.features(&x, h.teacher_layer)?;
                    let (hl, mut dh) = h.loss.loss(&s_map, &t_map)?;
                    let w = A::from_f64(h.weight).unwrap_or_else(A::nan);
                    dh.mapv_inplace(|v| v * w);
                    total = if h.hint_only { 0.0 } else { total } + h.weight * hl.to_f64_lossless();
                    let grad = if h.hint_only {
                        Array2::zeros(out.raw_dim())
                    } else {
                        out_loss.grad
                    };
                    student
                        .network
                        .backward_with_hidden(&grad, Some((h.student_layer, &dh)))?;
                    h.optimizer.step(&mut h.loss)?;
                }
            }
            if !total.is_finite() {
                return Err(DistillError::Diverged {
                    epoch,
                    step: step + 1,
                    loss: total,
                });
            }
            student.step(learning_rate)?;
            sum += total;
            count += 1;
        }
        epoch_losses.push(sum / count.max(1) as f64);
    }
    Ok(epoch_losses)
}
