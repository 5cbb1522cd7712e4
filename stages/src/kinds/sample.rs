//! `histodiffusion/sample`: classifier-guided DDIM per class (Eq. 7–8, SPEC §4.3–4.4) with
//! the EMA UNet, the latent classifier ϕ and the fine-tuned decoder D′:
//! x̃ = D′(z̃0 / s), clamped and mapped to uint8. Noise of batch b comes from a seeded
//! stream of (seed, b), so the pool does not depend on batching history.
//!
//! Sampling writes as it goes: each finished batch becomes an image-set shard in the stage
//! key's checkpoint directory (`batches/`), then a checkpoint records the count of
//! finished batches (the random state is a function of the seed and that count). An
//! interrupted run resumes after the last finished batch, and checkpoint I/O is one batch,
//! not every image made so far. At the end the shards are moved, not copied, into the
//! output `images`: an image set labeled with the conditioning classes of `images`.

use super::schema::{batch_size_param, float, int, invalid, one_of, param, preset_param, slot};
use super::train_diffusion::load_autoencoder;
use super::train_latent_classifier::{build_latent_classifier, read_scale_factor};
use crate::artifact::pool::PoolLayout;
use crate::artifact::ImageSet;
use crate::diffusion::{
    ddim_sample, log_prob_gradient, BetaSchedule, ClassifierGuidance, DdimSchedule, GuidanceMode,
    NoiseSchedule, SeededNoise,
};
use crate::models::autoencoder::AutoencoderKL;
use crate::models::unet::presets::{histodiffaug_unet, tiny_unet};
use crate::models::unet::{EncoderUNetModel, UNetModel};
use crate::train::data_order::mix;
use crate::train::images::Batch;
use crate::train::named::restore_into;
use crate::train::{train, Schedule, StepReport, Trainable};
use histodiff_engine::registry::{KindSpec, ParamType};
use histodiff_engine::stage::{Stage, StageContext, StageError};
use tch::nn::VarStore;
use tch::{Device, Tensor};

pub struct Sample;

impl Stage for Sample {
    fn spec(&self) -> KindSpec {
        KindSpec {
            name: "histodiffusion/sample".into(),
            version: 2,
            params: vec![
                preset_param("UNet, ϕ and AE size"),
                param(
                    "steps",
                    int(Some(1), Some(999)),
                    Some(200.into()),
                    "DDIM steps S",
                ),
                param("eta", float(Some(0.0), None), Some(1.0.into()), "DDIM η"),
                param(
                    "guidance_scale",
                    float(Some(0.0), None),
                    Some(1.0.into()),
                    "classifier guidance g",
                ),
                param(
                    "guidance_mode",
                    one_of(&["paper", "official"]),
                    Some("paper".into()),
                    "paper: condition_score with ᾱ_τ; official: ×10 and ⌊τ/20⌋ indexing",
                ),
                param(
                    "per_class",
                    int(Some(1), None),
                    Some(100.into()),
                    "images per class",
                ),
                batch_size_param(16, "images per sampling batch (a checkpoint after each)"),
                param(
                    "use_ema",
                    ParamType::Bool,
                    Some(true.into()),
                    "sample with the EMA UNet weights (as the official sampler)",
                ),
                param(
                    "seed",
                    int(Some(0), None),
                    Some(0.into()),
                    "seed of the noise streams",
                ),
            ],
            inputs: vec![
                slot(
                    "unet",
                    true,
                    false,
                    "train-diffusion output (weights, EMA, scale factor)",
                ),
                slot(
                    "classifier",
                    true,
                    false,
                    "latent classifier ϕ from train-latent-classifier",
                ),
                slot(
                    "autoencoder",
                    true,
                    false,
                    "AE with the fine-tuned decoder D′ (finetune-decoder)",
                ),
                slot(
                    "images",
                    true,
                    false,
                    "labeled set giving class names and image size (e.g. S′)",
                ),
            ],
            outputs: vec!["images".into()],
            resumable: true,
            doc: "classifier-guided DDIM per class, decoded by D′ (Eq. 7–8)".into(),
        }
    }

    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let dev = crate::device::parse(ctx.device())?;
        let reference = ImageSet::open(&ctx.input("images")?.path)?;
        let (classes, image_size) = (
            reference.manifest().classes.clone(),
            reference.manifest().image_size,
        );
        if classes.is_empty() {
            return Err(StageError::Invalid(
                "sample needs a labeled `images` input for its classes".into(),
            ));
        }
        let preset = ctx.param_str("preset")?.to_string();
        let (_ae_vs, ae) = load_autoencoder(dev, &preset, &ctx.input("autoencoder")?.path)?;
        let latent_size = image_size as i64 / ae.config().downsampling_factor();
        let unet_path = ctx.input("unet")?.path.clone();
        let scale_factor = read_scale_factor(&unet_path)?;
        let mut unet_vs = VarStore::new(dev);
        let unet = UNetModel::new(
            &unet_vs.root(),
            &if preset == "tiny" {
                tiny_unet()
            } else {
                histodiffaug_unet()
            },
        )
        .map_err(invalid)?;
        load_unet(&mut unet_vs, &unet_path, ctx.param_bool("use_ema")?)?;
        let mut phi_vs = VarStore::new(dev);
        let phi = build_latent_classifier(&phi_vs, &preset, classes.len() as i64, latent_size)?;
        crate::weights::load_strict(&mut phi_vs, &ctx.input("classifier")?.path, |_| false)
            .map_err(invalid)?;
        phi_vs.freeze();
        let noise = NoiseSchedule::new(BetaSchedule::histodiffaug()).map_err(invalid)?;
        let ddim = DdimSchedule::uniform(
            &noise,
            ctx.param_i64("steps")? as usize,
            ctx.param_f64("eta")?,
        )
        .map_err(invalid)?;
        let pool = PoolLayout::new(
            classes,
            (
                ctx.param_i64("per_class")? as usize,
                ctx.param_i64("batch_size")? as usize,
                image_size,
            ),
            ctx.checkpoint_dir(),
        )?;
        let seed = ctx.param_i64("seed")? as u64;
        let mut state = Sampler {
            unet,
            phi,
            ae,
            ddim,
            scale: ctx.param_f64("guidance_scale")?,
            mode: if ctx.param_str("guidance_mode")? == "official" {
                GuidanceMode::OfficialCompat
            } else {
                GuidanceMode::ConditionScore
            },
            scale_factor,
            latent_shape: [ae_channels(&unet_vs), latent_size, latent_size],
            pool,
            seed,
            device: dev,
        };
        let batches = state.pool.batches();
        let schedule = Schedule {
            total_steps: batches,
            every_steps: 1,
            every_minutes: 0.0,
            // No per-batch loss to record: keep the checkpoint's history one line long.
            metric_every: batches,
            seed,
        };
        train(ctx, &schedule, &mut state, None)?;
        state.pool.finish(&ctx.output_path("images"))
    }
}

/// Latent channels the UNet takes (its first conv's input width).
fn ae_channels(unet_vs: &VarStore) -> i64 {
    unet_vs
        .variables()
        .get("input_blocks.0.0.weight")
        .map(|w| w.size()[1])
        .unwrap_or(3)
}

/// The UNet weights (`use_ema`: the `ema.*` copy) of a train-diffusion output.
fn load_unet(vs: &mut VarStore, path: &std::path::Path, use_ema: bool) -> Result<(), StageError> {
    let tensors = crate::weights::read_tensors(path).map_err(invalid)?;
    let chosen: Vec<(String, Tensor)> = tensors
        .into_iter()
        .filter_map(|(k, t)| match (use_ema, k.strip_prefix("ema.")) {
            (true, Some(rest)) if rest != "num_updates" => Some((rest.to_string(), t)),
            (false, None) if k != "scale_factor" => Some((k, t)),
            _ => None,
        })
        .collect();
    restore_into(vs, &chosen, |_| true, &path.display().to_string()).map_err(invalid)
}

struct Sampler {
    unet: UNetModel,
    phi: EncoderUNetModel,
    ae: AutoencoderKL,
    ddim: DdimSchedule,
    scale: f64,
    mode: GuidanceMode,
    scale_factor: f64,
    latent_shape: [i64; 3],
    pool: PoolLayout,
    seed: u64,
    device: Device,
}

impl Trainable for Sampler {
    fn step(&mut self, batch: u64, _: Option<&Batch>) -> Result<StepReport, StageError> {
        let classes = self.pool.labels(batch);
        let n = classes.len() as i64;
        let labels = Tensor::from_slice(&classes).to_device(self.device);
        let mut noise = SeededNoise::new(mix(self.seed, batch));
        let [c, h, w] = self.latent_shape;
        let z_t = noise.tensor(&[n, c, h, w]).to_device(self.device);
        let _guard = tch::no_grad_guard();
        let (unet, phi) = (&self.unet, &self.phi);
        let mut eps_model = |x: &Tensor, t: &Tensor| unet.forward(x, t);
        let mut guidance = ClassifierGuidance {
            scale: self.scale,
            mode: self.mode,
            gradient: Box::new(move |x: &Tensor, t: &Tensor| {
                log_prob_gradient(&|x, t| phi.forward(x, t), x, t, &labels)
            }),
        };
        let guide = (self.scale > 0.0).then_some(&mut guidance);
        let z0 =
            ddim_sample(&self.ddim, &z_t, &mut eps_model, guide, &mut noise).map_err(invalid)?;
        let x = self
            .ae
            .decode(&(z0 / self.scale_factor), false)
            .map_err(invalid)?;
        self.pool.write_batch(batch, &x)?;
        Ok(StepReport::default())
    }

    /// Nothing but the step: the finished batches are on disk and every random draw of
    /// batch b comes from (seed, b).
    fn state(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    fn restore(&mut self, _state: Vec<(String, Tensor)>) -> Result<(), StageError> {
        Ok(())
    }
}
