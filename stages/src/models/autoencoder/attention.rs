//! Single-head spatial self-attention (`AttnBlock`) and the mid block that wraps it.

use super::resnet::{normalize, ResnetBlock};
use crate::models::torch_init;
use tch::{nn, Tensor};

/// `AttnBlock`: one head over the H·W positions, q/k/v/proj_out as 1×1 convs, residual.
#[derive(Debug)]
pub struct AttnBlock {
    norm: nn::GroupNorm,
    q: nn::Conv2D,
    k: nn::Conv2D,
    v: nn::Conv2D,
    proj_out: nn::Conv2D,
}

impl AttnBlock {
    pub fn new(vs: nn::Path, channels: i64) -> Self {
        let conv = |name: &str| torch_init::conv2d(&vs / name, channels, channels, 1, 1, 0);
        Self {
            norm: normalize(&vs / "norm", channels),
            q: conv("q"),
            k: conv("k"),
            v: conv("v"),
            proj_out: conv("proj_out"),
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let (b, c, h, w) = xs.size4().expect("the autoencoder passes 4-d activations");
        let normed = xs.apply(&self.norm);
        // (B, C, H, W) → (B, 1 head, H·W, C): fused attention computes softmax(q kᵀ / √C) v
        // exactly as model.py's bmm version, without materialising the (HW)² matrix. The
        // copy matters: libtorch's fused kernels take only inputs whose last dimension is
        // contiguous, and fall back to the math kernel (the whole matrix: 1 GiB per image
        // for 16,384 positions) otherwise.
        let tokens = |conv: &nn::Conv2D| {
            normed
                .apply(conv)
                .reshape([b, 1, c, h * w])
                .transpose(2, 3)
                .contiguous()
        };
        let attended = Tensor::scaled_dot_product_attention(
            &tokens(&self.q),
            &tokens(&self.k),
            &tokens(&self.v),
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        let attended = attended.transpose(2, 3).reshape([b, c, h, w]);
        xs + attended.apply(&self.proj_out)
    }
}

/// `mid`: resnet block, attention, resnet block at the lowest resolution.
#[derive(Debug)]
pub struct MidBlock {
    block_1: ResnetBlock,
    attn_1: AttnBlock,
    block_2: ResnetBlock,
}

impl MidBlock {
    pub fn new(vs: nn::Path, channels: i64, dropout: f64) -> Self {
        Self {
            block_1: ResnetBlock::new(&vs / "block_1", channels, channels, dropout),
            attn_1: AttnBlock::new(&vs / "attn_1", channels),
            block_2: ResnetBlock::new(&vs / "block_2", channels, channels, dropout),
        }
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let h = self.block_1.forward_t(xs, train);
        let h = self.attn_1.forward(&h);
        self.block_2.forward_t(&h, train)
    }
}
