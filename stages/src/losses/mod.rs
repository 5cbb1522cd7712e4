//! Training losses.

pub mod lpips_with_discriminator;

pub use lpips_with_discriminator::{
    AeLossConfig, AeLossError, DiscLoss, DiscriminatorStep, GeneratorStep, LpipsWithDiscriminator,
};
