//! Evaluation metrics: classification scores on the confusion matrix and the Fréchet
//! Inception Distance.

pub mod classification;
pub mod fid;
