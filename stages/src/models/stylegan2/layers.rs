//! The layers StyleGAN2's networks are built of (`training/networks.py`): equalized-lr
//! fully connected and convolution layers (weights stored at N(0, 1), scaled at run time),
//! and the modulated/demodulated convolution of the synthesis network.

use super::ops::{bias_act, conv2d_resample, setup_filter, Activation, Resample};
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

/// The FIR taps every resampling layer uses (`resample_filter=[1,3,3,1]`).
pub const RESAMPLE_TAPS: [f64; 4] = [1.0, 3.0, 3.0, 1.0];

/// `register_buffer('resample_filter', setup_filter([1,3,3,1]))`: a buffer, so converted
/// snapshots load strictly, holding the filter the layer uses.
pub fn resample_filter(p: &nn::Path) -> Tensor {
    let mut f = p.zeros_no_train("resample_filter", &[4, 4]);
    tch::no_grad(|| f.copy_(&setup_filter(&RESAMPLE_TAPS)));
    f
}

/// A weight drawn from N(0, σ²) as `torch.randn(...) * σ`.
pub(crate) fn randn(p: &nn::Path, name: &str, dims: &[i64], stdev: f64) -> Tensor {
    p.var(name, dims, Init::Randn { mean: 0.0, stdev })
}

/// `FullyConnectedLayer`: y = act(x·(w·lr/√in)ᵀ + b·lr).
#[derive(Debug)]
pub struct FullyConnected {
    weight: Tensor,
    bias: Option<Tensor>,
    activation: Activation,
    weight_gain: f64,
    bias_gain: f64,
}

impl FullyConnected {
    pub fn new(
        p: &nn::Path,
        (in_features, out_features): (i64, i64),
        activation: Activation,
        lr_multiplier: f64,
        bias_init: Option<f64>,
    ) -> Self {
        let weight = randn(
            p,
            "weight",
            &[out_features, in_features],
            1.0 / lr_multiplier,
        );
        let bias = bias_init.map(|b| p.var("bias", &[out_features], Init::Const(b)));
        Self {
            weight,
            bias,
            activation,
            weight_gain: lr_multiplier / (in_features as f64).sqrt(),
            bias_gain: lr_multiplier,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let w = &self.weight * self.weight_gain;
        let b = self.bias.as_ref().map(|b| {
            if self.bias_gain != 1.0 {
                b * self.bias_gain
            } else {
                b.shallow_clone()
            }
        });
        match (&b, self.activation) {
            (Some(b), Activation::Linear) => b.unsqueeze(0).addmm(x, &w.tr()),
            _ => bias_act(
                &x.matmul(&w.tr()),
                b.as_ref(),
                self.activation,
                self.activation.default_gain(),
                None,
            ),
        }
    }
}

/// The affine layer that maps w to a modulated layer's styles (`bias_init=1`).
pub(crate) fn style_affine(p: &nn::Path, w_dim: i64, channels: i64) -> FullyConnected {
    FullyConnected::new(
        &(p / "affine"),
        (w_dim, channels),
        Activation::Linear,
        1.0,
        Some(1.0),
    )
}

/// Options of a [`Conv2dLayer`] beyond its shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConvOptions {
    pub bias: bool,
    pub activation: Activation,
    pub up: i64,
    pub down: i64,
    pub conv_clamp: Option<f64>,
}

/// `Conv2dLayer`: an equalized-lr convolution with optional up/down-sampling.
#[derive(Debug)]
pub struct Conv2dLayer {
    weight: Tensor,
    bias: Option<Tensor>,
    resample_filter: Tensor,
    options: ConvOptions,
    padding: i64,
    weight_gain: f64,
}

impl Conv2dLayer {
    pub fn new(p: &nn::Path, (c_in, c_out, kernel): (i64, i64, i64), options: ConvOptions) -> Self {
        let resample_filter = resample_filter(p);
        let weight = randn(p, "weight", &[c_out, c_in, kernel, kernel], 1.0);
        let bias = options
            .bias
            .then(|| p.var("bias", &[c_out], Init::Const(0.0)));
        Self {
            weight,
            bias,
            resample_filter,
            options,
            padding: kernel / 2,
            weight_gain: 1.0 / ((c_in * kernel * kernel) as f64).sqrt(),
        }
    }

    /// The layer with its activation gain multiplied by `gain` (residual branches use √½).
    pub fn forward(&self, x: &Tensor, gain: f64) -> Tensor {
        let o = self.options;
        let w = &self.weight * self.weight_gain;
        let x = conv2d_resample(
            x,
            &w.to_kind(x.kind()),
            Some(&self.resample_filter),
            Resample {
                up: o.up,
                down: o.down,
                padding: self.padding,
                groups: 1,
                flip_weight: o.up == 1,
            },
        );
        bias_act(
            &x,
            self.bias.as_ref(),
            o.activation,
            o.activation.default_gain() * gain,
            o.conv_clamp.map(|c| c * gain),
        )
    }
}

/// How a [`modulated_conv2d`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modulation {
    pub up: i64,
    pub padding: i64,
    pub demodulate: bool,
    pub flip_weight: bool,
    /// One grouped convolution with per-sample weights (the official eval path) instead of
    /// scaling the activations before and after a shared convolution (its training path).
    pub fused: bool,
}

/// `modulated_conv2d`: the weight scaled per sample by `styles` [N, I] and, when
/// demodulating, normalised per output channel; `noise` is added to the output.
pub fn modulated_conv2d(
    x: &Tensor,
    weight: &Tensor,
    styles: &Tensor,
    noise: Option<&Tensor>,
    filter: Option<&Tensor>,
    m: Modulation,
) -> Tensor {
    let batch = x.size()[0];
    let size = weight.size();
    let (in_channels, kh, kw) = (size[1], size[2], size[3]);
    let modulated = (m.demodulate || m.fused)
        .then(|| weight.unsqueeze(0) * styles.reshape([batch, 1, -1, 1, 1]));
    let dcoefs = match (&modulated, m.demodulate) {
        (Some(w), true) => Some(
            (w.square()
                .sum_dim_intlist(&[2i64, 3, 4][..], false, Kind::Float)
                + 1e-8)
                .rsqrt(),
        ),
        _ => None,
    };
    let resample = |groups| Resample {
        up: m.up,
        down: 1,
        padding: m.padding,
        groups,
        flip_weight: m.flip_weight,
    };
    if !m.fused {
        let x = x * styles.reshape([batch, -1, 1, 1]);
        let x = conv2d_resample(&x, weight, filter, resample(1));
        return match (&dcoefs, noise) {
            // fma.fma(x, dcoefs, noise) is addcmul(noise, x, dcoefs).
            (Some(d), Some(n)) => n.addcmul(&x, &d.reshape([batch, -1, 1, 1])),
            (Some(d), None) => x * d.reshape([batch, -1, 1, 1]),
            (None, Some(n)) => x + n,
            (None, None) => x,
        };
    }
    let w = modulated.expect("fused modulation builds the per-sample weights");
    let w = match &dcoefs {
        Some(d) => w * d.reshape([batch, -1, 1, 1, 1]),
        None => w,
    };
    let (h, wd) = (x.size()[2], x.size()[3]);
    let x = x.reshape([1, -1, h, wd]);
    let w = w.reshape([-1, in_channels, kh, kw]);
    let x = conv2d_resample(&x, &w, filter, resample(batch));
    let x = x.reshape([batch, -1, x.size()[2], x.size()[3]]);
    match noise {
        Some(n) => x + n,
        None => x,
    }
}
