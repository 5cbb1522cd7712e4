//! `SynthesisNetwork` with the official default `skip` architecture: per resolution a block
//! of modulated convolutions (the first upsampling by 2 through the FIR filter), per-pixel
//! noise, and a toRGB layer whose output is added to the upsampled image of the block below.

use super::layers::{
    modulated_conv2d, randn, resample_filter, style_affine, FullyConnected, Modulation,
};
use super::ops::{bias_act, upsample2d, Activation};
use tch::nn::{self, Init};
use tch::Tensor;

/// Where the per-pixel noise of a synthesis layer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseMode {
    /// Fresh N(0, 1) noise per call (training).
    Random,
    /// The layer's stored `noise_const` (reproducible sampling, as `generate.py` uses).
    Const,
    /// No noise.
    None,
}

/// How the synthesis network runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthesisMode {
    pub noise: NoiseMode,
    /// Grouped per-sample convolutions (evaluation) or activation scaling (training).
    pub fused: bool,
}

/// Channels at each resolution: min(channel_base / res, channel_max).
pub fn channels_at(res: i64, channel_base: i64, channel_max: i64) -> i64 {
    (channel_base / res).min(channel_max)
}

/// `SynthesisLayer`: modulated 3×3 convolution, noise, bias, leaky ReLU, clamp.
#[derive(Debug)]
struct SynthesisLayer {
    affine: FullyConnected,
    weight: Tensor,
    noise_const: Tensor,
    noise_strength: Tensor,
    bias: Tensor,
    resample_filter: Tensor,
    resolution: i64,
    up: i64,
    conv_clamp: Option<f64>,
}

impl SynthesisLayer {
    fn new(
        p: &nn::Path,
        (c_in, c_out, w_dim): (i64, i64, i64),
        resolution: i64,
        up: i64,
        conv_clamp: Option<f64>,
    ) -> Self {
        let resample_filter = resample_filter(p);
        let affine = style_affine(p, w_dim, c_in);
        let weight = randn(p, "weight", &[c_out, c_in, 3, 3], 1.0);
        let mut noise_const = p.zeros_no_train("noise_const", &[resolution, resolution]);
        tch::no_grad(|| {
            noise_const.copy_(&Tensor::randn(
                [resolution, resolution],
                (tch::Kind::Float, p.device()),
            ))
        });
        let noise_strength = p.var("noise_strength", &[], Init::Const(0.0));
        let bias = p.var("bias", &[c_out], Init::Const(0.0));
        Self {
            affine,
            weight,
            noise_const,
            noise_strength,
            bias,
            resample_filter,
            resolution,
            up,
            conv_clamp,
        }
    }

    fn forward(&self, x: &Tensor, w: &Tensor, mode: SynthesisMode, gain: f64) -> Tensor {
        let styles = self.affine.forward(w);
        let noise = match mode.noise {
            NoiseMode::Random => Some(
                Tensor::randn(
                    [x.size()[0], 1, self.resolution, self.resolution],
                    (tch::Kind::Float, x.device()),
                ) * &self.noise_strength,
            ),
            NoiseMode::Const => Some(&self.noise_const * &self.noise_strength),
            NoiseMode::None => None,
        };
        let x = modulated_conv2d(
            x,
            &self.weight,
            &styles,
            noise.as_ref(),
            Some(&self.resample_filter),
            Modulation {
                up: self.up,
                padding: 1,
                demodulate: true,
                flip_weight: self.up == 1,
                fused: mode.fused,
            },
        );
        let act = Activation::LeakyRelu;
        bias_act(
            &x,
            Some(&self.bias),
            act,
            act.default_gain() * gain,
            self.conv_clamp.map(|c| c * gain),
        )
    }
}

/// `ToRGBLayer`: modulated 1×1 convolution without demodulation.
#[derive(Debug)]
struct ToRgb {
    affine: FullyConnected,
    weight: Tensor,
    bias: Tensor,
    weight_gain: f64,
    conv_clamp: Option<f64>,
}

impl ToRgb {
    fn new(p: &nn::Path, (c_in, c_out, w_dim): (i64, i64, i64), conv_clamp: Option<f64>) -> Self {
        let affine = style_affine(p, w_dim, c_in);
        let weight = randn(p, "weight", &[c_out, c_in, 1, 1], 1.0);
        let bias = p.var("bias", &[c_out], Init::Const(0.0));
        Self {
            affine,
            weight,
            bias,
            weight_gain: 1.0 / (c_in as f64).sqrt(),
            conv_clamp,
        }
    }

    fn forward(&self, x: &Tensor, w: &Tensor, fused: bool) -> Tensor {
        let styles = self.affine.forward(w) * self.weight_gain;
        let m = Modulation {
            up: 1,
            padding: 0,
            demodulate: false,
            flip_weight: true,
            fused,
        };
        let x = modulated_conv2d(x, &self.weight, &styles, None, None, m);
        bias_act(
            &x,
            Some(&self.bias),
            Activation::Linear,
            1.0,
            self.conv_clamp,
        )
    }
}

/// `SynthesisBlock` (architecture `skip`).
#[derive(Debug)]
struct SynthesisBlock {
    constant: Option<Tensor>,
    conv0: Option<SynthesisLayer>,
    conv1: SynthesisLayer,
    torgb: ToRgb,
    resample_filter: Tensor,
}

impl SynthesisBlock {
    fn num_conv(&self) -> i64 {
        1 + i64::from(self.conv0.is_some())
    }

    /// `ws` [N, num_conv + 1, w_dim]; returns the features and the image so far.
    fn forward(
        &self,
        x: Option<&Tensor>,
        img: Option<&Tensor>,
        ws: &Tensor,
        mode: SynthesisMode,
    ) -> (Tensor, Tensor) {
        let w = |i: i64| ws.select(1, i);
        let x = match (&self.constant, &self.conv0, x) {
            (Some(c), _, _) => {
                let x = c.unsqueeze(0).repeat([ws.size()[0], 1, 1, 1]);
                self.conv1.forward(&x, &w(0), mode, 1.0)
            }
            (None, Some(conv0), Some(x)) => {
                let x = conv0.forward(x, &w(0), mode, 1.0);
                self.conv1.forward(&x, &w(1), mode, 1.0)
            }
            _ => unreachable!("a block has a constant input or a conv0 fed by the block below"),
        };
        let y = self.torgb.forward(&x, &w(self.num_conv()), mode.fused);
        let img = match img {
            Some(img) => upsample2d(img, &self.resample_filter) + y,
            None => y,
        };
        (x, img)
    }
}

/// Shape of a synthesis network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthesisConfig {
    pub w_dim: i64,
    pub img_resolution: i64,
    pub img_channels: i64,
    pub channel_base: i64,
    pub channel_max: i64,
    pub conv_clamp: Option<f64>,
}

#[derive(Debug)]
pub struct SynthesisNetwork {
    blocks: Vec<SynthesisBlock>,
    num_ws: i64,
}

impl SynthesisNetwork {
    pub fn new(p: &nn::Path, c: SynthesisConfig) -> Self {
        let mut blocks = Vec::new();
        let mut num_ws = 0;
        let mut res = 4;
        while res <= c.img_resolution {
            let b = p / format!("b{res}");
            let out = channels_at(res, c.channel_base, c.channel_max);
            let first = res == 4;
            let resample = resample_filter(&b);
            let constant = first.then(|| randn(&b, "const", &[out, res, res], 1.0));
            let conv0 = (!first).then(|| {
                let c_in = channels_at(res / 2, c.channel_base, c.channel_max);
                SynthesisLayer::new(&(&b / "conv0"), (c_in, out, c.w_dim), res, 2, c.conv_clamp)
            });
            let conv1 =
                SynthesisLayer::new(&(&b / "conv1"), (out, out, c.w_dim), res, 1, c.conv_clamp);
            let torgb = ToRgb::new(
                &(&b / "torgb"),
                (out, c.img_channels, c.w_dim),
                c.conv_clamp,
            );
            let block = SynthesisBlock {
                constant,
                conv0,
                conv1,
                torgb,
                resample_filter: resample,
            };
            num_ws += block.num_conv();
            blocks.push(block);
            res *= 2;
        }
        // Only the last block's toRGB takes a w of its own; the others share the next conv's.
        Self {
            blocks,
            num_ws: num_ws + 1,
        }
    }

    /// Copies of w the network takes.
    pub fn num_ws(&self) -> i64 {
        self.num_ws
    }

    /// The image [N, C, R, R] for `ws` [N, num_ws, w_dim].
    pub fn forward(&self, ws: &Tensor, mode: SynthesisMode) -> Tensor {
        let (mut x, mut img): (Option<Tensor>, Option<Tensor>) = (None, None);
        let mut w_idx = 0;
        for block in &self.blocks {
            let block_ws = ws.narrow(1, w_idx, block.num_conv() + 1);
            w_idx += block.num_conv();
            let (nx, nimg) = block.forward(x.as_ref(), img.as_ref(), &block_ws, mode);
            x = Some(nx);
            img = Some(nimg);
        }
        img.expect("a synthesis network has at least the 4×4 block")
    }
}
