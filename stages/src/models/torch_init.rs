//! Convolutions initialised as PyTorch initialises `nn.Conv2d`.
//!
//! tch's default (Kaiming uniform with the ReLU gain, zero bias) starts from larger weights
//! than PyTorch's `kaiming_uniform_(a = √5)`, which reduces to U(±1/√fan_in) for both the
//! weight and the bias. Models trained from scratch should start where the reference does.

use std::borrow::Borrow;
use tch::nn::{self, Init};

/// PyTorch's default bound for a conv layer with `fan_in = c_in · k²` inputs per output.
fn default_bound(c_in: i64, kernel: i64) -> f64 {
    1.0 / ((c_in * kernel * kernel) as f64).sqrt()
}

/// `nn.Conv2d(c_in, c_out, kernel, stride, padding, bias)` with PyTorch's default init.
pub fn conv2d<'a>(
    vs: impl Borrow<nn::Path<'a>>,
    c_in: i64,
    c_out: i64,
    kernel: i64,
    stride: i64,
    padding: i64,
) -> nn::Conv2D {
    let bound = default_bound(c_in, kernel);
    let config = nn::ConvConfig {
        stride,
        padding,
        ws_init: Init::Uniform {
            lo: -bound,
            up: bound,
        },
        bs_init: Init::Uniform {
            lo: -bound,
            up: bound,
        },
        ..Default::default()
    };
    nn::conv2d(vs, c_in, c_out, kernel, config)
}

/// Like [`conv2d`] with the weight drawn from `weight_init` and an optional bias
/// (the bias keeps PyTorch's default), as taming's `weights_init` re-initialises weights.
pub fn conv2d_with_weight_init<'a>(
    vs: impl Borrow<nn::Path<'a>>,
    c_in: i64,
    c_out: i64,
    (kernel, stride, padding): (i64, i64, i64),
    bias: bool,
    weight_init: Init,
) -> nn::Conv2D {
    let bound = default_bound(c_in, kernel);
    let config = nn::ConvConfig {
        stride,
        padding,
        bias,
        ws_init: weight_init,
        bs_init: Init::Uniform {
            lo: -bound,
            up: bound,
        },
        ..Default::default()
    };
    nn::conv2d(vs, c_in, c_out, kernel, config)
}
