//! `histodiffusion/train-latent-classifier`: the time-dependent latent classifier ϕ(z_t, t)
//! (Eq. 6, SPEC §5): z0 = s·E(x).sample() with the frozen AE and the diffusion model's
//! scale factor, t ~ U{0..T−1} and z_t = q_sample(z0, t, ε) (paper), or t = 0 on clean
//! latents (`official_t0`, the official code); CE, AdamW (wd 0.05). Output `classifier`:
//! the latent classifier artifact (crate::artifact::unet_classifier).

use super::declare::kind;
use super::invalid;
use super::params::{default, range};
use super::train_common::{encode_latents, ClassifierFit, ScheduleParams, TrainingParams};
use crate::artifact::{autoencoder, unet, unet_classifier};
use crate::diffusion::{BetaSchedule, NoiseSchedule};
use crate::models::autoencoder::AutoencoderKL;
use crate::train::images::Batch;
use crate::train::mixed::MixedPrecision;
use crate::train::optim::AdamConfig;
use crate::train::train;
use histodiff_engine::stage::{StageContext, StageError};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

kind! {
    /// time-dependent latent classifier ϕ(z_t, t) for guidance (Eq. 6)
    TrainLatentClassifier("histodiffusion/train-latent-classifier", version: 1, resumable)
        -> [classifier]
    {
        /// preset: ϕ and AE size: paper (SPEC §5.2) or tiny
        /// batch_size: latents per step (paper 32)
        /// lr: AdamW learning rate
        ..training: TrainingParams = TrainingParams::specs(32, 5e-5),
        /// AdamW weight decay
        weight_decay: f64 = range(0.0..).default(0.05),
        /// train on clean latents with t = 0 (official code) instead of t ~ U{0..999}
        official_t0: bool = default(false),
        ..run: ScheduleParams = ScheduleParams::specs(100, true),
    }
    inputs {
        /// labeled image set (S′)
        images: One,
        /// AE weights (the encoder makes the latents)
        autoencoder: One,
        /// train-diffusion output (for its scale factor)
        unet: One,
    }
}

/// What ϕ is trained on: the frozen AE's scaled latents, noised to a random t.
struct Latents {
    ae: AutoencoderKL,
    noise: NoiseSchedule,
    official_t0: bool,
    scale_factor: f64,
    device: Device,
}

impl Latents {
    /// (z_t, t) of a batch: t ~ U{0..T−1} and z_t = q_sample(z0, t, ε), or z0 at t = 0.
    fn noised(&self, batch: &Batch, mp: &MixedPrecision) -> Result<(Tensor, Tensor), StageError> {
        let x = batch.unit_range(self.device);
        let z0 = encode_latents(&self.ae, &x, mp, self.scale_factor)?;
        let b = z0.size()[0];
        if self.official_t0 {
            return Ok((z0, Tensor::zeros([b], (Kind::Int64, self.device))));
        }
        let steps = self.noise.num_timesteps() as i64;
        let t = Tensor::randint(steps, [b], (Kind::Int64, self.device));
        let z_t = self
            .noise
            .q_sample(&z0, &t, &z0.randn_like())
            .map_err(invalid)?;
        Ok((z_t, t))
    }
}

fn run(ctx: &mut StageContext, p: Params) -> Result<(), StageError> {
    let mut start = p
        .training
        .start(ctx, &p.run, Some("train-latent-classifier"))?;
    let preset = p.training.preset;
    let (_ae_vs, ae) = autoencoder::load(&ctx.input("autoencoder")?.path, preset, start.device)?;
    let latent_size = start.images.image_size() as i64 / ae.config().downsampling_factor();
    let vs = VarStore::new(start.device);
    let classes = start.images.classes().len() as i64;
    let phi = unet_classifier::build(&vs, &preset.unet_classifier(classes, latent_size)?)?;
    let latents = Latents {
        ae,
        noise: NoiseSchedule::new(BetaSchedule::histodiffaug()).map_err(invalid)?,
        official_t0: p.official_t0,
        scale_factor: unet::read_scale_factor(&ctx.input("unet")?.path)?,
        device: start.device,
    };
    let logits = move |batch: &Batch, mp: &MixedPrecision| {
        let (z_t, t) = latents.noised(batch, mp)?;
        mp.forward(|| phi.forward_t(&z_t, &t, true))
    };
    let config = AdamConfig::adamw(p.training.lr, p.weight_decay);
    let mut fit = ClassifierFit::new(vs, config, start.mp, logits);
    train(ctx, &start.schedule, &mut fit, Some(&mut start.images))?;
    unet_classifier::save(&fit.model.vs, &ctx.output_path("classifier"))
}
