//! Training losses.

pub mod lpips_with_discriminator;
pub mod stylegan2;

pub use lpips_with_discriminator::{
    AeLossConfig, AeLossError, DiscLoss, DiscriminatorStep, GeneratorStep, LpipsWithDiscriminator,
};
