//! The LDM KL autoencoder (AutoencoderKL, "kl-f4"), laid out like
//! `ldm/modules/diffusionmodules/model.py` so Lightning checkpoints load by name
//! (SPEC §2.1–2.4, §10.1).

mod attention;
mod config;
mod decoder;
mod distribution;
mod encoder;
mod resnet;
mod vae;

pub use attention::{AttnBlock, MidBlock};
pub use config::{AutoencoderConfig, AutoencoderError};
pub use decoder::Decoder;
pub use distribution::DiagonalGaussian;
pub use encoder::Encoder;
pub use resnet::{Downsample, ResnetBlock, Upsample};
pub use vae::AutoencoderKL;
