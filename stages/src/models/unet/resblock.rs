//! openaimodel `ResBlock`: GroupNorm-SiLU-conv, timestep conditioning either added to the
//! features or applied as FiLM scale/shift after the second norm (`use_scale_shift_norm`),
//! GroupNorm-SiLU-Dropout-conv (zero-initialised), and a skip path; optionally resamples
//! both paths (the `up`/`down` variants used with `resblock_updown`).

use super::norm::GroupNorm32;
use super::resample::{avg_pool_2x, nearest_2x};
use tch::{nn, Tensor};

/// Whether a ResBlock changes the spatial size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    Keep,
    /// 2×2 average pooling of both paths after the first norm + SiLU.
    Down,
    /// Nearest ×2 of both paths after the first norm + SiLU.
    Up,
}

/// Shape and behaviour of one ResBlock.
#[derive(Debug, Clone, Copy)]
pub struct ResBlockConfig {
    pub in_channels: i64,
    pub out_channels: i64,
    /// Width of the timestep embedding (4·model_channels).
    pub emb_channels: i64,
    /// Dropout before the last conv (0 in every preset).
    pub dropout: f64,
    /// FiLM conditioning: emb_layers emits (scale, shift), 2·out_channels values.
    pub use_scale_shift_norm: bool,
    pub resample: Resample,
}

/// Parameters at `in_layers.{0,2}`, `emb_layers.1`, `out_layers.{0,3}`, `skip_connection`.
#[derive(Debug)]
pub struct ResBlock {
    in_norm: GroupNorm32,
    in_conv: nn::Conv2D,
    emb_linear: nn::Linear,
    out_norm: GroupNorm32,
    out_conv: nn::Conv2D,
    skip: Option<nn::Conv2D>,
    config: ResBlockConfig,
}

impl ResBlock {
    pub fn new(vs: nn::Path, config: ResBlockConfig) -> Self {
        let ResBlockConfig {
            in_channels: cin,
            out_channels: cout,
            emb_channels,
            ..
        } = config;
        let pad1 = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        // The reference zero-initialises the last conv so each block starts as identity.
        let zero = nn::ConvConfig {
            padding: 1,
            ws_init: nn::Init::Const(0.0),
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        };
        let emb_out = if config.use_scale_shift_norm {
            2 * cout
        } else {
            cout
        };
        let skip = (cin != cout)
            .then(|| nn::conv2d(&vs / "skip_connection", cin, cout, 1, Default::default()));
        Self {
            in_norm: GroupNorm32::new(&vs / "in_layers" / 0, cin),
            in_conv: nn::conv2d(&vs / "in_layers" / 2, cin, cout, 3, pad1),
            emb_linear: nn::linear(
                &vs / "emb_layers" / 1,
                emb_channels,
                emb_out,
                Default::default(),
            ),
            out_norm: GroupNorm32::new(&vs / "out_layers" / 0, cout),
            out_conv: nn::conv2d(&vs / "out_layers" / 3, cout, cout, 3, zero),
            skip,
            config,
        }
    }

    /// x (B, cin, H, W), emb (B, emb_channels) → (B, cout, H', W').
    pub fn forward_t(&self, xs: &Tensor, emb: &Tensor, train: bool) -> Tensor {
        // 1. in_layers, resampling between the activation and the conv for up/down blocks.
        let h = xs.apply(&self.in_norm).silu();
        let (h, x) = match self.config.resample {
            Resample::Keep => (h, xs.shallow_clone()),
            Resample::Down => (avg_pool_2x(&h), avg_pool_2x(xs)),
            Resample::Up => (nearest_2x(&h), nearest_2x(xs)),
        };
        let h = h.apply(&self.in_conv);
        // 2. timestep conditioning, broadcast over the spatial axes.
        let emb_out = emb
            .silu()
            .apply(&self.emb_linear)
            .to_kind(h.kind())
            .unsqueeze(-1)
            .unsqueeze(-1);
        let h = if self.config.use_scale_shift_norm {
            let parts = emb_out.chunk(2, 1);
            h.apply(&self.out_norm) * (parts[0].shallow_clone() + 1.0) + &parts[1]
        } else {
            (h + emb_out).apply(&self.out_norm)
        };
        // 3. rest of out_layers, then the residual sum.
        let h = h
            .silu()
            .dropout(self.config.dropout, train)
            .apply(&self.out_conv);
        match &self.skip {
            Some(conv) => x.apply(conv) + h,
            None => x + h,
        }
    }
}
