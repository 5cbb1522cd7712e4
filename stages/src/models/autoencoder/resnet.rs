//! Resnet block and the two resamplers of the LDM autoencoder (SPEC §2.2).

use super::config::NORM_GROUPS;
use crate::models::torch_init;
use tch::{nn, Tensor};

/// LDM's `Normalize`: GroupNorm with 32 groups and eps 1e-6 (not PyTorch's default 1e-5).
pub(crate) fn normalize(vs: nn::Path, channels: i64) -> nn::GroupNorm {
    let config = nn::GroupNormConfig {
        eps: 1e-6,
        ..Default::default()
    };
    nn::group_norm(vs, NORM_GROUPS, channels, config)
}

/// `ResnetBlock` without a timestep input: two GN → swish → 3×3 conv stages plus a skip,
/// a 1×1 `nin_shortcut` when the width changes.
#[derive(Debug)]
pub struct ResnetBlock {
    norm1: nn::GroupNorm,
    conv1: nn::Conv2D,
    norm2: nn::GroupNorm,
    conv2: nn::Conv2D,
    nin_shortcut: Option<nn::Conv2D>,
    dropout: f64,
}

impl ResnetBlock {
    pub fn new(vs: nn::Path, c_in: i64, c_out: i64, dropout: f64) -> Self {
        let nin_shortcut =
            (c_in != c_out).then(|| torch_init::conv2d(&vs / "nin_shortcut", c_in, c_out, 1, 1, 0));
        Self {
            norm1: normalize(&vs / "norm1", c_in),
            conv1: torch_init::conv2d(&vs / "conv1", c_in, c_out, 3, 1, 1),
            norm2: normalize(&vs / "norm2", c_out),
            conv2: torch_init::conv2d(&vs / "conv2", c_out, c_out, 3, 1, 1),
            nin_shortcut,
            dropout,
        }
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let h = xs.apply(&self.norm1).silu().apply(&self.conv1);
        let h = h
            .apply(&self.norm2)
            .silu()
            .dropout(self.dropout, train)
            .apply(&self.conv2);
        match &self.nin_shortcut {
            Some(conv) => xs.apply(conv) + h,
            None => xs + h,
        }
    }
}

/// Halves the resolution: zero-pad right and bottom by one pixel, then a stride-2 3×3 conv
/// without padding (the asymmetric pad keeps LDM's pixel alignment).
#[derive(Debug)]
pub struct Downsample {
    conv: nn::Conv2D,
}

impl Downsample {
    pub fn new(vs: nn::Path, channels: i64) -> Self {
        Self {
            conv: torch_init::conv2d(&vs / "conv", channels, channels, 3, 2, 0),
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        xs.constant_pad_nd([0, 1, 0, 1]).apply(&self.conv)
    }
}

/// Doubles the resolution: nearest-neighbour ×2, then a 3×3 conv.
#[derive(Debug)]
pub struct Upsample {
    conv: nn::Conv2D,
}

impl Upsample {
    pub fn new(vs: nn::Path, channels: i64) -> Self {
        Self {
            conv: torch_init::conv2d(&vs / "conv", channels, channels, 3, 1, 1),
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let (_, _, h, w) = xs.size4().expect("the decoder passes 4-d activations");
        xs.upsample_nearest2d([2 * h, 2 * w], 2.0, 2.0)
            .apply(&self.conv)
    }
}
