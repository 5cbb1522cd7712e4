//! Stand-alone resampling layers used when `resblock_updown` is false: `Downsample`
//! (stride-2 3×3 conv `op`, or 2×2 average pooling) and `Upsample` (nearest ×2, then an
//! optional 3×3 conv `conv`), as in openaimodel.

use tch::{nn, nn::Module, Tensor};

/// 2×2 average pooling with stride 2 (openaimodel `avg_pool_nd`).
pub fn avg_pool_2x(xs: &Tensor) -> Tensor {
    xs.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>)
}

/// Nearest-neighbour ×2 upsampling (`F.interpolate(scale_factor=2, mode="nearest")`).
pub fn nearest_2x(xs: &Tensor) -> Tensor {
    let size = xs.size();
    let (h, w) = (size[size.len() - 2], size[size.len() - 1]);
    xs.upsample_nearest2d([2 * h, 2 * w], 2.0, 2.0)
}

/// Halves the spatial size; with `use_conv` the learned conv sits at `op`.
#[derive(Debug)]
pub struct Downsample {
    op: Option<nn::Conv2D>,
}

impl Downsample {
    pub fn new(vs: nn::Path, channels: i64, out_channels: i64, use_conv: bool) -> Self {
        let config = nn::ConvConfig {
            stride: 2,
            padding: 1,
            ..Default::default()
        };
        let op = use_conv.then(|| nn::conv2d(&vs / "op", channels, out_channels, 3, config));
        Self { op }
    }
}

impl Module for Downsample {
    fn forward(&self, xs: &Tensor) -> Tensor {
        match &self.op {
            Some(conv) => xs.apply(conv),
            None => avg_pool_2x(xs),
        }
    }
}

/// Doubles the spatial size; with `use_conv` a 3×3 conv at `conv` follows.
#[derive(Debug)]
pub struct Upsample {
    conv: Option<nn::Conv2D>,
}

impl Upsample {
    pub fn new(vs: nn::Path, channels: i64, out_channels: i64, use_conv: bool) -> Self {
        let config = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        let conv = use_conv.then(|| nn::conv2d(&vs / "conv", channels, out_channels, 3, config));
        Self { conv }
    }
}

impl Module for Upsample {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let up = nearest_2x(xs);
        match &self.conv {
            Some(conv) => up.apply(conv),
            None => up,
        }
    }
}
