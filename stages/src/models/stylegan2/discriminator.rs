//! The StyleGAN2 `Discriminator` with the official default `resnet` architecture: residual
//! blocks that halve the resolution through the FIR filter, then an epilogue with the
//! minibatch standard deviation, and a projection head that conditions on the class
//! through a mapping network of the label.

use super::layers::{resample_filter, Conv2dLayer, ConvOptions, FullyConnected};
use super::mapping::{MappingConfig, MappingNetwork, Truncation};
use super::ops::Activation;
use super::synthesis::channels_at;
use tch::nn;
use tch::{Kind, Tensor};

/// Shape of a discriminator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiscriminatorConfig {
    pub c_dim: i64,
    pub img_resolution: i64,
    pub img_channels: i64,
    pub channel_base: i64,
    pub channel_max: i64,
    pub conv_clamp: Option<f64>,
    /// Group size of the minibatch standard deviation (`None`: the whole batch).
    pub mbstd_group_size: Option<i64>,
    /// Layers of the label mapping network (official default 8).
    pub mapping_layers: i64,
}

fn lrelu(conv_clamp: Option<f64>) -> ConvOptions {
    ConvOptions {
        bias: true,
        activation: Activation::LeakyRelu,
        up: 1,
        down: 1,
        conv_clamp,
    }
}

/// `DiscriminatorBlock` (architecture `resnet`).
#[derive(Debug)]
struct Block {
    fromrgb: Option<Conv2dLayer>,
    conv0: Conv2dLayer,
    conv1: Conv2dLayer,
    skip: Conv2dLayer,
}

impl Block {
    fn new(
        p: &nn::Path,
        (c_in, tmp, out): (i64, i64, i64),
        img_channels: i64,
        clamp: Option<f64>,
    ) -> Self {
        // The buffer exists in the official block although only its layers use filters.
        let _ = resample_filter(p);
        let fromrgb = (c_in == 0)
            .then(|| Conv2dLayer::new(&(p / "fromrgb"), (img_channels, tmp, 1), lrelu(clamp)));
        let conv0 = Conv2dLayer::new(&(p / "conv0"), (tmp, tmp, 3), lrelu(clamp));
        let conv1 = Conv2dLayer::new(
            &(p / "conv1"),
            (tmp, out, 3),
            ConvOptions {
                down: 2,
                ..lrelu(clamp)
            },
        );
        let skip_options = ConvOptions {
            bias: false,
            activation: Activation::Linear,
            up: 1,
            down: 2,
            conv_clamp: None,
        };
        let skip = Conv2dLayer::new(&(p / "skip"), (tmp, out, 1), skip_options);
        Self {
            fromrgb,
            conv0,
            conv1,
            skip,
        }
    }

    fn forward(&self, x: Option<&Tensor>, img: &Tensor) -> Tensor {
        let x = match (&self.fromrgb, x) {
            (Some(fromrgb), None) => fromrgb.forward(img, 1.0),
            (None, Some(x)) => x.shallow_clone(),
            _ => unreachable!("only the first block reads the image"),
        };
        let half = 0.5f64.sqrt();
        let y = self.skip.forward(&x, half);
        let x = self.conv0.forward(&x, 1.0);
        let x = self.conv1.forward(&x, half);
        y + x
    }
}

/// `MinibatchStdLayer` with one feature: the standard deviation over groups of the batch,
/// averaged over channels and pixels, appended as a channel.
pub fn minibatch_std(x: &Tensor, group_size: Option<i64>) -> Tensor {
    let (n, c, h, w) = x.size4().expect("NCHW");
    let g = group_size.map_or(n, |g| g.min(n));
    let y = x.reshape([g, -1, 1, c, h, w]);
    let y = &y - y.mean_dim(0, false, Kind::Float);
    let y = y.square().mean_dim(0, false, Kind::Float);
    let y = (y + 1e-8).sqrt();
    let y = y.mean_dim(&[2i64, 3, 4][..], false, Kind::Float);
    let y = y.reshape([-1, 1, 1, 1]).repeat([g, 1, h, w]);
    Tensor::cat(&[x.shallow_clone(), y], 1)
}

/// `DiscriminatorEpilogue` at 4×4: minibatch std, conv, fc, out, and the projection
/// (x · cmap) / √cmap_dim.
#[derive(Debug)]
struct Epilogue {
    conv: Conv2dLayer,
    fc: FullyConnected,
    out: FullyConnected,
    mbstd_group_size: Option<i64>,
    cmap_dim: i64,
}

#[derive(Debug)]
pub struct Discriminator {
    config: DiscriminatorConfig,
    blocks: Vec<Block>,
    mapping: MappingNetwork,
    epilogue: Epilogue,
}

impl Discriminator {
    pub fn new(p: &nn::Path, c: DiscriminatorConfig) -> Self {
        let ch = |res| channels_at(res, c.channel_base, c.channel_max);
        let mut blocks = Vec::new();
        let mut res = c.img_resolution;
        while res > 4 {
            let c_in = if res < c.img_resolution { ch(res) } else { 0 };
            blocks.push(Block::new(
                &(p / format!("b{res}")),
                (c_in, ch(res), ch(res / 2)),
                c.img_channels,
                c.conv_clamp,
            ));
            res /= 2;
        }
        let cmap_dim = ch(4);
        let mapping = MappingNetwork::new(
            &(p / "mapping"),
            MappingConfig {
                z_dim: 0,
                c_dim: c.c_dim,
                w_dim: cmap_dim,
                num_ws: None,
                num_layers: c.mapping_layers,
                w_avg_beta: None,
            },
        );
        let e = p / "b4";
        let c4 = ch(4);
        let epilogue = Epilogue {
            conv: Conv2dLayer::new(&(&e / "conv"), (c4 + 1, c4, 3), lrelu(c.conv_clamp)),
            fc: FullyConnected::new(
                &(&e / "fc"),
                (c4 * 16, c4),
                Activation::LeakyRelu,
                1.0,
                Some(0.0),
            ),
            out: FullyConnected::new(
                &(&e / "out"),
                (c4, cmap_dim),
                Activation::Linear,
                1.0,
                Some(0.0),
            ),
            mbstd_group_size: c.mbstd_group_size,
            cmap_dim,
        };
        Self {
            config: c,
            blocks,
            mapping,
            epilogue,
        }
    }

    pub fn config(&self) -> &DiscriminatorConfig {
        &self.config
    }

    /// Logits [N, 1] for images [N, C, R, R] in [−1, 1] and one-hot labels `c` [N, c_dim].
    pub fn forward(&self, img: &Tensor, c: &Tensor) -> Tensor {
        let mut x: Option<Tensor> = None;
        for block in &self.blocks {
            x = Some(block.forward(x.as_ref(), img));
        }
        let x = x.expect("resolutions above 4 have at least one block");
        let cmap = self.mapping.forward(None, c, Truncation::NONE, false);
        let e = &self.epilogue;
        let x = minibatch_std(&x, e.mbstd_group_size);
        let x = e.conv.forward(&x, 1.0);
        let x = e.fc.forward(&x.flatten(1, -1));
        let x = e.out.forward(&x);
        (x * cmap).sum_dim_intlist(1, true, Kind::Float) * (1.0 / (e.cmap_dim as f64).sqrt())
    }
}
