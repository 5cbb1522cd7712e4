//! The part shared by the UNet and the half-UNet classifiers: `time_embed`, the
//! downsampling `input_blocks` and the `middle_block`, built in the reference's order so
//! every parameter lands at its PyTorch index (`input_blocks.N.M…`).

use super::attention::{AttentionBlock, AttentionConfig, AttentionKernel, QkvOrder};
use super::embeddings::TimeEmbed;
use super::norm::GROUPS;
use super::resample::{Downsample, Upsample};
use super::resblock::{ResBlock, ResBlockConfig, Resample};
use super::UNetError;
use tch::{nn, Tensor};

/// How many heads an attention layer of width C gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionHeads {
    /// A fixed number of heads (`num_heads`, `num_head_channels = -1`).
    Count(i64),
    /// A fixed head width (`num_head_channels`): C / width heads.
    Channels(i64),
}

impl AttentionHeads {
    /// Heads for a layer of `channels` channels, or an error if they do not divide it.
    pub fn heads_for(self, channels: i64) -> Result<i64, UNetError> {
        let (heads, width) = match self {
            AttentionHeads::Count(n) if n > 0 => (n, channels / n),
            AttentionHeads::Channels(d) if d > 0 => (channels / d, d),
            _ => {
                return Err(UNetError::Config(format!(
                    "attention heads {self:?} must be positive"
                )))
            }
        };
        if heads * width != channels || heads == 0 {
            return Err(UNetError::Config(format!(
                "{self:?} does not divide {channels} channels"
            )));
        }
        Ok(heads)
    }
}

/// Hyper-parameters of time embedding, input blocks and middle block (openaimodel names).
#[derive(Debug, Clone, PartialEq)]
pub struct TrunkConfig {
    /// Channels of the input (3 for the kl-f4 latents).
    pub in_channels: i64,
    /// Base width; the timestep embedding is 4× this.
    pub model_channels: i64,
    /// Width multiplier per resolution level; one downsampling between levels.
    pub channel_mult: Vec<i64>,
    /// ResBlocks per level on the way down (the way up has one more).
    pub num_res_blocks: i64,
    /// Downsample factors (1 = input resolution) at which attention follows each ResBlock.
    pub attention_resolutions: Vec<i64>,
    pub heads: AttentionHeads,
    /// FiLM conditioning in every ResBlock.
    pub use_scale_shift_norm: bool,
    /// Resample with up/down ResBlocks instead of Downsample/Upsample layers.
    pub resblock_updown: bool,
    /// Learned 3×3 convs in Downsample/Upsample (else pooling / plain nearest).
    pub conv_resample: bool,
    pub dropout: f64,
    /// qkv layout of the AttentionBlocks (`use_new_attention_order`).
    pub qkv_order: QkvOrder,
    /// Evaluation strategy for attention (not a checkpoint property).
    pub attention_kernel: AttentionKernel,
}

impl TrunkConfig {
    pub fn validate(&self) -> Result<(), UNetError> {
        let bad = |m: String| Err(UNetError::Config(m));
        if self.channel_mult.is_empty() || self.num_res_blocks < 1 || self.in_channels < 1 {
            return bad(format!(
                "channel_mult {:?} / num_res_blocks {} / in_channels {}",
                self.channel_mult, self.num_res_blocks, self.in_channels
            ));
        }
        for mult in &self.channel_mult {
            if *mult < 1 || (mult * self.model_channels) % GROUPS != 0 {
                return bad(format!(
                    "width {}·{} is not a positive multiple of {GROUPS} groups",
                    mult, self.model_channels
                ));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} outside [0, 1)", self.dropout));
        }
        Ok(())
    }

    pub fn time_embed_dim(&self) -> i64 {
        4 * self.model_channels
    }

    pub(crate) fn resblock(&self, cin: i64, cout: i64, resample: Resample) -> ResBlockConfig {
        ResBlockConfig {
            in_channels: cin,
            out_channels: cout,
            emb_channels: self.time_embed_dim(),
            dropout: self.dropout,
            use_scale_shift_norm: self.use_scale_shift_norm,
            resample,
        }
    }

    pub(crate) fn attention(&self, channels: i64) -> Result<AttentionConfig, UNetError> {
        Ok(AttentionConfig {
            channels,
            num_heads: self.heads.heads_for(channels)?,
            order: self.qkv_order,
            kernel: self.attention_kernel,
        })
    }
}

/// One layer inside a `TimestepEmbedSequential`.
#[derive(Debug)]
pub enum Layer {
    Conv(nn::Conv2D),
    Res(Box<ResBlock>),
    Attn(Box<AttentionBlock>),
    Down(Downsample),
    Up(Upsample),
}

/// openaimodel `TimestepEmbedSequential`: layers applied in order, ResBlocks also
/// receiving the timestep embedding.
#[derive(Debug, Default)]
pub struct TimestepBlock {
    pub layers: Vec<Layer>,
}

impl TimestepBlock {
    /// Sets the evaluation strategy of every attention layer of the block.
    pub fn set_attention_kernel(&mut self, kernel: AttentionKernel) {
        for layer in &mut self.layers {
            if let Layer::Attn(block) = layer {
                block.set_kernel(kernel);
            }
        }
    }

    pub fn forward_t(&self, xs: &Tensor, emb: &Tensor, train: bool) -> Tensor {
        self.layers
            .iter()
            .fold(xs.shallow_clone(), |h, layer| match layer {
                Layer::Conv(conv) => h.apply(conv),
                Layer::Res(block) => block.forward_t(&h, emb, train),
                Layer::Attn(block) => block.forward(&h),
                Layer::Down(down) => h.apply(down),
                Layer::Up(up) => h.apply(up),
            })
    }
}

/// `time_embed`, `input_blocks`, `middle_block`, plus the bookkeeping the output side
/// needs (channels of every skip tensor, final width and downsample factor).
#[derive(Debug)]
pub struct Trunk {
    pub time_embed: TimeEmbed,
    pub input_blocks: Vec<TimestepBlock>,
    pub middle_block: TimestepBlock,
    /// Channels of each input block's output, in push order.
    pub skip_channels: Vec<i64>,
    /// Width after the middle block.
    pub channels: i64,
    /// Total downsample factor after the last level.
    pub downsample: i64,
}

impl Trunk {
    /// Sets the evaluation strategy of every attention layer of the trunk.
    pub fn set_attention_kernel(&mut self, kernel: AttentionKernel) {
        for block in self
            .input_blocks
            .iter_mut()
            .chain(std::iter::once(&mut self.middle_block))
        {
            block.set_attention_kernel(kernel);
        }
    }

    /// Builds the trunk at the root `vs` (names `time_embed`, `input_blocks`, `middle_block`).
    pub fn new(vs: &nn::Path, cfg: &TrunkConfig) -> Result<Self, UNetError> {
        cfg.validate()?;
        let mc = cfg.model_channels;
        let time_embed = TimeEmbed::new(vs / "time_embed", mc, cfg.time_embed_dim());
        let blocks_vs = vs / "input_blocks";
        let pad1 = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        let stem = nn::conv2d(&blocks_vs / 0 / 0, cfg.in_channels, mc, 3, pad1);
        let mut input_blocks = vec![TimestepBlock {
            layers: vec![Layer::Conv(stem)],
        }];
        let (mut skip_channels, mut ch, mut ds) = (vec![mc], mc, 1);
        let last_level = cfg.channel_mult.len() - 1;
        for (level, mult) in cfg.channel_mult.iter().enumerate() {
            for _ in 0..cfg.num_res_blocks {
                let block_vs = &blocks_vs / input_blocks.len();
                let res = ResBlock::new(&block_vs / 0, cfg.resblock(ch, mult * mc, Resample::Keep));
                ch = mult * mc;
                let mut layers = vec![Layer::Res(Box::new(res))];
                if cfg.attention_resolutions.contains(&ds) {
                    layers.push(Layer::Attn(Box::new(AttentionBlock::new(
                        &block_vs / 1,
                        cfg.attention(ch)?,
                    ))));
                }
                input_blocks.push(TimestepBlock { layers });
                skip_channels.push(ch);
            }
            if level != last_level {
                let block_vs = &blocks_vs / input_blocks.len() / 0;
                let layer = if cfg.resblock_updown {
                    Layer::Res(Box::new(ResBlock::new(
                        block_vs,
                        cfg.resblock(ch, ch, Resample::Down),
                    )))
                } else {
                    Layer::Down(Downsample::new(block_vs, ch, ch, cfg.conv_resample))
                };
                input_blocks.push(TimestepBlock {
                    layers: vec![layer],
                });
                skip_channels.push(ch);
                ds *= 2;
            }
        }
        let middle_vs = vs / "middle_block";
        let middle_block = TimestepBlock {
            layers: vec![
                Layer::Res(Box::new(ResBlock::new(
                    &middle_vs / 0,
                    cfg.resblock(ch, ch, Resample::Keep),
                ))),
                Layer::Attn(Box::new(AttentionBlock::new(
                    &middle_vs / 1,
                    cfg.attention(ch)?,
                ))),
                Layer::Res(Box::new(ResBlock::new(
                    &middle_vs / 2,
                    cfg.resblock(ch, ch, Resample::Keep),
                ))),
            ],
        };
        Ok(Self {
            time_embed,
            input_blocks,
            middle_block,
            skip_channels,
            channels: ch,
            downsample: ds,
        })
    }
}
