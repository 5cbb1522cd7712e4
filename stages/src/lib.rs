//! histodiff-stages: stage kinds and the models they train, on libtorch (tch).

pub mod artifact;
pub mod data;
pub mod kinds;
pub mod losses;
pub mod models;
pub mod report;
pub mod training;
pub mod weights;
