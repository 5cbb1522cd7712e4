//! `stylegan2/train`: the class-conditional StyleGAN2 of the paper's comparison rows
//! (Table 1; supp. Table 2: batch 64, 100 epochs, Adam, lr 2e-4), trained as the official
//! StyleGAN2-ADA loop trains it (training/training_loop.py): per step the phases Gmain,
//! Greg (every 4), Dmain, Dreg (every 16), each with its own fresh z and labels drawn from
//! the training labels; Adam (β 0, 0.99) with lr and βs scaled by the lazy interval
//! c = I/(I + 1); the reg phases' loss times I; then G_ema ← lerp(G, G_ema, β) with
//! β = 0.5^(batch / (ema_kimg · 1000)). ADA is not ported. Output `generator`: the
//! generator artifact (crate::artifact::generator), which `stylegan2/sample` reads.

use super::declare::kind;
use super::invalid;
use super::params::range;
use super::train_common::{ScheduleParams, TrainingParams};
use crate::artifact::generator;
use crate::losses::stylegan2::{LossConfig, Stylegan2Loss};
use crate::models::stylegan2::{one_hot, Discriminator, Generator, NoiseMode, Stylegan2Config};
use crate::train::driver::require_batch;
use crate::train::images::Batch;
use crate::train::named::{trainable, vars_with_prefix, Restore};
use crate::train::optim::{Adam, AdamConfig};
use crate::train::{train, StepReport, Trainable};
use histodiff_engine::stage::{StageContext, StageError};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Lazy regularisation intervals of the official loop (`G_reg_interval`, `D_reg_interval`).
pub const G_REG_INTERVAL: u64 = 4;
pub const D_REG_INTERVAL: u64 = 16;

kind! {
    /// class-conditional StyleGAN2 (official loss, lazy R1/path-length, G_ema), the paper's
    /// comparison system
    Stylegan2Train("stylegan2/train", version: 1, resumable) -> [generator] {
        /// preset: paper: the official paper256 network (z = w = 512, 8 mapping layers,
        /// channel_base 16384); tiny: a CPU-sized one
        /// batch_size: images per step (paper 64)
        /// lr: Adam learning rate before the lazy-regularisation scaling (paper 2e-4)
        ..training: TrainingParams = TrainingParams::specs(64, 2e-4),
        /// R1 weight γ (official paper256: 1)
        r1_gamma: f64 = range(0.0..).default(1.0),
        /// path-length regularisation weight (0: off)
        pl_weight: f64 = range(0.0..).default(2.0),
        /// probability of style mixing per batch
        style_mixing_prob: f64 = range(0.0..=1.0).default(0.9),
        /// minibatch-stddev group size (official paper256: 8)
        mbstd_group_size: i64 = range(1..).default(8),
        /// half-life of G_ema in thousands of images (official paper256: 20)
        ema_kimg: f64 = range(0.0..).default(20.0),
        /// EMA ramp-up: half-life ≤ images so far × this (0: off; official auto: 0.05)
        ema_rampup: f64 = range(0.0..).default(0.0),
        ..run: ScheduleParams = ScheduleParams::specs(100, false),
    }
    inputs {
        /// labeled image set (e.g. the few-shot set S′); power-of-two size ≥ 8
        images: One,
    }
}

fn run(ctx: &mut StageContext, p: Params) -> Result<(), StageError> {
    let mut start = p.training.start(ctx, &p.run, Some("stylegan2/train"))?;
    let images = &start.images;
    let config = p
        .training
        .preset
        .stylegan2(images.image_size() as i64, images.classes().len() as i64)?;
    check_batch(&p, images.len())?;
    let set = crate::artifact::ImageSet::open(&ctx.input("images")?.path)?;
    let mut state = GanState::new(&p, &config, class_weights(&set), start.device)?;
    train(ctx, &start.schedule, &mut state, Some(&mut start.images))?;
    generator::write(&state.g_ema_vs, &config, &ctx.output_path("generator"))
}

/// The minibatch-std groups must tile the batch and its path-length half.
fn check_batch(p: &Params, images: usize) -> Result<(), StageError> {
    let batch = p.training.batch_size;
    let group = (p.mbstd_group_size as usize).min(batch);
    if !batch.is_multiple_of(group) {
        return Err(StageError::Invalid(format!(
            "batch_size {batch} is not a multiple of mbstd_group_size {}",
            p.mbstd_group_size
        )));
    }
    if batch < 2 || images < batch {
        return Err(StageError::Invalid(format!(
            "batch_size {batch} needs at least 2 and at most the {images} training images"
        )));
    }
    Ok(())
}

/// Class frequencies of the training set: the official loop draws the labels of
/// generated images as the labels of random training images.
fn class_weights(set: &crate::artifact::ImageSet) -> Tensor {
    let counts: Vec<f64> = set
        .manifest()
        .class_counts()
        .into_iter()
        .map(|c| c as f64)
        .collect();
    Tensor::from_slice(&counts)
}

/// Adam (β 0, 0.99, ε 1e-8) with the lazy-regularisation scaling of the official loop:
/// lr·c and βs^c with c = I/(I + 1).
pub fn lazy_adam(params: Vec<(String, Tensor)>, lr: f64, interval: u64) -> Adam {
    let c = interval as f64 / (interval as f64 + 1.0);
    Adam::from_params(
        params,
        AdamConfig {
            lr: lr * c,
            beta1: 0.0f64.powf(c),
            beta2: 0.99f64.powf(c),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        },
    )
}

/// The models, optimizers and loss state of a run.
pub struct GanState {
    g_vs: VarStore,
    g: Generator,
    g_ema_vs: VarStore,
    d_vs: VarStore,
    d: Discriminator,
    opt_g: Adam,
    opt_d: Adam,
    loss: Stylegan2Loss,
    class_weights: Tensor,
    batch_size: i64,
    ema_kimg: f64,
    ema_rampup: f64,
    device: Device,
}

impl GanState {
    /// Fresh networks (seed libtorch first) for `config`; `class_weights` are the training
    /// set's class frequencies, which the generated labels follow.
    pub fn new(
        p: &Params,
        config: &Stylegan2Config,
        class_weights: Tensor,
        device: Device,
    ) -> Result<Self, StageError> {
        let g_vs = VarStore::new(device);
        let g = Generator::new(&g_vs.root(), config).map_err(StageError::Invalid)?;
        let mut g_ema_vs = VarStore::new(device);
        Generator::new(&g_ema_vs.root(), config).map_err(StageError::Invalid)?;
        g_ema_vs.copy(&g_vs).map_err(invalid)?;
        g_ema_vs.freeze();
        let d_vs = VarStore::new(device);
        let d = Discriminator::new(&d_vs.root(), config.discriminator(Some(p.mbstd_group_size)));
        let loss_config = LossConfig {
            style_mixing_prob: p.style_mixing_prob,
            r1_gamma: p.r1_gamma,
            pl_weight: p.pl_weight,
            ..LossConfig::default()
        };
        Ok(Self {
            opt_g: lazy_adam(trainable(&g_vs), p.training.lr, G_REG_INTERVAL),
            opt_d: lazy_adam(trainable(&d_vs), p.training.lr, D_REG_INTERVAL),
            g_vs,
            g,
            g_ema_vs,
            d_vs,
            d,
            loss: Stylegan2Loss::new(loss_config, NoiseMode::Random, device),
            class_weights,
            batch_size: p.training.batch_size as i64,
            ema_kimg: p.ema_kimg,
            ema_rampup: p.ema_rampup,
            device,
        })
    }

    /// Fresh z and one-hot labels drawn from the training labels, for one phase.
    fn latents(&self) -> (Tensor, Tensor) {
        let z = Tensor::randn(
            [self.batch_size, self.g.config().z_dim],
            (Kind::Float, self.device),
        );
        let labels = self
            .class_weights
            .multinomial(self.batch_size, true)
            .to_device(self.device);
        (z, one_hot(&labels, self.g.config().c_dim))
    }

    /// One training iteration on real images in [−1, 1] and their labels: Gmain, Greg
    /// (every 4), Dmain, Dreg (every 16), then the G_ema update.
    pub fn step_on(&mut self, step: u64, real: &Tensor, labels: &Tensor) -> StepReport {
        let real_c = one_hot(labels, self.g.config().c_dim);
        let mut metrics = Vec::new();
        let (z, c) = self.latents();
        let g_main = self.loss.g_main(&self.g, &self.d, &z, &c);
        let _ = optimizer_step(&mut self.opt_g, &g_main.loss);
        if step.is_multiple_of(G_REG_INTERVAL) && self.loss.config.pl_weight > 0.0 {
            let (z, c) = self.latents();
            let n = self.batch_size / self.loss.config.pl_batch_shrink;
            let r = self.g.config().img_resolution;
            let pl_noise = Tensor::randn(
                [n, self.g.config().img_channels, r, r],
                (Kind::Float, self.device),
            );
            let reg = self
                .loss
                .g_path_length(&self.g, &z, &c, &pl_noise, G_REG_INTERVAL as f64);
            let _ = optimizer_step(&mut self.opt_g, &reg.loss);
            metrics.extend(reg.terms);
        }
        let r1 = step.is_multiple_of(D_REG_INTERVAL) && self.loss.config.r1_gamma > 0.0;
        metrics.extend(self.d_phase((real, &real_c), false));
        if r1 {
            metrics.extend(self.d_phase((real, &real_c), true));
        }
        self.update_ema(step);
        StepReport {
            loss: g_main.terms[0].1,
            metrics,
        }
    }

    /// One discriminator phase on fresh latents: Dmain, or Dreg (R1, its loss times the
    /// lazy interval); returns its loss terms.
    fn d_phase(&mut self, real: (&Tensor, &Tensor), reg: bool) -> Vec<(&'static str, f64)> {
        let (z, c) = self.latents();
        let gain = if reg { D_REG_INTERVAL as f64 } else { 1.0 };
        let phase = self
            .loss
            .d_loss((&self.g, &self.d), real, (&z, &c), !reg, reg, gain);
        let _ = optimizer_step(&mut self.opt_d, &phase.loss);
        phase.terms
    }

    /// G_ema ← lerp(G, G_ema, β) for parameters, copies for buffers.
    fn update_ema(&self, step: u64) {
        let mut ema_nimg = self.ema_kimg * 1000.0;
        if self.ema_rampup > 0.0 {
            ema_nimg = ema_nimg.min((step * self.batch_size as u64) as f64 * self.ema_rampup);
        }
        let beta = 0.5f64.powf(self.batch_size as f64 / ema_nimg.max(1e-8));
        update_ema(&self.g_vs, &self.g_ema_vs, beta);
    }
}

/// The official G_ema update: `p_ema.copy_(p.lerp(p_ema, beta))`, buffers copied.
pub fn update_ema(g: &VarStore, g_ema: &VarStore, beta: f64) {
    let _guard = tch::no_grad_guard();
    let ema = g_ema.variables();
    for (name, p) in g.variables() {
        let mut target = ema[&name].shallow_clone();
        if p.requires_grad() {
            target.copy_(&p.lerp(&target, beta));
        } else {
            target.copy_(&p);
        }
    }
}

/// Gradients of `loss` for the optimizer's parameters, NaN → 0 and ±inf → ±1e5 as the
/// official loop cleans them, then one Adam step; returns the gradients, in
/// [`Adam::params`] order.
pub fn optimizer_step(opt: &mut Adam, loss: &Tensor) -> Vec<Tensor> {
    let params: Vec<Tensor> = opt
        .params()
        .iter()
        .map(|(_, p)| p.shallow_clone())
        .collect();
    let grads = Tensor::run_backward(&[loss], &params, false, false);
    let grads: Vec<Tensor> = grads
        .into_iter()
        .map(|g| {
            if g.defined() {
                g.nan_to_num(0.0, 1e5, -1e5)
            } else {
                g
            }
        })
        .collect();
    opt.step_with(&grads);
    grads
}

impl Trainable for GanState {
    fn step(&mut self, step: u64, batch: Option<&Batch>) -> Result<StepReport, StageError> {
        let batch = require_batch(batch)?;
        let real = batch.unit_range(self.device);
        let labels = batch.labels(self.device)?;
        Ok(self.step_on(step, &real, &labels))
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vars_with_prefix(&self.g_vs, "G.");
        out.extend(vars_with_prefix(&self.g_ema_vs, "G_ema."));
        out.extend(vars_with_prefix(&self.d_vs, "D."));
        out.extend(self.opt_g.state_tensors("opt_g."));
        out.extend(self.opt_d.state_tensors("opt_d."));
        out.push(("loss.pl_mean".into(), self.loss.pl_mean.shallow_clone()));
        out
    }

    fn restore(&mut self, state: Vec<(String, Tensor)>) -> Result<(), StageError> {
        let r = Restore::new(state);
        r.vars(&self.g_vs, "G.", "G")?;
        r.vars(&self.g_ema_vs, "G_ema.", "G_ema")?;
        r.vars(&self.d_vs, "D.", "D")?;
        r.part(|t| self.opt_g.load_state_tensors("opt_g.", t))?;
        r.part(|t| self.opt_d.load_state_tensors("opt_d.", t))?;
        let pl_mean = r.tensor("loss.pl_mean")?;
        self.loss.pl_mean = pl_mean.to_kind(Kind::Float).to_device(self.device);
        Ok(())
    }
}
