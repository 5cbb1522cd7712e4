//! histodiff-stages: stage kinds and the models they train, on libtorch (tch).

pub mod kinds;
pub mod weights;
