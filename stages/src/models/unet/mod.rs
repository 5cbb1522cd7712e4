//! The openaimodel UNet family (LDM / guided-diffusion): the denoising UNet ε_θ (SPEC §3)
//! and the half-UNet classifiers ϕ and φ with attention pooling (SPEC §5), built from
//! shared blocks so that parameter names match the PyTorch checkpoints one to one.

pub mod attention;
pub mod embeddings;
pub mod encoder_unet;
pub mod norm;
pub mod presets;
pub mod resample;
pub mod resblock;
pub mod trunk;
#[allow(clippy::module_inception)]
pub mod unet;

pub use attention::{AttentionBlock, AttentionKernel, AttentionPool2d, QkvOrder};
pub use encoder_unet::{EncoderUNetConfig, EncoderUNetModel};
pub use trunk::{AttentionHeads, TrunkConfig};
pub use unet::{UNetConfig, UNetModel};

/// A configuration or an input that the UNet family cannot work with.
#[derive(Debug, thiserror::Error)]
pub enum UNetError {
    #[error("unet config: {0}")]
    Config(String),
    #[error("unet input: {0}")]
    Input(String),
}
