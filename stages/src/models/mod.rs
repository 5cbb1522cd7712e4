//! Neural-network models, each created at `&vs / "<pytorch attribute name>"` so converted
//! PyTorch checkpoints load by name (SPEC §10).

pub mod autoencoder;
pub mod discriminator;
pub mod inception;
pub mod inception_blocks;
pub mod lpips;
pub mod stylegan2;
pub mod torch_init;
pub mod unet;
pub mod vit;
pub mod vit_block;
