use modelopt_tensor_core::{CoreError, Float};
use ndarray::{Array2, ArrayRef2, Axis};

use crate::float_const as c;
use crate::{NnError, Result};

/// Row-wise `log softmax(z)` computed as `z - max - ln(sum(exp(z - max)))` (stable log-sum-exp:
/// finite for logits of any finite magnitude).
///
/// ```
/// use modelopt_nn::log_softmax;
/// use ndarray::array;
/// let l = log_softmax(&array![[1000.0f64, 1000.0]]);
/// assert!((l[[0, 0]] - (0.5f64).ln()).abs() < 1e-12);
/// ```
pub fn log_softmax<A: Float>(logits: &ArrayRef2<A>) -> Array2<A> {
    let mut out = logits.to_owned();
    for mut row in out.rows_mut() {
        let max = row.fold(A::neg_infinity(), |m, &v| m.max(v));
        let max = if max.is_finite() { max } else { A::zero() };
        let sum = row.fold(A::zero(), |s, &v| s + (v - max).exp());
        let lse = max + sum.ln();
        row.mapv_inplace(|v| v - lse);
    }
    out
}

/// Row-wise `softmax(z)` (stable: the row maximum is subtracted before `exp`).
///
/// ```
/// use modelopt_nn::softmax;
/// use ndarray::array;
/// let p = softmax(&array![[0.0f32, 0.0], [1e3, -1e3]]);
/// assert_eq!(p, array![[0.5, 0.5], [1.0, 0.0]]);
/// ```
pub fn softmax<A: Float>(logits: &ArrayRef2<A>) -> Array2<A> {
    let mut out = logits.to_owned();
    for mut row in out.rows_mut() {
        let max = row.fold(A::neg_infinity(), |m, &v| m.max(v));
        let max = if max.is_finite() { max } else { A::zero() };
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
    out
}

/// Check that `labels` has one label per row of `logits` and each is below the class count.
///
/// ```
/// use modelopt_nn::{check_labels, NnError};
/// use ndarray::Array2;
/// let z = Array2::<f32>::zeros((2, 3));
/// assert!(check_labels(&z, &[0, 2]).is_ok());
/// assert!(matches!(check_labels(&z, &[0, 3]), Err(NnError::LabelOutOfRange { row: 1, label: 3, classes: 3 })));
/// ```
pub fn check_labels<A>(logits: &ArrayRef2<A>, labels: &[usize]) -> Result<()> {
    if labels.len() != logits.nrows() {
        return Err(CoreError::ShapeMismatch {
            expected: vec![logits.nrows()],
            found: vec![labels.len()],
        }
        .into());
    }
    if logits.is_empty() {
        return Err(CoreError::Empty { what: "logits" }.into());
    }
    let classes = logits.ncols();
    match labels.iter().position(|&l| l >= classes) {
        Some(row) => Err(NnError::LabelOutOfRange {
            row,
            label: labels[row],
            classes,
        }),
        None => Ok(()),
    }
}

/// Softmax cross-entropy with integer labels, batch mean: the loss
/// `mean_i (logsumexp(z_i) - z_i[y_i])` and its gradient `(softmax(z) - onehot(y)) / batch`
/// w.r.t. the logits. Stable for logits of any finite magnitude.
///
/// ```
/// use modelopt_nn::softmax_cross_entropy;
/// use ndarray::array;
/// let (loss, grad) = softmax_cross_entropy(&array![[0.0f64, 0.0]], &[1])?;
/// assert!((loss - 2f64.ln()).abs() < 1e-15);
/// assert_eq!(grad, array![[0.5, -0.5]]);
/// # Ok::<(), modelopt_nn::NnError>(())
/// ```
pub fn softmax_cross_entropy<A: Float>(
    logits: &ArrayRef2<A>,
    labels: &[usize],
) -> Result<(A, Array2<A>)> {
    check_labels(logits, labels)?;
    let batch: A = c(logits.nrows() as f64);
    let logp = log_softmax(logits);
    let mut loss = A::zero();
    for (row, &y) in logp.axis_iter(Axis(0)).zip(labels) {
        loss = loss - row[y];
    }
    let mut grad = logp;
    grad.mapv_inplace(|v| v.exp() / batch);
    for (mut row, &y) in grad.rows_mut().into_iter().zip(labels) {
        row[y] = row[y] - A::one() / batch;
    }
    let loss = loss / batch;
    if !loss.is_finite() {
        return Err(CoreError::NonFinite {
            index: 0,
            position: vec![],
            value: loss.to_f64_lossless(),
        }
        .into());
    }
    Ok((loss, grad))
}
