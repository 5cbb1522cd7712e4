//! The KL autoencoder's decoder: z_channels latent → image (SPEC §2.3).

use super::attention::{AttnBlock, MidBlock};
use super::config::AutoencoderConfig;
use super::resnet::{normalize, ResnetBlock, Upsample};
use crate::models::torch_init;
use tch::{nn, Tensor};

/// One resolution level: `up.{i}.block.{j}`, `up.{i}.attn.{j}`, `up.{i}.upsample`.
#[derive(Debug)]
struct UpLevel {
    blocks: Vec<ResnetBlock>,
    attns: Vec<AttnBlock>,
    upsample: Option<Upsample>,
}

/// `Decoder` of model.py (no tanh, no give_pre_end).
#[derive(Debug)]
pub struct Decoder {
    conv_in: nn::Conv2D,
    mid: MidBlock,
    /// Indexed by level as stored (`up.0` is the finest level), executed coarsest first.
    up: Vec<UpLevel>,
    norm_out: nn::GroupNorm,
    /// The last layer: its weight is the `last_layer` of the loss's adaptive GAN weight.
    pub conv_out: nn::Conv2D,
}

impl Decoder {
    /// Builds the layers at `vs` (normally `root / "decoder"`); `cfg` must be validated.
    pub fn new(vs: nn::Path, cfg: &AutoencoderConfig) -> Self {
        let mut block_in = cfg.ch * cfg.ch_mult[cfg.levels() - 1];
        let mut resolution = cfg.resolution / cfg.downsampling_factor();
        let conv_in = torch_init::conv2d(&vs / "conv_in", cfg.z_channels, block_in, 3, 1, 1);
        let mid = MidBlock::new(&vs / "mid", block_in, cfg.dropout);
        let mut up = Vec::with_capacity(cfg.levels());
        // Built coarsest first, as model.py does, so the widths chain; stored by level index.
        for level in (0..cfg.levels()).rev() {
            let path = &vs / "up" / level;
            let block_out = cfg.ch * cfg.ch_mult[level];
            let (mut blocks, mut attns) = (Vec::new(), Vec::new());
            for j in 0..cfg.num_res_blocks + 1 {
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
            let upsample = (level != 0).then(|| Upsample::new(&path / "upsample", block_in));
            if upsample.is_some() {
                resolution *= 2;
            }
            up.push(UpLevel {
                blocks,
                attns,
                upsample,
            });
        }
        up.reverse();
        Self {
            conv_in,
            mid,
            up,
            norm_out: normalize(&vs / "norm_out", block_in),
            conv_out: torch_init::conv2d(&vs / "conv_out", block_in, cfg.out_ch, 3, 1, 1),
        }
    }

    /// (B, z_channels, h, w) → (B, out_ch, h·f, w·f).
    pub fn forward_t(&self, z: &Tensor, train: bool) -> Tensor {
        let h = z.apply(&self.conv_in);
        let mut h = self.mid.forward_t(&h, train);
        for level in self.up.iter().rev() {
            for (j, block) in level.blocks.iter().enumerate() {
                h = block.forward_t(&h, train);
                if let Some(attn) = level.attns.get(j) {
                    h = attn.forward(&h);
                }
            }
            if let Some(upsample) = &level.upsample {
                h = upsample.forward(&h);
            }
        }
        h.apply(&self.norm_out).silu().apply(&self.conv_out)
    }
}
