//! Sinusoidal timestep embedding (cos first, then sin; openaimodel `timestep_embedding`)
//! and the two-layer MLP `time_embed` that turns it into the ResBlocks' conditioning.

use tch::{nn, Device, Kind, Tensor};

/// Period of the slowest sinusoid, as in the reference.
pub const MAX_PERIOD: f64 = 10_000.0;

/// Embeds integer (or real) timesteps `t` (B,) into (B, dim) f32:
/// e_i = cos(t·ω_i), e_{half+i} = sin(t·ω_i), ω_i = exp(−ln(max_period)·i/half);
/// an odd `dim` gets a trailing zero column.
pub fn timestep_embedding(timesteps: &Tensor, dim: i64, max_period: f64) -> Tensor {
    let half = dim / 2;
    let device = timesteps.device();
    // Same operation order as the reference (scale the f32 arange, then divide by half)
    // so the frequencies agree to the last bit.
    let freqs =
        (Tensor::arange(half, (Kind::Float, device)) * (-max_period.ln()) / half as f64).exp();
    let args = timesteps.to_kind(Kind::Float).unsqueeze(1) * freqs.unsqueeze(0);
    let embedding = Tensor::cat(&[args.cos(), args.sin()], 1);
    if dim % 2 == 1 {
        let pad = Tensor::zeros([embedding.size()[0], 1], (Kind::Float, device));
        Tensor::cat(&[embedding, pad], 1)
    } else {
        embedding
    }
}

/// `time_embed` = Linear(model_channels → 4·model_channels), SiLU, Linear(4·mc → 4·mc)
/// at `time_embed.0` and `time_embed.2`.
#[derive(Debug)]
pub struct TimeEmbed {
    model_channels: i64,
    linear_in: nn::Linear,
    linear_out: nn::Linear,
}

impl TimeEmbed {
    pub fn new(vs: nn::Path, model_channels: i64, embed_dim: i64) -> Self {
        let linear_in = nn::linear(&vs / 0, model_channels, embed_dim, Default::default());
        let linear_out = nn::linear(&vs / 2, embed_dim, embed_dim, Default::default());
        Self {
            model_channels,
            linear_in,
            linear_out,
        }
    }

    /// (B,) timesteps → (B, 4·model_channels) embedding in the weights' dtype.
    pub fn forward(&self, timesteps: &Tensor) -> Tensor {
        let kind = self.linear_in.ws.kind();
        timestep_embedding(
            &timesteps.to_device(self.device()),
            self.model_channels,
            MAX_PERIOD,
        )
        .to_kind(kind)
        .apply(&self.linear_in)
        .silu()
        .apply(&self.linear_out)
    }

    /// The device the weights live on (inputs are moved there by the callers).
    pub fn device(&self) -> Device {
        self.linear_in.ws.device()
    }
}
