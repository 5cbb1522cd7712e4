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

use super::declare::kind;
use super::invalid;
use super::params::{choice, default, one_of, range};
use super::train_common::{pool_layout, sample_pool};
use crate::artifact::{autoencoder, unet, unet_classifier};
use crate::diffusion::{
    ddim_sample, log_prob_gradient, BetaSchedule, ClassifierGuidance, DdimSchedule, GuidanceMode,
    NoiseSchedule, SeededNoise,
};
use crate::models::autoencoder::AutoencoderKL;
use crate::models::unet::{EncoderUNetModel, UNetModel};
use crate::presets::{Preset, MODEL_PRESETS};
use crate::train::data_order::mix;
use histodiff_engine::stage::{StageContext, StageError};
use tch::{Device, Tensor};

choice!(GuidanceMode { "paper" => ConditionScore, "official" => OfficialCompat });

kind! {
    /// classifier-guided DDIM per class, decoded by D′ (Eq. 7–8)
    Sample("histodiffusion/sample", version: 2, resumable) -> [images] {
        /// UNet, ϕ and AE size
        preset: Preset = one_of(&MODEL_PRESETS).default(Preset::Paper),
        /// DDIM steps S
        steps: usize = range(1..=999).default(200),
        /// DDIM η
        eta: f64 = range(0.0..).default(1.0),
        /// classifier guidance g
        guidance_scale: f64 = range(0.0..).default(1.0),
        /// paper: condition_score with ᾱ_τ; official: ×10 and ⌊τ/20⌋ indexing
        guidance_mode: GuidanceMode = default(GuidanceMode::ConditionScore),
        /// images per class
        per_class: usize = range(1..).default(100),
        /// images per sampling batch (a checkpoint after each)
        batch_size: usize = range(1..).default(16),
        /// sample with the EMA UNet weights (as the official sampler)
        use_ema: bool = default(true),
        /// seed of the noise streams
        seed: u64 = range(0..).default(0),
    }
    inputs {
        /// train-diffusion output (weights, EMA, scale factor)
        unet: One,
        /// latent classifier ϕ from train-latent-classifier
        classifier: One,
        /// AE with the fine-tuned decoder D′ (finetune-decoder)
        autoencoder: One,
        /// labeled set giving class names and image size (e.g. S′)
        images: One,
    }
}

fn run(ctx: &mut StageContext, p: Params) -> Result<(), StageError> {
    let dev = crate::device::parse(ctx.device())?;
    let pool = pool_layout(ctx, p.per_class, p.batch_size)?;
    let (_ae_vs, ae) = autoencoder::load(&ctx.input("autoencoder")?.path, p.preset, dev)?;
    let latent_size = pool.image_size as i64 / ae.config().downsampling_factor();
    let unet_path = &ctx.input("unet")?.path;
    let scale_factor = unet::read_scale_factor(unet_path)?;
    let (unet_vs, unet) = unet::load(unet_path, p.preset, dev, p.use_ema)?;
    let phi_config = p
        .preset
        .unet_classifier(pool.classes.len() as i64, latent_size)?;
    let phi_path = &ctx.input("classifier")?.path;
    let (_phi_vs, phi) = unet_classifier::load(phi_path, &phi_config, dev)?;
    let noise = NoiseSchedule::new(BetaSchedule::histodiffaug()).map_err(invalid)?;
    let ddim = DdimSchedule::uniform(&noise, p.steps, p.eta).map_err(invalid)?;
    let sampler = Sampler {
        unet,
        phi,
        ae,
        ddim,
        guidance: (p.guidance_scale, p.guidance_mode),
        scale_factor,
        latent_shape: [unet::latent_channels(&unet_vs), latent_size, latent_size],
        seed: p.seed,
        device: dev,
    };
    sample_pool(ctx, pool, p.seed, |batch, labels| {
        sampler.batch(batch, labels)
    })
}

/// The models and settings of one sampling run.
struct Sampler {
    unet: UNetModel,
    phi: EncoderUNetModel,
    ae: AutoencoderKL,
    ddim: DdimSchedule,
    /// Guidance scale g and how the guidance indexes ᾱ.
    guidance: (f64, GuidanceMode),
    scale_factor: f64,
    latent_shape: [i64; 3],
    seed: u64,
    device: Device,
}

impl Sampler {
    /// The images of batch `batch`, conditioned on `classes`, decoded by D′.
    fn batch(&self, batch: u64, classes: &[i64]) -> Result<Tensor, StageError> {
        let n = classes.len() as i64;
        let labels = Tensor::from_slice(classes).to_device(self.device);
        let mut noise = SeededNoise::new(mix(self.seed, batch));
        let [c, h, w] = self.latent_shape;
        let z_t = noise.tensor(&[n, c, h, w]).to_device(self.device);
        let _guard = tch::no_grad_guard();
        let (unet, phi) = (&self.unet, &self.phi);
        let mut eps_model = |x: &Tensor, t: &Tensor| unet.forward(x, t);
        let (scale, mode) = self.guidance;
        let mut guidance = ClassifierGuidance {
            scale,
            mode,
            gradient: Box::new(move |x: &Tensor, t: &Tensor| {
                log_prob_gradient(&|x, t| phi.forward(x, t), x, t, &labels)
            }),
        };
        let guide = (scale > 0.0).then_some(&mut guidance);
        let z0 =
            ddim_sample(&self.ddim, &z_t, &mut eps_model, guide, &mut noise).map_err(invalid)?;
        self.ae
            .decode(&(z0 / self.scale_factor), false)
            .map_err(invalid)
    }
}
