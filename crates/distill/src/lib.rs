//! # modelopt-distill
//!
//! Knowledge distillation: training a small student to imitate a large teacher.
