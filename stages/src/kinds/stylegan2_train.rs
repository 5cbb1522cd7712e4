//! `stylegan2/train`: the class-conditional StyleGAN2 of the paper's comparison rows
//! (Table 1; supp. Table 2: batch 64, 100 epochs, Adam, lr 2e-4), trained as the official
//! StyleGAN2-ADA loop trains it (training/training_loop.py): per step the phases Gmain,
//! Greg (every 4), Dmain, Dreg (every 16), each with its own fresh z and labels drawn from
//! the training labels; Adam (β 0, 0.99) with lr and βs scaled by the lazy interval
//! c = I/(I + 1); the reg phases' loss times I; then G_ema ← lerp(G, G_ema, β) with
//! β = 0.5^(batch / (ema_kimg · 1000)). ADA is not ported. Output `generator`: the G_ema
//! weights under `G_ema.<official name>` with the architecture in the `histodiff.stylegan2`
//! metadata (docs/weights.md), as `stylegan2/sample` and the converter read it.

use super::schema::{batch_size_param, float, int, invalid, lr_param, param, preset_param, slot};
use super::train_common::{schedule_params, typed_params, ScheduleParams};
use crate::losses::stylegan2::{LossConfig, Stylegan2Loss};
use crate::models::stylegan2::{Discriminator, Generator, NoiseMode, Stylegan2Config};
use crate::train::driver::require_batch;
use crate::train::images::{Batch, TrainingImages};
use crate::train::named::{restore_into, take_prefix, trainable, vars_with_prefix};
use crate::train::optim::{Adam, AdamConfig};
use crate::train::{train, StepReport, Trainable};
use histodiff_engine::registry::KindSpec;
use histodiff_engine::stage::{Stage, StageContext, StageError};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

pub struct Stylegan2Train;

/// Lazy regularisation intervals of the official loop (`G_reg_interval`, `D_reg_interval`).
pub const G_REG_INTERVAL: u64 = 4;
pub const D_REG_INTERVAL: u64 = 16;
/// Metadata key of the architecture in a generator artifact.
pub const CONFIG_KEY: &str = "histodiff.stylegan2";

/// The kind's parameters, typed.
#[derive(Debug, Clone, Deserialize)]
pub struct Params {
    pub preset: String,
    pub batch_size: i64,
    pub lr: f64,
    pub r1_gamma: f64,
    pub pl_weight: f64,
    pub style_mixing_prob: f64,
    pub mbstd_group_size: i64,
    pub ema_kimg: f64,
    pub ema_rampup: f64,
    #[serde(flatten)]
    pub schedule: ScheduleParams,
}

impl Stage for Stylegan2Train {
    fn spec(&self) -> KindSpec {
        let mut params = vec![
            preset_param("paper: the official paper256 network (z = w = 512, 8 mapping layers, channel_base 16384); tiny: a CPU-sized one"),
            batch_size_param(64, "images per step (paper 64)"),
            lr_param(2e-4, "Adam learning rate before the lazy-regularisation scaling (paper 2e-4)"),
            param("r1_gamma", float(Some(0.0), None), Some(1.0.into()), "R1 weight γ (official paper256: 1)"),
            param("pl_weight", float(Some(0.0), None), Some(2.0.into()), "path-length regularisation weight (0: off)"),
            param("style_mixing_prob", float(Some(0.0), Some(1.0)), Some(0.9.into()), "probability of style mixing per batch"),
            param("mbstd_group_size", int(Some(1), None), Some(8.into()), "minibatch-stddev group size (official paper256: 8)"),
            param("ema_kimg", float(Some(0.0), None), Some(20.0.into()), "half-life of G_ema in thousands of images (official paper256: 20)"),
            param("ema_rampup", float(Some(0.0), None), Some(0.0.into()), "EMA ramp-up: half-life ≤ images so far × this (0: off; official auto: 0.05)"),
        ];
        params.extend(
            schedule_params(100)
                .into_iter()
                .filter(|p| p.name != "precision"),
        );
        KindSpec {
            name: "stylegan2/train".into(),
            version: 1,
            params,
            inputs: vec![slot("images", true, false, "labeled image set (e.g. the few-shot set S′); power-of-two size ≥ 8")],
            outputs: vec!["generator".into()],
            resumable: true,
            doc: "class-conditional StyleGAN2 (official loss, lazy R1/path-length, G_ema), the paper's comparison system".into(),
        }
    }

    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let p: Params = typed_params(ctx)?;
        let dev = crate::device::parse(ctx.device())?;
        let batch = usize::try_from(p.batch_size).map_err(invalid)?;
        let set = ctx.input("images")?.path.clone();
        let mut images = TrainingImages::open(&set, batch, p.schedule.seed)?;
        images.require_labels("stylegan2/train")?;
        let config = architecture(
            &p.preset,
            images.image_size() as i64,
            images.classes().len() as i64,
        )?;
        check_batch(&p, images.len())?;
        let schedule = p.schedule.schedule(images.steps_per_epoch());
        let mut state = GanState::new(&p, &config, class_weights(&set)?, dev)?;
        train(ctx, &schedule, &mut state, Some(&mut images))?;
        write_generator(&state.g_ema_vs, &config, &ctx.output_path("generator"))
    }
}

/// The preset's architecture at the data's size and class count.
fn architecture(
    preset: &str,
    resolution: i64,
    classes: i64,
) -> Result<Stylegan2Config, StageError> {
    let config = match preset {
        "paper" => Stylegan2Config::paper(resolution, classes),
        "tiny" => Stylegan2Config::tiny(resolution, classes),
        other => return Err(StageError::Invalid(format!("unknown preset `{other}`"))),
    };
    config.validate().map_err(StageError::Invalid)?;
    Ok(config)
}

/// The minibatch-std groups must tile the batch and its path-length half.
fn check_batch(p: &Params, images: usize) -> Result<(), StageError> {
    let group = p.mbstd_group_size.min(p.batch_size);
    if p.batch_size % group != 0 {
        return Err(StageError::Invalid(format!(
            "batch_size {} is not a multiple of mbstd_group_size {}",
            p.batch_size, p.mbstd_group_size
        )));
    }
    if p.batch_size < 2 || images < p.batch_size as usize {
        return Err(StageError::Invalid(format!(
            "batch_size {} needs at least 2 and at most the {images} training images",
            p.batch_size
        )));
    }
    Ok(())
}

/// Class frequencies of the training set: the official loop draws the labels of
/// generated images as the labels of random training images.
fn class_weights(set: &std::path::Path) -> Result<Tensor, StageError> {
    let set = crate::artifact::ImageSet::open(set)?;
    let counts: Vec<f64> = set
        .manifest()
        .class_counts()
        .into_iter()
        .map(|c| c as f64)
        .collect();
    Ok(Tensor::from_slice(&counts))
}

/// Writes the generator artifact: G_ema under `G_ema.*`, architecture in the metadata.
pub fn write_generator(
    vs: &VarStore,
    config: &Stylegan2Config,
    path: &std::path::Path,
) -> Result<(), StageError> {
    let json = serde_json::to_string(config).map_err(StageError::other)?;
    let tensors = vars_with_prefix(vs, "G_ema.");
    crate::weights::save_tensors_with_metadata(
        &tensors,
        HashMap::from([(CONFIG_KEY.to_string(), json)]),
        path,
    )
    .map_err(StageError::Invalid)
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
            opt_g: lazy_adam(trainable(&g_vs), p.lr, G_REG_INTERVAL),
            opt_d: lazy_adam(trainable(&d_vs), p.lr, D_REG_INTERVAL),
            g_vs,
            g,
            g_ema_vs,
            d_vs,
            d,
            loss: Stylegan2Loss::new(loss_config, NoiseMode::Random, device),
            class_weights,
            batch_size: p.batch_size,
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
        let (z, c) = self.latents();
        let r1 = step.is_multiple_of(D_REG_INTERVAL) && self.loss.config.r1_gamma > 0.0;
        let d_main = self.loss.d_loss(
            (&self.g, &self.d),
            (real, &real_c),
            (&z, &c),
            true,
            false,
            1.0,
        );
        let _ = optimizer_step(&mut self.opt_d, &d_main.loss);
        metrics.extend(d_main.terms);
        if r1 {
            let (z, c) = self.latents();
            let reg = self.loss.d_loss(
                (&self.g, &self.d),
                (real, &real_c),
                (&z, &c),
                false,
                true,
                D_REG_INTERVAL as f64,
            );
            let _ = optimizer_step(&mut self.opt_d, &reg.loss);
            metrics.extend(reg.terms);
        }
        self.update_ema(step);
        StepReport {
            loss: g_main.terms[0].1,
            metrics,
        }
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

/// One-hot float labels [N, classes].
pub fn one_hot(labels: &Tensor, classes: i64) -> Tensor {
    labels.one_hot(classes).to_kind(Kind::Float)
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
        let bad = |e: String| StageError::Invalid(format!("checkpoint: {e}"));
        restore_into(&self.g_vs, &take_prefix(&state, "G."), |_| true, "G").map_err(bad)?;
        restore_into(
            &self.g_ema_vs,
            &take_prefix(&state, "G_ema."),
            |_| true,
            "G_ema",
        )
        .map_err(bad)?;
        restore_into(&self.d_vs, &take_prefix(&state, "D."), |_| true, "D").map_err(bad)?;
        let by_name: BTreeMap<String, Tensor> = state.into_iter().collect();
        self.opt_g
            .load_state_tensors("opt_g.", &by_name)
            .map_err(|e| bad(e.to_string()))?;
        self.opt_d
            .load_state_tensors("opt_d.", &by_name)
            .map_err(|e| bad(e.to_string()))?;
        let pl_mean = by_name
            .get("loss.pl_mean")
            .ok_or_else(|| bad("lacks `loss.pl_mean`".into()))?;
        self.loss.pl_mean = pl_mean.to_kind(Kind::Float).to_device(self.device);
        Ok(())
    }
}
