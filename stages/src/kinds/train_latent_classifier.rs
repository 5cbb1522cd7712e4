//! `histodiffusion/train-latent-classifier`: the time-dependent latent classifier ϕ(z_t, t)
//! (Eq. 6, SPEC §5): z0 = s·E(x).sample() with the frozen AE and the diffusion model's
//! scale factor, t ~ U{0..T−1} and z_t = q_sample(z0, t, ε) (paper), or t = 0 on clean
//! latents (`official_t0`, the official code); CE, AdamW (wd 0.05). Output `classifier`:
//! safetensors of ϕ under the guided-diffusion names.

use super::schema::{batch_size_param, float, invalid, lr_param, param, preset_param, slot};
use super::train_common::{
    classifier_state, cross_entropy_step, mixed_precision, restore_classifier, schedule,
    schedule_params,
};
use super::train_diffusion::load_autoencoder;
use crate::diffusion::{BetaSchedule, NoiseSchedule};
use crate::models::autoencoder::AutoencoderKL;
use crate::models::unet::presets::{latent_classifier, tiny_classifier};
use crate::models::unet::EncoderUNetModel;
use crate::train::driver::require_batch;
use crate::train::images::{Batch, TrainingImages};
use crate::train::mixed::MixedPrecision;
use crate::train::named::trainable;
use crate::train::optim::{Adam, AdamConfig};
use crate::train::{train, StepReport, Trainable};
use histodiff_engine::registry::{KindSpec, ParamType};
use histodiff_engine::stage::{Stage, StageContext, StageError};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

pub struct TrainLatentClassifier;

/// ϕ for `preset` on `latent_size` latents with `classes` outputs.
pub fn build_latent_classifier(
    vs: &VarStore,
    preset: &str,
    classes: i64,
    latent_size: i64,
) -> Result<EncoderUNetModel, StageError> {
    let mut config = if preset == "tiny" {
        tiny_classifier(classes)
    } else {
        latent_classifier(classes)
    };
    config.image_size = latent_size;
    EncoderUNetModel::new(&vs.root(), &config).map_err(invalid)
}

/// The 0-d `scale_factor` of a train-diffusion output.
pub fn read_scale_factor(path: &std::path::Path) -> Result<f64, StageError> {
    let tensors = Tensor::read_safetensors(path)
        .map_err(|e| StageError::Invalid(format!("{}: {e}", path.display())))?;
    tensors
        .iter()
        .find(|(k, _)| k == "scale_factor")
        .map(|(_, t)| t.double_value(&[]))
        .ok_or_else(|| {
            StageError::Invalid(format!(
                "{}: no `scale_factor` (not a train-diffusion output?)",
                path.display()
            ))
        })
}

impl Stage for TrainLatentClassifier {
    fn spec(&self) -> KindSpec {
        let mut params = vec![
            preset_param("ϕ and AE size: paper (SPEC §5.2) or tiny"),
            batch_size_param(32, "latents per step (paper 32)"),
            lr_param(5e-5, "AdamW learning rate"),
            param(
                "weight_decay",
                float(Some(0.0), None),
                Some(0.05.into()),
                "AdamW weight decay",
            ),
            param(
                "official_t0",
                ParamType::Bool,
                Some(false.into()),
                "train on clean latents with t = 0 (official code) instead of t ~ U{0..999}",
            ),
        ];
        params.extend(schedule_params(100));
        KindSpec {
            name: "histodiffusion/train-latent-classifier".into(),
            version: 1,
            params,
            inputs: vec![
                slot("images", true, false, "labeled image set (S′)"),
                slot(
                    "autoencoder",
                    true,
                    false,
                    "AE weights (the encoder makes the latents)",
                ),
                slot(
                    "unet",
                    true,
                    false,
                    "train-diffusion output (for its scale factor)",
                ),
            ],
            outputs: vec!["classifier".into()],
            resumable: true,
            doc: "time-dependent latent classifier ϕ(z_t, t) for guidance (Eq. 6)".into(),
        }
    }

    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let dev = crate::device::parse(ctx.device())?;
        let mut images = TrainingImages::open(
            &ctx.input("images")?.path,
            ctx.param_i64("batch_size")? as usize,
            ctx.param_i64("seed")? as u64,
        )?;
        images.require_labels("train-latent-classifier")?;
        let schedule = schedule(ctx, images.steps_per_epoch())?;
        let preset = ctx.param_str("preset")?.to_string();
        let (_ae_vs, ae) = load_autoencoder(dev, &preset, &ctx.input("autoencoder")?.path)?;
        let scale_factor = read_scale_factor(&ctx.input("unet")?.path)?;
        let latent_size = images.image_size() as i64 / ae.config().downsampling_factor();
        let vs = VarStore::new(dev);
        let phi =
            build_latent_classifier(&vs, &preset, images.classes().len() as i64, latent_size)?;
        let opt = Adam::from_params(
            trainable(&vs),
            AdamConfig::adamw(ctx.param_f64("lr")?, ctx.param_f64("weight_decay")?),
        );
        let mut state = LatentState {
            vs,
            phi,
            ae,
            opt,
            mp: mixed_precision(ctx, dev)?,
            noise: NoiseSchedule::new(BetaSchedule::histodiffaug()).map_err(invalid)?,
            official_t0: ctx.param_bool("official_t0")?,
            scale_factor,
            device: dev,
        };
        train(ctx, &schedule, &mut state, Some(&mut images))?;
        crate::weights::save(&state.vs, &ctx.output_path("classifier")).map_err(StageError::other)
    }
}

struct LatentState {
    vs: VarStore,
    phi: EncoderUNetModel,
    ae: AutoencoderKL,
    opt: Adam,
    mp: MixedPrecision,
    noise: NoiseSchedule,
    official_t0: bool,
    scale_factor: f64,
    device: Device,
}

impl Trainable for LatentState {
    fn step(&mut self, _step: u64, batch: Option<&Batch>) -> Result<StepReport, StageError> {
        let batch = require_batch(batch)?;
        let x = batch.unit_range(self.device);
        let y = batch.labels(self.device)?;
        // The frozen encoder runs under autocast too; the latents go on in f32.
        let z0 = self
            .mp
            .forward(|| tch::no_grad(|| self.ae.encode(&x, false)))?
            .map_err(invalid)?
            .sample()
            .to_kind(Kind::Float)
            * self.scale_factor;
        let b = z0.size()[0];
        let (z_t, t) = if self.official_t0 {
            (z0, Tensor::zeros([b], (Kind::Int64, self.device)))
        } else {
            let t = Tensor::randint(
                self.noise.num_timesteps() as i64,
                [b],
                (Kind::Int64, self.device),
            );
            (
                self.noise
                    .q_sample(&z0, &t, &z0.randn_like())
                    .map_err(invalid)?,
                t,
            )
        };
        self.opt.zero_grad();
        let logits = self.mp.forward(|| self.phi.forward_t(&z_t, &t, true))?;
        Ok(cross_entropy_step(&mut self.mp, &mut self.opt, &logits, &y))
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        classifier_state(&self.vs, &self.opt, &self.mp)
    }

    fn restore(&mut self, state: Vec<(String, Tensor)>) -> Result<(), StageError> {
        restore_classifier(&self.vs, &mut self.opt, &mut self.mp, &state)
    }
}
