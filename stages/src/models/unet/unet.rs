//! openaimodel `UNetModel` (unconditional, ε-prediction): trunk, `output_blocks` that
//! concatenate the skip stack, and `out` = GroupNorm32, SiLU, zero-initialised conv.

use super::attention::{AttentionBlock, AttentionKernel};
use super::norm::GroupNorm32;
use super::resample::Upsample;
use super::resblock::{ResBlock, Resample};
use super::trunk::{Layer, TimestepBlock, Trunk, TrunkConfig};
use super::UNetError;
use tch::{nn, Tensor};

/// `UNetModel` hyper-parameters; see [`super::presets`] for the paper's and tiny ones.
#[derive(Debug, Clone, PartialEq)]
pub struct UNetConfig {
    pub trunk: TrunkConfig,
    /// Channels predicted (ε has the latent's channels).
    pub out_channels: i64,
}

impl Default for UNetConfig {
    /// The official HistoDiffAug UNet (SPEC §3.1).
    fn default() -> Self {
        super::presets::histodiffaug_unet()
    }
}

/// ε_θ(z_t, t).
#[derive(Debug)]
pub struct UNetModel {
    trunk: Trunk,
    output_blocks: Vec<TimestepBlock>,
    out_norm: GroupNorm32,
    out_conv: nn::Conv2D,
    config: UNetConfig,
}

impl UNetModel {
    /// Creates every parameter under `vs` (use `vs.root()` or `/ "model" / "diffusion_model"`).
    pub fn new(vs: &nn::Path, config: &UNetConfig) -> Result<Self, UNetError> {
        let trunk = Trunk::new(vs, &config.trunk)?;
        let output_blocks = output_blocks(&(vs / "output_blocks"), &config.trunk, &trunk)?;
        let zero = nn::ConvConfig {
            padding: 1,
            ws_init: nn::Init::Const(0.0),
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        };
        let mc = config.trunk.model_channels;
        Ok(Self {
            out_norm: GroupNorm32::new(vs / "out" / 0, mc),
            out_conv: nn::conv2d(vs / "out" / 2, mc, config.out_channels, 3, zero),
            trunk,
            output_blocks,
            config: config.clone(),
        })
    }

    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// Switches every attention layer to `kernel` (e.g. fused for training, exact chunked
    /// for a reference run) without rebuilding the 295M-parameter model.
    pub fn set_attention_kernel(&mut self, kernel: AttentionKernel) {
        self.trunk.set_attention_kernel(kernel);
        for block in &mut self.output_blocks {
            block.set_attention_kernel(kernel);
        }
        self.config.trunk.attention_kernel = kernel;
    }

    /// Checks x (B, in_channels, H, W) and t (B,) before a forward pass: H and W must be
    /// divisible by the total downsampling so the skip concatenations line up.
    pub fn validate_input(&self, xs: &Tensor, timesteps: &Tensor) -> Result<(), UNetError> {
        let size = xs.size();
        let ds = self.trunk.downsample;
        let ok = size.len() == 4
            && size[1] == self.config.trunk.in_channels
            && size[2] % ds == 0
            && size[3] % ds == 0
            && timesteps.size() == [size[0]];
        if ok {
            Ok(())
        } else {
            Err(UNetError::Input(format!(
                "x {:?} / t {:?}: expected (B, {}, H, W) with H, W multiples of {ds} and t (B,)",
                size,
                timesteps.size(),
                self.config.trunk.in_channels
            )))
        }
    }

    /// Inference forward pass (dropout off).
    pub fn forward(&self, xs: &Tensor, timesteps: &Tensor) -> Tensor {
        self.forward_t(xs, timesteps, false)
    }

    /// x (B, C, H, W), t (B,) → ε̂ (B, out_channels, H, W).
    pub fn forward_t(&self, xs: &Tensor, timesteps: &Tensor, train: bool) -> Tensor {
        let emb = self.trunk.time_embed.forward(timesteps);
        let mut skips = Vec::with_capacity(self.trunk.input_blocks.len());
        let mut h = xs.shallow_clone();
        for block in &self.trunk.input_blocks {
            h = block.forward_t(&h, &emb, train);
            skips.push(h.shallow_clone());
        }
        h = self.trunk.middle_block.forward_t(&h, &emb, train);
        // Built with one output block per skip tensor, consumed last-in first-out.
        for (block, skip) in self.output_blocks.iter().zip(skips.iter().rev()) {
            h = block.forward_t(&Tensor::cat(&[&h, skip], 1), &emb, train);
        }
        h.apply(&self.out_norm).silu().apply(&self.out_conv)
    }
}

/// Output side in the reference's order: per level (deepest first) num_res_blocks + 1
/// ResBlocks on [h, skip], attention where the level has it, and an upsampler closing
/// every level but the top one.
fn output_blocks(
    vs: &nn::Path,
    cfg: &TrunkConfig,
    trunk: &Trunk,
) -> Result<Vec<TimestepBlock>, UNetError> {
    let mc = cfg.model_channels;
    let mut skip_channels = trunk.skip_channels.clone();
    let (mut ch, mut ds) = (trunk.channels, trunk.downsample);
    let mut blocks = Vec::new();
    for (level, mult) in cfg.channel_mult.iter().enumerate().rev() {
        for i in 0..=cfg.num_res_blocks {
            let block_vs = vs / blocks.len();
            let skip = skip_channels
                .pop()
                .ok_or_else(|| UNetError::Config("skip stack exhausted".into()))?;
            let mut layers = vec![Layer::Res(Box::new(ResBlock::new(
                &block_vs / 0,
                cfg.resblock(ch + skip, mult * mc, Resample::Keep),
            )))];
            ch = mult * mc;
            if cfg.attention_resolutions.contains(&ds) {
                layers.push(Layer::Attn(Box::new(AttentionBlock::new(
                    &block_vs / layers.len(),
                    cfg.attention(ch)?,
                ))));
            }
            if level > 0 && i == cfg.num_res_blocks {
                let up_vs = &block_vs / layers.len();
                layers.push(if cfg.resblock_updown {
                    Layer::Res(Box::new(ResBlock::new(
                        up_vs,
                        cfg.resblock(ch, ch, Resample::Up),
                    )))
                } else {
                    Layer::Up(Upsample::new(up_vs, ch, ch, cfg.conv_resample))
                });
                ds /= 2;
            }
            blocks.push(TimestepBlock { layers });
        }
    }
    Ok(blocks)
}
