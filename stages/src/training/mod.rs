//! The shared resumable training driver of every training kind (DESIGN "Execution"):
//! a step loop that checkpoints every N steps, every M minutes and when the worker is
//! asked to stop, and resumes from the newest checkpoint of the stage key.
//!
//! Determinism: every random draw of step `s` comes from `(seed, s)` — libtorch's global
//! generator is re-seeded before each step and the data order of an epoch is a ChaCha
//! permutation of `(seed, epoch)` — so a checkpoint needs only the step number and the
//! tensors (weights, optimizer moments, EMA, running statistics), and a resumed run on the
//! CPU ends byte-identical to one that was never interrupted.

pub mod adam;
pub mod autoencoder;
pub mod checkpoint;
pub mod data_order;
pub mod driver;
pub mod images;
pub mod named;

pub use adam::{Adam, AdamConfig};
pub use checkpoint::{Checkpoint, CheckpointError};
pub use data_order::DataOrder;
pub use driver::{train, Schedule, StepReport, Trainable};
