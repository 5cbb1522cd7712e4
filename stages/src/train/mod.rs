//! The one training stack of every trainable stage: the resumable driver, the optimizers
//! with exportable state (parity-tested against torch.optim), EMA, learning-rate schedules,
//! gradient clipping, the checkpoint format, the data order and the streaming batch
//! loader, training-batch augmentation, determinism, mixed precision.

pub mod augment;
pub mod autocast;
pub mod autoencoder;
pub mod checkpoint;
pub mod clip;
pub mod data_order;
pub mod determinism;
pub mod driver;
pub mod ema;
pub mod images;
pub mod loader;
pub mod lr;
pub mod memory_format;
pub mod mixed;
pub mod named;
pub mod optim;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use data_order::DataOrder;
pub use driver::{train, Schedule, StepReport, Trainable, Trained};
