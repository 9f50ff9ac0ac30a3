use modelopt_nn::check_labels;
use modelopt_tensor_core::Float;
use ndarray::ArrayRef2;

use crate::{Result, check_outputs};

/// Index of the largest value of each row (the predicted class); the first on ties, NaN never wins.
///
/// ```
/// use modelopt_distill::argmax_rows;
/// use ndarray::array;
/// assert_eq!(argmax_rows(&array![[0.1f32, 0.7, 0.2], [3.0, 3.0, 1.0]]), [1, 0]);
/// ```
pub fn argmax_rows<A: Float>(logits: &ArrayRef2<A>) -> Vec<usize> {
    logits
        .rows()
        .into_iter()
        .map(|row| {
            let mut best = 0;
            let mut best_value = A::neg_infinity();
            for (i, &v) in row.iter().enumerate() {
                if v > best_value {
                    best = i;
                    best_value = v;
                }
            }
            best
        })
        .collect()
}

/// Fraction of rows whose predicted class equals the label.
///
/// ```
/// use modelopt_distill::accuracy;
/// use ndarray::array;
/// assert_eq!(accuracy(&array![[0.0f32, 1.0], [1.0, 0.0]], &[1, 1])?, 0.5);
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
pub fn accuracy<A: Float>(logits: &ArrayRef2<A>, labels: &[usize]) -> Result<f64> {
    check_labels(logits, labels)?;
    let hits = argmax_rows(logits)
        .iter()
        .zip(labels)
        .filter(|(p, y)| p == y)
        .count();
    Ok(hits as f64 / labels.len() as f64)
}

/// Fraction of rows on which student and teacher predict the same class ("agreement", or top-1
/// fidelity, of the student with its teacher).
///
/// ```
/// use modelopt_distill::agreement;
/// use ndarray::array;
/// let s = array![[0.0f32, 1.0], [1.0, 0.0]];
/// let t = array![[0.0f32, 5.0], [0.0, 5.0]];
/// assert_eq!(agreement(&s, &t)?, 0.5);
/// # Ok::<(), modelopt_distill::DistillError>(())
/// ```
pub fn agreement<A: Float>(student: &ArrayRef2<A>, teacher: &ArrayRef2<A>) -> Result<f64> {
    check_outputs(student, teacher)?;
    let same = argmax_rows(student)
        .iter()
        .zip(argmax_rows(teacher))
        .filter(|(a, b)| **a == *b)
        .count();
    Ok(same as f64 / student.nrows() as f64)
}
