//! histodiff-stages: stage kinds and the models they train, on libtorch (tch).

pub mod artifact;
pub mod data;
pub mod device;
pub mod diffusion;
pub mod kinds;
pub mod losses;
pub mod metrics;
pub mod models;
pub mod plugin;
pub mod presets;
pub mod report;
pub mod train;
pub mod weights;
