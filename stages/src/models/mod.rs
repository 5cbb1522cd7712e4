//! Neural-network models, each created at `&vs / "<pytorch attribute name>"` so converted
//! PyTorch checkpoints load by name (SPEC §10).

pub mod autoencoder;
pub mod discriminator;
pub mod lpips;
pub mod torch_init;
