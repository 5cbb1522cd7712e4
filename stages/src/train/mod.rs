//! Training machinery shared by every trainable stage: optimizers with exportable state,
//! EMA, learning-rate schedules, gradient clipping, checkpoints, determinism, mixed precision.

pub mod autocast;
pub mod checkpoint;
pub mod clip;
pub mod determinism;
pub mod ema;
pub mod lr;
pub mod optim;
