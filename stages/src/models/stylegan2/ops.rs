//! The low-level ops of StyleGAN2-ADA (`torch_utils/ops`), as their pure-PyTorch reference
//! paths compute them: `bias_act`, `upfirdn2d` with its 2-D FIR filter, and
//! `conv2d_resample`'s choice of fused up/down-sampling convolutions. Each function follows
//! the official one branch for branch, so the networks built on them reproduce the
//! official outputs (stylegan2 parity tests) and load converted snapshots by name.

use tch::{Kind, Tensor};

/// Activation of a layer (`bias_act.activation_funcs`): identity, or leaky ReLU with slope
/// 0.2 and the default gain √2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Linear,
    LeakyRelu,
}

impl Activation {
    /// `def_gain`: the factor that keeps the activations' magnitude.
    pub fn default_gain(self) -> f64 {
        match self {
            Activation::Linear => 1.0,
            Activation::LeakyRelu => std::f64::consts::SQRT_2,
        }
    }

    fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Activation::Linear => x.shallow_clone(),
            Activation::LeakyRelu => crate::models::discriminator::leaky_relu(x),
        }
    }
}

/// `bias_act(x, b, dim=1, act, gain, clamp)`: add the bias along dim 1, activate, scale,
/// clamp to ±clamp.
pub fn bias_act(
    x: &Tensor,
    bias: Option<&Tensor>,
    act: Activation,
    gain: f64,
    clamp: Option<f64>,
) -> Tensor {
    let mut x = match bias {
        Some(b) => {
            let mut shape = vec![1i64; x.dim()];
            shape[1] = -1;
            x + b.reshape(&shape)
        }
        None => x.shallow_clone(),
    };
    x = act.apply(&x);
    let x = if gain != 1.0 { x * gain } else { x };
    match clamp {
        Some(c) => x.clamp(-c, c),
        None => x,
    }
}

/// `upfirdn2d.setup_filter([1, 3, 3, 1])`: the separable taps' outer product, normalised to
/// sum 1 (4 taps are below the official threshold of 8 for a separable filter).
pub fn setup_filter(taps: &[f64]) -> Tensor {
    let f = Tensor::from_slice(taps).to_kind(Kind::Float);
    let f = f.outer(&f);
    let sum = f.sum(Kind::Float);
    f / sum
}

/// Padding `[x0, x1, y0, y1]` around an image, negative values crop.
pub type Padding = [i64; 4];

/// `upfirdn2d(x, f, up, down, padding, flip_filter=False, gain)`: upsample by inserting
/// zeros, pad (or crop), convolve with the (flipped) 2-D filter, keep every `down`-th pixel.
pub fn upfirdn2d(x: &Tensor, f: &Tensor, up: i64, down: i64, pad: Padding, gain: f64) -> Tensor {
    let (b, c, h, w) = x.size4().expect("upfirdn2d takes NCHW");
    let mut x = if up > 1 {
        x.reshape([b, c, h, 1, w, 1])
            .constant_pad_nd([0, up - 1, 0, 0, 0, up - 1])
            .reshape([b, c, h * up, w * up])
    } else {
        x.shallow_clone()
    };
    let [px0, px1, py0, py1] = pad;
    x = x.constant_pad_nd([px0.max(0), px1.max(0), py0.max(0), py1.max(0)]);
    let (hh, ww) = (x.size()[2], x.size()[3]);
    let (top, bottom) = ((-py0).max(0), (-py1).max(0));
    let (left, right) = ((-px0).max(0), (-px1).max(0));
    if top + bottom + left + right > 0 {
        x = x
            .narrow(2, top, hh - top - bottom)
            .narrow(3, left, ww - left - right);
    }
    // gain ** (f.ndim / 2) with a 2-D filter; the reference flips it (convolution).
    let f = (f * gain).to_kind(x.kind()).flip([0, 1]);
    let f = f.unsqueeze(0).unsqueeze(0).repeat([c, 1, 1, 1]);
    x = x.conv2d(&f, None::<&Tensor>, [1, 1], [0, 0], [1, 1], c);
    if down > 1 {
        x = x.slice(2, 0, None, down).slice(3, 0, None, down);
    }
    x
}

/// `upfirdn2d.upsample2d(x, f, up=2)`.
pub fn upsample2d(x: &Tensor, f: &Tensor) -> Tensor {
    let (fh, fw) = filter_size(Some(f));
    let up = 2;
    let pad = [
        (fw + up - 1) / 2,
        (fw - up) / 2,
        (fh + up - 1) / 2,
        (fh - up) / 2,
    ];
    upfirdn2d(x, f, up, 1, pad, (up * up) as f64)
}

/// `upfirdn2d.downsample2d(x, f, down=2)`.
pub fn downsample2d(x: &Tensor, f: &Tensor) -> Tensor {
    let (fh, fw) = filter_size(Some(f));
    let down = 2;
    let pad = [
        (fw - down + 1) / 2,
        (fw - down) / 2,
        (fh - down + 1) / 2,
        (fh - down) / 2,
    ];
    upfirdn2d(x, f, 1, down, pad, 1.0)
}

fn filter_size(f: Option<&Tensor>) -> (i64, i64) {
    f.map_or((1, 1), |f| (f.size()[0], f.size()[1]))
}

/// How a convolution resamples: factors, padding, groups and orientation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resample {
    pub up: i64,
    pub down: i64,
    /// Padding with respect to the upsampled image (the same on every side).
    pub padding: i64,
    pub groups: i64,
    /// true: correlation (`F.conv2d`); false: convolution (the weight is flipped).
    pub flip_weight: bool,
}

/// `_conv2d_wrapper`: `F.conv2d` or `F.conv_transpose2d`, flipping the weight for a true
/// convolution.
fn conv(
    x: &Tensor,
    w: &Tensor,
    stride: i64,
    padding: [i64; 2],
    r: Resample,
    transpose: bool,
) -> Tensor {
    let w = if r.flip_weight {
        w.shallow_clone()
    } else {
        w.flip([2, 3])
    };
    if transpose {
        x.conv_transpose2d(
            &w,
            None::<&Tensor>,
            [stride, stride],
            padding,
            [0, 0],
            r.groups,
            [1, 1],
        )
    } else {
        x.conv2d(
            &w,
            None::<&Tensor>,
            [stride, stride],
            padding,
            [1, 1],
            r.groups,
        )
    }
}

/// `conv2d_resample(x, w, f, up, down, padding, groups, flip_weight)`: 2-D convolution with
/// optional up/down-sampling, padding applied once; the branch order is the official one,
/// since each branch rounds differently.
pub fn conv2d_resample(x: &Tensor, w: &Tensor, f: Option<&Tensor>, r: Resample) -> Tensor {
    let size = w.size();
    let (out_channels, in_per_group, kh, kw) = (size[0], size[1], size[2], size[3]);
    let (fh, fw) = filter_size(f);
    let (up, down) = (r.up, r.down);
    let (mut px0, mut px1, mut py0, mut py1) = (r.padding, r.padding, r.padding, r.padding);
    if up > 1 {
        px0 += (fw + up - 1) / 2;
        px1 += (fw - up) / 2;
        py0 += (fh + up - 1) / 2;
        py1 += (fh - up) / 2;
    }
    if down > 1 {
        px0 += (fw - down + 1) / 2;
        px1 += (fw - down) / 2;
        py0 += (fh - down + 1) / 2;
        py1 += (fh - down) / 2;
    }
    // The official None filter is the 1×1 identity; made only when a call has none.
    let identity;
    let f = match f {
        Some(f) => f,
        None => {
            identity = Tensor::ones([1, 1], (Kind::Float, x.device()));
            &identity
        }
    };
    let gain_up = (up * up) as f64;
    if kw == 1 && kh == 1 && down > 1 && up == 1 {
        let x = upfirdn2d(x, f, 1, down, [px0, px1, py0, py1], 1.0);
        return conv(&x, w, 1, [0, 0], r, false);
    }
    if kw == 1 && kh == 1 && up > 1 && down == 1 {
        let x = conv(x, w, 1, [0, 0], r, false);
        return upfirdn2d(&x, f, up, 1, [px0, px1, py0, py1], gain_up);
    }
    if down > 1 && up == 1 {
        let x = upfirdn2d(x, f, 1, 1, [px0, px1, py0, py1], 1.0);
        return conv(&x, w, down, [0, 0], r, false);
    }
    if up > 1 {
        let w = if r.groups == 1 {
            w.transpose(0, 1)
        } else {
            w.reshape([r.groups, out_channels / r.groups, in_per_group, kh, kw])
                .transpose(1, 2)
                .reshape([r.groups * in_per_group, out_channels / r.groups, kh, kw])
        };
        px0 -= kw - 1;
        px1 -= kw - up;
        py0 -= kh - 1;
        py1 -= kh - up;
        let pxt = (-px0).min(-px1).max(0);
        let pyt = (-py0).min(-py1).max(0);
        let flipped = Resample {
            flip_weight: !r.flip_weight,
            ..r
        };
        let x = conv(x, &w, up, [pyt, pxt], flipped, true);
        let x = upfirdn2d(
            &x,
            f,
            1,
            1,
            [px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt],
            gain_up,
        );
        return if down > 1 {
            upfirdn2d(&x, f, 1, down, [0; 4], 1.0)
        } else {
            x
        };
    }
    if up == 1 && down == 1 && px0 == px1 && py0 == py1 && px0 >= 0 && py0 >= 0 {
        return conv(x, w, 1, [py0, px0], r, false);
    }
    // The generic reference path (up == 1 here: the branches above took every up > 1).
    let identity = Tensor::ones([1, 1], (Kind::Float, x.device()));
    let x = upfirdn2d(x, &identity, 1, 1, [px0, px1, py0, py1], 1.0);
    let x = conv(&x, w, 1, [0, 0], r, false);
    if down > 1 {
        upfirdn2d(&x, f, 1, down, [0; 4], 1.0)
    } else {
        x
    }
}
