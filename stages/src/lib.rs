//! histodiff-stages: stage kinds and the models they train, on libtorch (tch).

pub mod kinds;
pub mod metrics;
pub mod models;
pub mod train;
pub mod weights;
