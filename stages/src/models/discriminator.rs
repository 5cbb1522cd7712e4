//! taming-transformers' `NLayerDiscriminator`: the PatchGAN critic of the AE loss (SPEC §2.5).

use crate::models::torch_init;
use serde::{Deserialize, Serialize};
use tch::nn::{self, Init, ModuleT};
use tch::Tensor;

/// PatchGAN size; the default is the one LPIPSWithDiscriminator builds (ndf 64, 3 layers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscriminatorConfig {
    /// Image channels (`disc_in_channels`).
    pub in_channels: i64,
    /// Width of the first conv (`ndf`).
    pub ndf: i64,
    /// Number of stride-2 convs (`disc_num_layers`).
    pub n_layers: usize,
}

impl Default for DiscriminatorConfig {
    fn default() -> Self {
        Self {
            in_channels: 3,
            ndf: 64,
            n_layers: 3,
        }
    }
}

#[derive(Debug)]
enum Layer {
    Conv(nn::Conv2D),
    BatchNorm(nn::BatchNorm),
    LeakyRelu,
}

/// `main` is an nn.Sequential: conv(s2)+LReLU, (n_layers−1)×[conv(s2), BN, LReLU],
/// conv(s1), BN, LReLU, conv(s1) → one logit per patch.
#[derive(Debug)]
pub struct NLayerDiscriminator {
    main: Vec<Layer>,
}

/// taming's `weights_init`: conv weights N(0, 0.02); BatchNorm weight N(1, 0.02), bias 0.
const CONV_INIT: Init = Init::Randn {
    mean: 0.0,
    stdev: 0.02,
};

impl NLayerDiscriminator {
    pub fn new(vs: &nn::Path, config: &DiscriminatorConfig) -> Self {
        let main = vs / "main";
        let mut layers = Vec::new();
        let conv = |layers: &mut Vec<Layer>, c_in, c_out, stride, bias| {
            let conv = torch_init::conv2d_with_weight_init(
                &main / layers.len(),
                c_in,
                c_out,
                (4, stride, 1),
                bias,
                CONV_INIT,
            );
            layers.push(Layer::Conv(conv));
        };
        let batch_norm = |layers: &mut Vec<Layer>, channels| {
            let config = nn::BatchNormConfig {
                ws_init: Init::Randn {
                    mean: 1.0,
                    stdev: 0.02,
                },
                bs_init: Init::Const(0.0),
                ..Default::default()
            };
            layers.push(Layer::BatchNorm(nn::batch_norm2d(
                &main / layers.len(),
                channels,
                config,
            )));
            layers.push(Layer::LeakyRelu);
        };
        conv(&mut layers, config.in_channels, config.ndf, 2, true);
        layers.push(Layer::LeakyRelu);
        let mut mult = 1;
        for n in 1..=config.n_layers {
            let prev = mult;
            mult = (1i64 << n).min(8);
            // The last of these keeps the resolution (stride 1), as in taming.
            let stride = if n < config.n_layers { 2 } else { 1 };
            conv(
                &mut layers,
                config.ndf * prev,
                config.ndf * mult,
                stride,
                false,
            );
            batch_norm(&mut layers, config.ndf * mult);
        }
        conv(&mut layers, config.ndf * mult, 1, 1, true);
        Self { main: layers }
    }

    /// Patch logits (B, 1, h, w). `train` selects batch statistics (and updates the running
    /// ones, as PyTorch does) versus the running statistics.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.main
            .iter()
            .fold(xs.shallow_clone(), |h, layer| match layer {
                Layer::Conv(conv) => h.apply(conv),
                Layer::BatchNorm(bn) => bn.forward_t(&h, train),
                Layer::LeakyRelu => leaky_relu(&h),
            })
    }
}

/// LeakyReLU with slope 0.2 (tch's `leaky_relu` has the fixed slope 0.01); the gradient at
/// 0 is the slope, as in PyTorch.
pub(crate) fn leaky_relu(xs: &Tensor) -> Tensor {
    xs.where_self(&xs.gt(0.0), &(xs * 0.2))
}
