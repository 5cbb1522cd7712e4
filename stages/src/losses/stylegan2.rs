//! StyleGAN2's loss as the official `StyleGAN2Loss` computes it (training/loss.py): the
//! non-saturating logistic loss for G and D, style mixing, and the two lazy regularisers,
//! path-length (G, every 4 steps) and R1 (D, every 16 steps), each returned as the scalar a
//! phase differentiates (`gain` included, the official `· 0` terms kept so every parameter
//! receives a gradient exactly when the official one does).

use crate::models::stylegan2::{Discriminator, Generator, NoiseMode, SynthesisMode, Truncation};
use tch::{Kind, Tensor};

/// The loss's hyper-parameters (`StyleGAN2Loss.__init__`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossConfig {
    pub style_mixing_prob: f64,
    pub r1_gamma: f64,
    pub pl_batch_shrink: i64,
    pub pl_decay: f64,
    pub pl_weight: f64,
}

impl Default for LossConfig {
    /// The official defaults (r1_gamma is set per configuration; 10 is the class default).
    fn default() -> Self {
        Self {
            style_mixing_prob: 0.9,
            r1_gamma: 10.0,
            pl_batch_shrink: 2,
            pl_decay: 0.01,
            pl_weight: 2.0,
        }
    }
}

/// One phase's differentiable scalar and the values it reports.
#[derive(Debug)]
pub struct PhaseLoss {
    pub loss: Tensor,
    pub terms: Vec<(&'static str, f64)>,
}

/// Style mixing: the copies of w from `cutoff` on come from `other`
/// (`ws[:, cutoff:] = other[:, cutoff:]`).
pub fn mix_styles(ws: &Tensor, other: &Tensor, cutoff: i64) -> Tensor {
    let num_ws = ws.size()[1];
    if cutoff >= num_ws {
        return ws.shallow_clone();
    }
    Tensor::cat(
        &[
            ws.narrow(1, 0, cutoff),
            other.narrow(1, cutoff, num_ws - cutoff),
        ],
        1,
    )
}

/// The loss and its state: the running mean of path lengths.
#[derive(Debug)]
pub struct Stylegan2Loss {
    pub config: LossConfig,
    pub pl_mean: Tensor,
    noise: NoiseMode,
}

fn mean(t: &Tensor) -> Tensor {
    t.mean(Kind::Float)
}

impl Stylegan2Loss {
    /// `noise`: the synthesis noise of the training forward (`Random` in training; the
    /// parity tests use `Const`).
    pub fn new(config: LossConfig, noise: NoiseMode, device: tch::Device) -> Self {
        Self {
            config,
            pl_mean: Tensor::zeros([], (Kind::Float, device)),
            noise,
        }
    }

    /// `run_G`: w (moving w̄), style mixing with probability `style_mixing_prob` at a
    /// cutoff drawn from [1, num_ws), and the unfused training synthesis.
    pub fn run_g(&self, g: &Generator, z: &Tensor, c: &Tensor) -> (Tensor, Tensor) {
        let mut ws = g.mapping.forward(Some(z), c, Truncation::NONE, true);
        let num_ws = ws.size()[1];
        if self.config.style_mixing_prob > 0.0 {
            let cutoff =
                Tensor::randint_low(1, num_ws, [], (Kind::Int64, z.device())).int64_value(&[]);
            let mix = Tensor::rand([], (Kind::Float, z.device())).double_value(&[])
                < self.config.style_mixing_prob;
            if mix {
                let other = g
                    .mapping
                    .forward(Some(&z.randn_like()), c, Truncation::NONE, false);
                ws = Tensor::cat(
                    &[
                        ws.narrow(1, 0, cutoff),
                        other.narrow(1, cutoff, num_ws - cutoff),
                    ],
                    1,
                );
            }
        }
        let img = g.synthesis.forward(
            &ws,
            SynthesisMode {
                noise: self.noise,
                fused: false,
            },
        );
        (img, ws)
    }

    /// Gmain: softplus(−D(G(z, c), c)), mean.
    pub fn g_main(&self, g: &Generator, d: &Discriminator, z: &Tensor, c: &Tensor) -> PhaseLoss {
        let (img, _) = self.run_g(g, z, c);
        let logits = d.forward(&img, c);
        let loss = mean(&(-&logits).softplus());
        let value = loss.double_value(&[]);
        PhaseLoss {
            loss,
            terms: vec![("loss_G", value)],
        }
    }

    /// Gpl: the path-length penalty on the first batch/`pl_batch_shrink` samples, with
    /// `pl_noise` ~ N(0, 1) of the image's shape (divided by √(H·W) here), times `gain`.
    pub fn g_path_length(
        &mut self,
        g: &Generator,
        z: &Tensor,
        c: &Tensor,
        pl_noise: &Tensor,
        gain: f64,
    ) -> PhaseLoss {
        let n = z.size()[0] / self.config.pl_batch_shrink;
        let (img, ws) = self.run_g(g, &z.narrow(0, 0, n), &c.narrow(0, 0, n));
        let (h, w) = (img.size()[2], img.size()[3]);
        let noise = pl_noise / ((h * w) as f64).sqrt();
        let out = (&img * noise).sum(Kind::Float);
        let grads = Tensor::run_backward(&[out], &[&ws], true, true).remove(0);
        let lengths = grads
            .square()
            .sum_dim_intlist(2, false, Kind::Float)
            .mean_dim(1, false, Kind::Float)
            .sqrt();
        let pl_mean = self.pl_mean.lerp(&mean(&lengths), self.config.pl_decay);
        self.pl_mean = pl_mean.detach();
        let penalty = (&lengths - &pl_mean).square();
        let reg = &penalty * self.config.pl_weight;
        let loss = mean(&(img.select(1, 0).select(1, 0).select(1, 0) * 0.0 + &reg)) * gain;
        let terms = vec![
            ("pl_penalty", mean(&penalty).double_value(&[])),
            ("pl_mean", self.pl_mean.double_value(&[])),
        ];
        PhaseLoss { loss, terms }
    }

    /// Dmain (+ Dr1 when `r1`): softplus(D(G(z))) for generated images (G not
    /// differentiated), softplus(−D(x)) for real ones, and γ/2·‖∇ₓD(x)‖² when `r1`.
    #[allow(clippy::too_many_arguments)]
    pub fn d_loss(
        &self,
        (g, d): (&Generator, &Discriminator),
        (real, real_c): (&Tensor, &Tensor),
        (z, c): (&Tensor, &Tensor),
        main: bool,
        r1: bool,
        gain: f64,
    ) -> PhaseLoss {
        let mut terms = Vec::new();
        // Summed out of place: each part is still needed by the backward pass.
        let mut parts = Vec::with_capacity(3);
        if main {
            let (img, _) = tch::no_grad(|| self.run_g(g, z, c));
            let gen = d.forward(&img, c).softplus();
            parts.push(mean(&gen) * gain);
            terms.push(("loss_D_fake", mean(&gen).double_value(&[])));
        }
        let real = real.detach().set_requires_grad(r1);
        let logits = d.forward(&real, real_c);
        let mut per_sample = vec![&logits * 0.0];
        if main {
            let loss_real = (-&logits).softplus();
            terms.push(("loss_D_real", mean(&loss_real).double_value(&[])));
            per_sample.push(loss_real);
        }
        if r1 {
            let grads =
                Tensor::run_backward(&[logits.sum(Kind::Float)], &[&real], true, true).remove(0);
            let penalty = grads
                .square()
                .sum_dim_intlist(&[1i64, 2, 3][..], false, Kind::Float);
            terms.push(("r1_penalty", mean(&penalty).double_value(&[])));
            per_sample.push((&penalty * (self.config.r1_gamma / 2.0)).unsqueeze(1));
        }
        PhaseLoss {
            loss: {
                let per_sample = per_sample
                    .into_iter()
                    .reduce(|a, b| a + b)
                    .expect("the `· 0` term");
                parts.push(mean(&per_sample) * gain);
                parts
                    .into_iter()
                    .reduce(|a, b| a + b)
                    .expect("one part at least")
            },
            terms,
        }
    }
}
