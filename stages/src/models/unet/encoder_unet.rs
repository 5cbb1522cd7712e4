//! guided-diffusion `EncoderUNetModel` with `pool="attention"`: the UNet trunk followed by
//! `out` = GroupNorm32, SiLU, AttentionPool2d → class logits. Used for the time-dependent
//! latent classifier ϕ(z_t, t) (SPEC §5.2) and, with t = 0, the image classifier φ (§5.3).

use super::attention::{AttentionKernel, AttentionPool2d};
use super::norm::GroupNorm32;
use super::trunk::{Trunk, TrunkConfig};
use super::UNetError;
use tch::{nn, Tensor};

/// `EncoderUNetModel` hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderUNetConfig {
    pub trunk: TrunkConfig,
    /// Number of classes.
    pub out_channels: i64,
    /// Input side; with the trunk's downsampling it fixes the pooling grid (S = size / ds).
    pub image_size: i64,
    /// Head width of the attention pool (`num_head_channels` in the reference).
    pub pool_head_channels: i64,
}

/// Logits of p(y | x_t, t).
#[derive(Debug)]
pub struct EncoderUNetModel {
    trunk: Trunk,
    out_norm: GroupNorm32,
    pool: AttentionPool2d,
    config: EncoderUNetConfig,
}

impl EncoderUNetModel {
    pub fn new(vs: &nn::Path, config: &EncoderUNetConfig) -> Result<Self, UNetError> {
        let trunk = Trunk::new(vs, &config.trunk)?;
        let (ch, ds) = (trunk.channels, trunk.downsample);
        if config.image_size % ds != 0
            || config.pool_head_channels < 1
            || ch % config.pool_head_channels != 0
        {
            return Err(UNetError::Config(format!(
                "image_size {} must be a multiple of {ds} and pool head width {} must divide {ch}",
                config.image_size, config.pool_head_channels
            )));
        }
        let spatial = config.image_size / ds;
        let pool = AttentionPool2d::new(
            vs / "out" / 2,
            spatial,
            ch,
            config.pool_head_channels,
            config.out_channels,
            config.trunk.attention_kernel,
        );
        Ok(Self {
            out_norm: GroupNorm32::new(vs / "out" / 0, ch),
            pool,
            trunk,
            config: config.clone(),
        })
    }

    pub fn config(&self) -> &EncoderUNetConfig {
        &self.config
    }

    /// Switches every attention layer, the pool included, to `kernel`.
    pub fn set_attention_kernel(&mut self, kernel: AttentionKernel) {
        self.trunk.set_attention_kernel(kernel);
        self.pool.set_kernel(kernel);
        self.config.trunk.attention_kernel = kernel;
    }

    /// The pooling grid is learned for one input size: x must be (B, in_channels,
    /// image_size, image_size) and t (B,).
    pub fn validate_input(&self, xs: &Tensor, timesteps: &Tensor) -> Result<(), UNetError> {
        let size = xs.size();
        let s = self.config.image_size;
        if size.len() == 4
            && size[1..] == [self.config.trunk.in_channels, s, s]
            && timesteps.size() == [size[0]]
        {
            Ok(())
        } else {
            Err(UNetError::Input(format!(
                "x {:?} / t {:?}: expected (B, {}, {s}, {s}) and t (B,)",
                size,
                timesteps.size(),
                self.config.trunk.in_channels
            )))
        }
    }

    pub fn forward(&self, xs: &Tensor, timesteps: &Tensor) -> Tensor {
        self.forward_t(xs, timesteps, false)
    }

    /// x (B, C, S, S), t (B,) → logits (B, out_channels).
    pub fn forward_t(&self, xs: &Tensor, timesteps: &Tensor, train: bool) -> Tensor {
        let emb = self.trunk.time_embed.forward(timesteps);
        let h = self
            .trunk
            .input_blocks
            .iter()
            .fold(xs.shallow_clone(), |h, b| b.forward_t(&h, &emb, train));
        let h = self.trunk.middle_block.forward_t(&h, &emb, train);
        self.pool.forward(&h.apply(&self.out_norm).silu())
    }
}
