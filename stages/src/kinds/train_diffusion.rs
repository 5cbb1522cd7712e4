//! `histodiffusion/train-diffusion`: the latent UNet ε_θ (Eq. 3, SPEC §4.2) on
//! z0 = s·E(x).sample() with the AE frozen; t ~ U{0..T−1}, ε-prediction with L2 (paper) or
//! L1 (official), AdamW (wd 0.01) with LDM's linear warm-up, EMA with LitEma's warm-up.
//! s = 1/std(z) over the first `scale_images` images in data order (§2.6). Output `unet`:
//! the UNet artifact (crate::artifact::unet: weights, EMA copy, scale factor).

use super::declare::kind;
use super::invalid;
use super::params::{choice, default, range};
use super::train_common::{encode_latents, Optimized, ScheduleParams, TrainingParams};
use crate::artifact::{autoencoder, unet};
use crate::diffusion::{BetaSchedule, EpsLoss, NoiseSchedule};
use crate::models::autoencoder::AutoencoderKL;
use crate::models::unet::UNetModel;
use crate::train::determinism::seed_torch_for_step;
use crate::train::driver::require_batch;
use crate::train::ema::Ema;
use crate::train::images::{Batch, TrainingImages};
use crate::train::lr::LrSchedule;
use crate::train::memory_format::prepare_var_store;
use crate::train::named::{trainable, Restore};
use crate::train::optim::{Adam, AdamConfig};
use crate::train::{train, DataOrder, StepReport, Trainable};
use histodiff_engine::stage::{StageContext, StageError};
use tch::{Device, Kind, Tensor};

choice!(EpsLoss { "l2" => L2, "l1" => L1 });

kind! {
    /// latent diffusion UNet, ε-prediction, T = 1000, EMA (Eq. 3)
    TrainDiffusion("histodiffusion/train-diffusion", version: 1, resumable) -> [unet] {
        /// preset: UNet and AE size: paper (SPEC §3.1) or tiny
        /// batch_size: latents per step (paper 4)
        /// lr: AdamW learning rate (wd 0.01)
        ..training: TrainingParams = TrainingParams::specs(4, 5e-5),
        /// ε loss: l2 (paper Eq. 3) or l1 (official config)
        loss: EpsLoss = default(EpsLoss::L2),
        /// linear LR warm-up steps (LDM 10k)
        warm_up_steps: u64 = range(0..).default(10_000),
        /// EMA decay (with LitEma's (1+n)/(10+n) warm-up)
        ema_decay: f64 = range(0.0..=1.0).default(0.9999),
        /// images whose latents set s = 1/std(z)
        scale_images: usize = range(1..).default(1024),
        ..run: ScheduleParams = ScheduleParams::specs(10, true),
    }
    inputs {
        /// image set (labels ignored)
        images: One,
        /// AE weights from train-autoencoder (frozen)
        autoencoder: One,
    }
}

fn run(ctx: &mut StageContext, p: Params) -> Result<(), StageError> {
    let mut start = p.training.start(ctx, &p.run, None)?;
    let dev = start.device;
    let ae_path = &ctx.input("autoencoder")?.path;
    let (_ae_vs, ae) = autoencoder::load(ae_path, p.training.preset, dev)?;
    let (vs, unet) = unet::build(p.training.preset, dev)?;
    // channels_last on CUDA, before the EMA and the optimizer copy the layout.
    prepare_var_store(&vs);
    let ema = Ema::new(&vs, p.ema_decay, true);
    let lr = p.training.lr;
    let opt = Adam::from_params(trainable(&vs), AdamConfig::adamw(lr, 0.01));
    let scale_factor = scale_factor(&ae, &start.images, p.scale_images, p.run.seed, dev)?;
    ctx.metric("scale_factor", None, scale_factor);
    let model = Optimized {
        vs,
        opt,
        mp: start.mp,
    };
    let mut state = DmState {
        model,
        unet,
        ae,
        ema,
        noise: NoiseSchedule::new(BetaSchedule::histodiffaug()).map_err(invalid)?,
        loss: p.loss,
        warm_up: LrSchedule::LambdaLinear {
            warm_up_steps: p.warm_up_steps,
            f_start: 1e-6,
            f_min: 1.0,
            f_max: 1.0,
            cycle_length: 1e13,
        },
        lr,
        scale_factor,
        device: dev,
    };
    train(ctx, &start.schedule, &mut state, Some(&mut start.images))?;
    unet::write(
        &state.model.vs,
        &state.ema,
        state.scale_factor,
        &ctx.output_path("unet"),
    )
}

/// s = 1/std of E(x).sample() over the first `count` images of the seed's data order.
fn scale_factor(
    ae: &AutoencoderKL,
    images: &TrainingImages,
    count: usize,
    seed: u64,
    dev: Device,
) -> Result<f64, StageError> {
    let _guard = tch::no_grad_guard();
    seed_torch_for_step(seed, u64::MAX);
    let order = DataOrder::new(images.len(), images.len(), seed).batch(0);
    let mut latents = Vec::new();
    for chunk in order[..count.min(order.len())].chunks(16) {
        let z = ae
            .encode(&images.read(chunk)?.unit_range(dev), false)
            .map_err(invalid)?
            .sample();
        latents.push(z.flatten(0, -1));
    }
    let std = Tensor::cat(&latents, 0).std(true).double_value(&[]);
    if !(std.is_finite() && std > 0.0) {
        return Err(StageError::Invalid(format!(
            "latent std is {std}: cannot set the scale factor"
        )));
    }
    Ok(1.0 / std)
}

struct DmState {
    /// The UNet's weights, AdamW and precision.
    model: Optimized,
    unet: UNetModel,
    ae: AutoencoderKL,
    ema: Ema,
    noise: NoiseSchedule,
    loss: EpsLoss,
    warm_up: LrSchedule,
    /// Base learning rate (the warm-up scales it per step).
    lr: f64,
    scale_factor: f64,
    device: Device,
}

impl Trainable for DmState {
    fn step(&mut self, step: u64, batch: Option<&Batch>) -> Result<StepReport, StageError> {
        let x = require_batch(batch)?.unit_range(self.device);
        let z0 = encode_latents(&self.ae, &x, &self.model.mp, self.scale_factor)?;
        let b = z0.size()[0];
        let t = Tensor::randint(
            self.noise.num_timesteps() as i64,
            [b],
            (Kind::Int64, self.device),
        );
        let eps = z0.randn_like();
        let z_t = self.noise.q_sample(&z0, &t, &eps).map_err(invalid)?;
        self.model.opt.zero_grad();
        let (unet, eps_loss) = (&self.unet, self.loss);
        let loss = self
            .model
            .mp
            .forward(|| eps_loss.batch_mean(&unet.forward_t(&z_t, &t, true), &eps))?;
        let lr = self.warm_up.lr_at(self.lr, step);
        self.model.opt.set_lr(lr);
        self.model.backward_step(&loss);
        self.ema.update(&self.model.vs);
        Ok(StepReport {
            loss: loss.double_value(&[]),
            metrics: vec![("lr", lr)],
        })
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = self.model.state("unet.");
        out.extend(self.ema.state_tensors("ema."));
        out
    }

    fn restore(&mut self, state: Vec<(String, Tensor)>) -> Result<(), StageError> {
        let r = Restore::new(state);
        r.part(|t| self.ema.load_state_tensors("ema.", t))?;
        self.model.restore(&r, "unet.", "unet")
    }
}
