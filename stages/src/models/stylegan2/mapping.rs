//! `MappingNetwork`: z and an embedded class label → w, broadcast to every synthesis layer,
//! with the running average of w that truncation pulls towards. The discriminator uses the
//! same network (no z, no broadcast, no average) to map the label to its projection.

use super::layers::FullyConnected;
use super::ops::Activation;
use tch::nn;
use tch::{Kind, Tensor};

/// Shape of a mapping network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MappingConfig {
    pub z_dim: i64,
    pub c_dim: i64,
    pub w_dim: i64,
    /// Copies of w to output (`None`: one vector, as the discriminator uses it).
    pub num_ws: Option<i64>,
    pub num_layers: i64,
    /// Decay of the running average of w (`None`: no average, no truncation).
    pub w_avg_beta: Option<f64>,
}

/// Truncation: w ← w̄ + ψ(w − w̄) on the first `cutoff` copies (all when `None`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Truncation {
    pub psi: f64,
    pub cutoff: Option<i64>,
}

impl Truncation {
    pub const NONE: Truncation = Truncation {
        psi: 1.0,
        cutoff: None,
    };
}

/// `normalize_2nd_moment`: x / √(mean(x²) + 1e-8) along dim 1.
pub fn normalize_2nd_moment(x: &Tensor) -> Tensor {
    x * (x.square().mean_dim(1, true, Kind::Float) + 1e-8).rsqrt()
}

#[derive(Debug)]
pub struct MappingNetwork {
    config: MappingConfig,
    embed: Option<FullyConnected>,
    layers: Vec<FullyConnected>,
    w_avg: Option<Tensor>,
}

impl MappingNetwork {
    /// Lr multiplier of the mapping layers (the official default).
    pub const LR_MULTIPLIER: f64 = 0.01;

    pub fn new(p: &nn::Path, config: MappingConfig) -> Self {
        let embed_features = if config.c_dim > 0 { config.w_dim } else { 0 };
        let embed = (config.c_dim > 0).then(|| {
            FullyConnected::new(
                &(p / "embed"),
                (config.c_dim, embed_features),
                Activation::Linear,
                1.0,
                Some(0.0),
            )
        });
        let layers = (0..config.num_layers)
            .map(|i| {
                let c_in = if i == 0 {
                    config.z_dim + embed_features
                } else {
                    config.w_dim
                };
                FullyConnected::new(
                    &(p / format!("fc{i}")),
                    (c_in, config.w_dim),
                    Activation::LeakyRelu,
                    Self::LR_MULTIPLIER,
                    Some(0.0),
                )
            })
            .collect();
        let w_avg = (config.num_ws.is_some() && config.w_avg_beta.is_some())
            .then(|| p.zeros_no_train("w_avg", &[config.w_dim]));
        Self {
            config,
            embed,
            layers,
            w_avg,
        }
    }

    pub fn config(&self) -> &MappingConfig {
        &self.config
    }

    /// w for `z` [N, z_dim] (or none) and one-hot `c` [N, c_dim]. `update_w_avg` moves the
    /// running average towards this batch's mean, as the official training forward does.
    pub fn forward(
        &self,
        z: Option<&Tensor>,
        c: &Tensor,
        truncation: Truncation,
        update_w_avg: bool,
    ) -> Tensor {
        let mut parts = Vec::with_capacity(2);
        if let Some(z) = z.filter(|_| self.config.z_dim > 0) {
            parts.push(normalize_2nd_moment(&z.to_kind(Kind::Float)));
        }
        if let Some(embed) = &self.embed {
            parts.push(normalize_2nd_moment(
                &embed.forward(&c.to_kind(Kind::Float)),
            ));
        }
        let mut x = if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Tensor::cat(&parts, 1)
        };
        for layer in &self.layers {
            x = layer.forward(&x);
        }
        if let (Some(beta), Some(w_avg), true) = (self.config.w_avg_beta, &self.w_avg, update_w_avg)
        {
            let mean =
                tch::no_grad(|| x.detach().mean_dim(0, false, Kind::Float).lerp(w_avg, beta));
            let mut w_avg = w_avg.shallow_clone();
            tch::no_grad(|| w_avg.copy_(&mean));
        }
        if let Some(num_ws) = self.config.num_ws {
            x = x.unsqueeze(1).repeat([1, num_ws, 1]);
        }
        if truncation.psi != 1.0 {
            x = self.truncate(&x, truncation);
        }
        x
    }

    fn truncate(&self, x: &Tensor, t: Truncation) -> Tensor {
        let w_avg = self
            .w_avg
            .as_ref()
            .expect("truncation needs the running average of w");
        match (self.config.num_ws, t.cutoff) {
            (Some(num_ws), Some(cutoff)) if cutoff < num_ws => {
                let head = w_avg.lerp(&x.narrow(1, 0, cutoff), t.psi);
                Tensor::cat(&[head, x.narrow(1, cutoff, num_ws - cutoff)], 1)
            }
            _ => w_avg.lerp(x, t.psi),
        }
    }
}
