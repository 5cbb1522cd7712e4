//! histodiff-stages: stage kinds and the models they train, on libtorch (tch).

pub mod diffusion;
pub mod kinds;
pub mod models;
pub mod weights;
