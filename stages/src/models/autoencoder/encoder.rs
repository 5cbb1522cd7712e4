//! The KL autoencoder's encoder: image → 2·z_channels moment channels (SPEC §2.3).

use super::attention::{AttnBlock, MidBlock};
use super::config::AutoencoderConfig;
use super::resnet::{normalize, Downsample, ResnetBlock};
use crate::models::torch_init;
use tch::{nn, Tensor};

/// One resolution level: `down.{i}.block.{j}`, `down.{i}.attn.{j}`, `down.{i}.downsample`.
#[derive(Debug)]
struct DownLevel {
    blocks: Vec<ResnetBlock>,
    attns: Vec<AttnBlock>,
    downsample: Option<Downsample>,
}

/// `Encoder` of model.py with `double_z = true`.
#[derive(Debug)]
pub struct Encoder {
    conv_in: nn::Conv2D,
    down: Vec<DownLevel>,
    mid: MidBlock,
    norm_out: nn::GroupNorm,
    conv_out: nn::Conv2D,
}

impl Encoder {
    /// Builds the layers at `vs` (normally `root / "encoder"`); `cfg` must be validated.
    pub fn new(vs: nn::Path, cfg: &AutoencoderConfig) -> Self {
        let conv_in = torch_init::conv2d(&vs / "conv_in", cfg.in_channels, cfg.ch, 3, 1, 1);
        let mut block_in = cfg.ch;
        let mut resolution = cfg.resolution;
        let mut down = Vec::with_capacity(cfg.levels());
        for (level, mult) in cfg.ch_mult.iter().enumerate() {
            let path = &vs / "down" / level;
            let block_out = cfg.ch * mult;
            let (mut blocks, mut attns) = (Vec::new(), Vec::new());
            for j in 0..cfg.num_res_blocks {
                blocks.push(ResnetBlock::new(
                    &path / "block" / j,
                    block_in,
                    block_out,
                    cfg.dropout,
                ));
                block_in = block_out;
                if cfg.attn_resolutions.contains(&resolution) {
                    attns.push(AttnBlock::new(&path / "attn" / j, block_in));
                }
            }
            let downsample = (level + 1 != cfg.levels())
                .then(|| Downsample::new(&path / "downsample", block_in));
            if downsample.is_some() {
                resolution /= 2;
            }
            down.push(DownLevel {
                blocks,
                attns,
                downsample,
            });
        }
        Self {
            conv_in,
            down,
            mid: MidBlock::new(&vs / "mid", block_in, cfg.dropout),
            norm_out: normalize(&vs / "norm_out", block_in),
            conv_out: torch_init::conv2d(&vs / "conv_out", block_in, 2 * cfg.z_channels, 3, 1, 1),
        }
    }

    /// (B, in_channels, H, W) → (B, 2·z_channels, H/f, W/f).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut h = xs.apply(&self.conv_in);
        for level in &self.down {
            for (j, block) in level.blocks.iter().enumerate() {
                h = block.forward_t(&h, train);
                if let Some(attn) = level.attns.get(j) {
                    h = attn.forward(&h);
                }
            }
            if let Some(downsample) = &level.downsample {
                h = downsample.forward(&h);
            }
        }
        let h = self.mid.forward_t(&h, train);
        h.apply(&self.norm_out).silu().apply(&self.conv_out)
    }
}
