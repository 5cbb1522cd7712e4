//! GroupNorm32: 32 groups, eps 1e-5, always computed in float32 as openaimodel's
//! `normalization()` does, so half-precision activations do not lose the statistics.

use tch::{nn, Kind, Tensor};

/// Number of groups of every normalisation layer in the UNet family.
pub const GROUPS: i64 = 32;
/// PyTorch's GroupNorm default epsilon, used by openaimodel.
pub const EPS: f64 = 1e-5;

/// `nn.GroupNorm(32, C)` with parameters `weight` and `bias`, evaluated in f32.
#[derive(Debug)]
pub struct GroupNorm32 {
    weight: Tensor,
    bias: Tensor,
}

impl GroupNorm32 {
    pub fn new(vs: nn::Path, channels: i64) -> Self {
        Self {
            weight: vs.ones("weight", &[channels]),
            bias: vs.zeros("bias", &[channels]),
        }
    }
}

impl nn::Module for GroupNorm32 {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let kind = xs.kind();
        let weight = self.weight.to_kind(Kind::Float);
        let bias = self.bias.to_kind(Kind::Float);
        xs.to_kind(Kind::Float)
            .group_norm(GROUPS, Some(&weight), Some(&bias), EPS, true)
            .to_kind(kind)
    }
}
