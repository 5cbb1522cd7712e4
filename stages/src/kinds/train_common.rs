//! What the training and sampling kinds share: the parameter groups every training kind
//! flattens into its `Params` (model size, batch and learning rate; precision, length,
//! seed and checkpoint policy; the autoencoder loss of train-autoencoder and
//! finetune-decoder), how a training run starts, a classifier trained alone with
//! cross-entropy (φ, ϕ), and a pool sampled batch by batch with a checkpoint after each.

use super::declare::param_group;
use super::invalid;
use super::params::{choice, default, one_of, optional, range, ExternalPath};
use crate::artifact::pool::PoolLayout;
use crate::artifact::ImageSet;
use crate::losses::AeLossConfig;
use crate::models::autoencoder::AutoencoderKL;
use crate::presets::{Preset, MODEL_PRESETS};
use crate::train::autocast::Precision;
use crate::train::driver::require_batch;
use crate::train::images::{Batch, TrainingImages};
use crate::train::mixed::MixedPrecision;
use crate::train::named::{trainable, vars_with_prefix, Restore};
use crate::train::optim::{Adam, AdamConfig};
use crate::train::{train, Schedule, StepReport, Trainable};
use histodiff_engine::stage::{StageContext, StageError};
use std::path::Path;
use tch::{Device, Tensor};

choice!(Precision { "f32" => F32, "bf16" => Bf16, "fp16" => F16 });

param_group! {
    /// The model size, batch size and learning rate of a training kind, with the kind's
    /// defaults; the kind's doc lines (`preset: …`, `batch_size: …`, `lr: …`) say what
    /// each means there.
    pub struct TrainingParams(batch_size: usize, lr: f64) {
        /// the models' size
        preset: Preset = one_of(&MODEL_PRESETS).default(Preset::Paper),
        /// images per step
        batch_size: usize = range(1..).default(batch_size),
        /// learning rate
        lr: f64 = range(0.0..).default(lr),
    }
}

param_group! {
    /// A resumable training run's precision (where the kind autocasts), length, seed and
    /// checkpoint policy.
    pub struct ScheduleParams(default_epochs: u64, autocast: bool) {
        /// f32; bf16 autocast (CPU or CUDA); fp16 autocast with loss scaling (CUDA)
        precision: Option<Precision> = default(Precision::F32).only_if(autocast),
        /// optimizer steps; 0 means `epochs` × batches per epoch
        steps: u64 = range(0..).default(0),
        /// passes over the data when `steps` is 0
        epochs: u64 = range(1..).default(default_epochs),
        /// seed of initialisation, data order and per-step noise
        seed: u64 = range(0..).default(0),
        /// checkpoint every N steps (0: never by count)
        checkpoint_every: u64 = range(0..).default(1000),
        /// checkpoint every M minutes (0: never by time)
        checkpoint_minutes: f64 = range(0.0..).default(10.0),
        /// record loss metrics every N steps
        metric_every: u64 = range(1..).default(10),
    }
}

param_group! {
    /// L_rec of Eq. 4 (SPEC §2.5): when the GAN terms start, the loss weights and the
    /// LPIPS weights; finetune-decoder's doc lines say where its use differs.
    pub struct AeLossParams(disc_start: u64) {
        /// step from which the GAN terms count
        disc_start: u64 = range(0..).default(disc_start),
        /// λ_KL
        kl_weight: f64 = range(0.0..).default(1e-6),
        /// factor on the adaptive GAN weight
        disc_weight: f64 = range(0.0..).default(0.5),
        /// LPIPS weight; 0 needs no LPIPS weights
        perceptual_weight: f64 = range(0.0..).default(1.0),
        /// LPIPS safetensors (docs/weights.md); required when perceptual_weight > 0
        lpips_weights: Option<ExternalPath> = optional(),
    }
}

impl ScheduleParams {
    /// The schedule; `steps_per_epoch` comes from the data. Seeds libtorch's global
    /// generator, which initialisation draws from, so call it before building models.
    pub fn schedule(&self, steps_per_epoch: u64) -> Schedule {
        let total_steps = if self.steps > 0 {
            self.steps
        } else {
            self.epochs.max(1) * steps_per_epoch
        };
        tch::manual_seed(self.seed as i64);
        Schedule {
            total_steps,
            every_steps: self.checkpoint_every,
            every_minutes: self.checkpoint_minutes,
            metric_every: self.metric_every.max(1),
            seed: self.seed,
        }
    }
}

impl AeLossParams {
    /// The loss's configuration (the rest as in SPEC §2.5).
    pub fn config(&self) -> AeLossConfig {
        AeLossConfig {
            disc_start: self.disc_start as i64,
            kl_weight: self.kl_weight,
            disc_weight: self.disc_weight,
            perceptual_weight: self.perceptual_weight,
            ..AeLossConfig::default()
        }
    }

    /// The LPIPS weights file, when given.
    pub fn lpips(&self) -> Option<&Path> {
        self.lpips_weights.as_ref().map(|w| w.path.as_path())
    }
}

/// How a training run starts: its device, the `images` input in batches of the kind's
/// size (shuffled by the seed), the schedule (libtorch already seeded) and the precision.
pub struct TrainingStart {
    pub device: Device,
    pub images: TrainingImages,
    pub schedule: Schedule,
    pub mp: MixedPrecision,
}

impl TrainingParams {
    /// Opens the run; `labeled` names the kind when it needs labeled images.
    pub fn start(
        &self,
        ctx: &StageContext,
        run: &ScheduleParams,
        labeled: Option<&str>,
    ) -> Result<TrainingStart, StageError> {
        let device = crate::device::parse(ctx.device())?;
        let set = &ctx.input("images")?.path;
        let images = TrainingImages::open(set, self.batch_size, run.seed)?;
        if let Some(kind) = labeled {
            images.require_labels(kind)?;
        }
        let schedule = run.schedule(images.steps_per_epoch());
        let mp = MixedPrecision::new(run.precision.unwrap_or_default(), device)?;
        Ok(TrainingStart {
            device,
            images,
            schedule,
            mp,
        })
    }
}

/// z0 = s·E(x).sample() of images x in [-1, 1] with the frozen AE: the latents the latent
/// kinds train on. The encoder runs under the run's autocast; the latents go on in f32.
pub fn encode_latents(
    ae: &AutoencoderKL,
    x: &Tensor,
    mp: &MixedPrecision,
    scale_factor: f64,
) -> Result<Tensor, StageError> {
    let posterior = mp
        .forward(|| tch::no_grad(|| ae.encode(x, false)))?
        .map_err(invalid)?;
    Ok(posterior.sample().to_kind(tch::Kind::Float) * scale_factor)
}

/// Weights being trained with their optimizer and the run's precision (loss scaler): what a
/// kind that trains one model checkpoints, the weights under the kind's prefix, the
/// optimizer's moments under `opt.`.
pub struct Optimized {
    pub vs: tch::nn::VarStore,
    pub opt: Adam,
    pub mp: MixedPrecision,
}

impl Optimized {
    /// The checkpoint tensors, the weights under `prefix`.
    pub fn state(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut out = vars_with_prefix(&self.vs, prefix);
        out.extend(self.opt.state_tensors("opt."));
        out.extend(self.mp.state());
        out
    }

    /// Restores what [`Optimized::state`] saved; `what` names the weights in errors.
    pub fn restore(&mut self, r: &Restore, prefix: &str, what: &str) -> Result<(), StageError> {
        r.vars(&self.vs, prefix, what)?;
        r.part(|t| self.opt.load_state_tensors("opt.", t))?;
        self.mp.restore(r.by_name())
    }

    /// Backward pass and optimizer step on `loss` (scaled under fp16).
    pub fn backward_step(&mut self, loss: &Tensor) {
        self.mp.backward_step(loss, &mut self.opt);
    }
}

/// A classifier trained alone with cross-entropy and one Adam (φ, ϕ), its weights under
/// `phi.` in the checkpoint: `logits` makes a batch's logits under the run's precision.
pub struct ClassifierFit<F> {
    pub model: Optimized,
    pub device: Device,
    pub logits: F,
}

impl<F> ClassifierFit<F>
where
    F: FnMut(&Batch, &MixedPrecision) -> Result<Tensor, StageError>,
{
    /// The fit of the classifier in `vs`: `config`'s Adam on its trainable variables, in
    /// precision `mp`.
    pub fn new(vs: tch::nn::VarStore, config: AdamConfig, mp: MixedPrecision, logits: F) -> Self {
        let opt = Adam::from_params(trainable(&vs), config);
        let device = vs.device();
        Self {
            model: Optimized { vs, opt, mp },
            device,
            logits,
        }
    }
}

impl<F> Trainable for ClassifierFit<F>
where
    F: FnMut(&Batch, &MixedPrecision) -> Result<Tensor, StageError>,
{
    /// One step: backward, optimizer step, and the loss and batch accuracy.
    fn step(&mut self, _step: u64, batch: Option<&Batch>) -> Result<StepReport, StageError> {
        let batch = require_batch(batch)?;
        let labels = batch.labels(self.device)?;
        self.model.opt.zero_grad();
        let logits = (self.logits)(batch, &self.model.mp)?;
        let loss = logits.cross_entropy_for_logits(&labels);
        self.model.backward_step(&loss);
        let acc = logits
            .argmax(-1, false)
            .eq_tensor(&labels)
            .to_kind(tch::Kind::Float)
            .mean(tch::Kind::Float);
        Ok(StepReport {
            loss: loss.double_value(&[]),
            metrics: vec![("accuracy", acc.double_value(&[]))],
        })
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        self.model.state("phi.")
    }

    fn restore(&mut self, state: Vec<(String, Tensor)>) -> Result<(), StageError> {
        self.model
            .restore(&Restore::new(state), "phi.", "classifier")
    }
}

/// The pool of `per_class` images of each class of the labeled `images` input, at its
/// image size, made in batches of `batch_size` (finished ones in the checkpoint directory).
pub fn pool_layout(
    ctx: &StageContext,
    per_class: usize,
    batch_size: usize,
) -> Result<PoolLayout, StageError> {
    let reference = ImageSet::open(&ctx.input("images")?.path)?;
    let m = reference.manifest();
    if m.classes.is_empty() {
        return Err(StageError::Invalid(format!(
            "{} needs a labeled `images` input for its classes",
            ctx.job.kind
        )));
    }
    let shape = (per_class, batch_size, m.image_size);
    PoolLayout::new(m.classes.clone(), shape, ctx.checkpoint_dir())
}

/// Samples `pool` batch by batch through the training driver, `make(batch)` drawing
/// everything of batch b from (seed, b): each finished batch is a shard in the checkpoint
/// directory and a checkpoint records how many are done, so an interrupted run resumes
/// after the last one. The finished shards become output `images`.
pub fn sample_pool(
    ctx: &mut StageContext,
    pool: PoolLayout,
    seed: u64,
    make: impl FnMut(u64, &[i64]) -> Result<Tensor, StageError>,
) -> Result<(), StageError> {
    let batches = pool.batches();
    let schedule = Schedule {
        total_steps: batches,
        every_steps: 1,
        every_minutes: 0.0,
        // No per-batch loss to record: keep the checkpoint's history one line long.
        metric_every: batches,
        seed,
    };
    let mut sampler = PoolSampler { pool, make };
    train(ctx, &schedule, &mut sampler, None)?;
    sampler.pool.finish(&ctx.output_path("images"))
}

struct PoolSampler<F> {
    pool: PoolLayout,
    make: F,
}

impl<F: FnMut(u64, &[i64]) -> Result<Tensor, StageError>> Trainable for PoolSampler<F> {
    fn step(&mut self, batch: u64, _: Option<&Batch>) -> Result<StepReport, StageError> {
        let labels = self.pool.labels(batch);
        let images = (self.make)(batch, &labels)?;
        self.pool.write_batch(batch, &images)?;
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
