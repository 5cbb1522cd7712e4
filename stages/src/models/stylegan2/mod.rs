//! The class-conditional StyleGAN2 of the paper's comparison rows (Table 1), ported from the
//! official StyleGAN2-ADA PyTorch code (`NVlabs/stylegan2-ada-pytorch`, training/networks.py)
//! at its module and parameter names, so `network-snapshot-*.pkl` files converted by
//! `scripts/convert_checkpoint.py stylegan2` load strictly. Generator: mapping network with
//! a class embedding + `skip` synthesis network; discriminator: `resnet` with minibatch-std
//! and a projection head. FP16 layers are not ported: everything runs in f32 (the
//! official `num_fp16_res = 0`), with the official `conv_clamp` kept.

pub mod discriminator;
pub mod layers;
pub mod mapping;
pub mod ops;
pub mod synthesis;

pub use discriminator::{Discriminator, DiscriminatorConfig};
pub use mapping::{MappingConfig, MappingNetwork, Truncation};
pub use synthesis::{NoiseMode, SynthesisConfig, SynthesisMode, SynthesisNetwork};

use serde::{Deserialize, Serialize};
use tch::nn;
use tch::Tensor;

/// Architecture of a generator and its discriminator; stored in the generator artifact's
/// metadata (`histodiff.stylegan2`), so a sampler rebuilds exactly the trained network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stylegan2Config {
    pub z_dim: i64,
    pub w_dim: i64,
    pub c_dim: i64,
    pub img_resolution: i64,
    pub img_channels: i64,
    pub mapping_layers: i64,
    pub channel_base: i64,
    pub channel_max: i64,
    pub conv_clamp: Option<f64>,
    /// Synthesis architecture; only the official default `skip` is ported.
    #[serde(default = "skip")]
    pub architecture: String,
}

fn skip() -> String {
    "skip".into()
}

/// Decay of the running average of w (`w_avg_beta`).
pub const W_AVG_BETA: f64 = 0.995;

impl Stylegan2Config {
    /// The official `paper256` configuration (fmaps 0.5: channel_base 16384, 8 mapping
    /// layers, z = w = 512, conv_clamp 256) at `resolution`, for `classes` classes.
    pub fn paper(resolution: i64, classes: i64) -> Self {
        Self {
            z_dim: 512,
            w_dim: 512,
            c_dim: classes,
            img_resolution: resolution,
            img_channels: 3,
            mapping_layers: 8,
            channel_base: 16384,
            channel_max: 512,
            conv_clamp: Some(256.0),
            architecture: skip(),
        }
    }

    /// A CPU-sized network (z = w = 64, 2 mapping layers, at most 64 channels).
    pub fn tiny(resolution: i64, classes: i64) -> Self {
        Self {
            z_dim: 64,
            w_dim: 64,
            mapping_layers: 2,
            channel_base: 1024,
            channel_max: 64,
            ..Self::paper(resolution, classes)
        }
    }

    /// Checks what the port supports: a power-of-two resolution from 8 up, a conditional
    /// model, the skip architecture.
    pub fn validate(&self) -> Result<(), String> {
        let r = self.img_resolution;
        if r < 8 || r & (r - 1) != 0 {
            return Err(format!(
                "StyleGAN2 needs a power-of-two image size of at least 8, got {r}"
            ));
        }
        if self.c_dim < 1 {
            return Err(
                "the StyleGAN2 of the comparison is class-conditional: c_dim must be at least 1"
                    .into(),
            );
        }
        if self.architecture != "skip" {
            return Err(format!(
                "synthesis architecture `{}` is not ported (only `skip`)",
                self.architecture
            ));
        }
        Ok(())
    }

    pub fn discriminator(&self, mbstd_group_size: Option<i64>) -> DiscriminatorConfig {
        DiscriminatorConfig {
            c_dim: self.c_dim,
            img_resolution: self.img_resolution,
            img_channels: self.img_channels,
            channel_base: self.channel_base,
            channel_max: self.channel_max,
            conv_clamp: self.conv_clamp,
            mbstd_group_size,
            mapping_layers: 8,
        }
    }
}

/// `Generator`: mapping then synthesis.
#[derive(Debug)]
pub struct Generator {
    pub mapping: MappingNetwork,
    pub synthesis: SynthesisNetwork,
    config: Stylegan2Config,
}

impl Generator {
    pub fn new(p: &nn::Path, config: &Stylegan2Config) -> Result<Self, String> {
        config.validate()?;
        let synthesis = SynthesisNetwork::new(
            &(p / "synthesis"),
            SynthesisConfig {
                w_dim: config.w_dim,
                img_resolution: config.img_resolution,
                img_channels: config.img_channels,
                channel_base: config.channel_base,
                channel_max: config.channel_max,
                conv_clamp: config.conv_clamp,
            },
        );
        let mapping = MappingNetwork::new(
            &(p / "mapping"),
            MappingConfig {
                z_dim: config.z_dim,
                c_dim: config.c_dim,
                w_dim: config.w_dim,
                num_ws: Some(synthesis.num_ws()),
                num_layers: config.mapping_layers,
                w_avg_beta: Some(W_AVG_BETA),
            },
        );
        Ok(Self {
            mapping,
            synthesis,
            config: config.clone(),
        })
    }

    pub fn config(&self) -> &Stylegan2Config {
        &self.config
    }

    /// Images for `z` [N, z_dim] and one-hot `c` [N, c_dim], as `G(z, c, truncation_psi,
    /// noise_mode)` in evaluation mode.
    pub fn generate(
        &self,
        z: &Tensor,
        c: &Tensor,
        truncation: Truncation,
        noise: NoiseMode,
    ) -> Tensor {
        let ws = self.mapping.forward(Some(z), c, truncation, false);
        self.synthesis
            .forward(&ws, SynthesisMode { noise, fused: true })
    }
}

/// Class labels as the one-hot float conditioning c [N, classes].
pub fn one_hot(labels: &Tensor, classes: i64) -> Tensor {
    labels.one_hot(classes).to_kind(tch::Kind::Float)
}
