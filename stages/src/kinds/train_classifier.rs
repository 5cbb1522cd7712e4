//! `histodiffusion/train-classifier`: the downstream ViT (SPEC §8) trained on real plus
//! selected synthetic images, then run on the test set. It is the instrument behind every
//! number of the paper's table, so it trains with what small data needs: an LR schedule
//! with warm-up (train::lr), drop-path, histology augmentation (train::augment: flips and
//! 90° rotations, optional colour jitter), optional label smoothing, optional initial
//! weights, mixed precision, and a choice of the final or the best-validation epoch
//! ([`recipe`] resolves the defaults; `recipe: official` is SPEC §8.2's DeiT recipe).
//!
//! It trains through the one driver (train::driver): checkpoints (model, AdamW state,
//! selection state) under the stage key every `checkpoint_every` steps, every
//! `checkpoint_minutes` and on interrupt, resumed from the newest valid one; images
//! stream from the sets' shards. Augmentation draws from (seed, step), dropout/drop-path
//! from torch's generator reseeded per step, the data order from (seed, epoch), so on CPU a
//! resumed run ends byte-identical to an uninterrupted one. `model/history.csv` holds the
//! loss per step, `model/training.json` the resolved recipe and which epoch was kept.

mod init;
pub mod recipe;
mod selection;

use super::declare::kind;
use super::invalid;
use super::params::{choice, default, one_of, optional, range, ExternalPath};
use crate::artifact::classifier::{
    model_input, normalize, save, unit_input, write_file, ClassifierConfig, HISTORY_FILE,
    TRAINING_FILE,
};
use crate::artifact::ImageSet;
use crate::models::vit::{VisionTransformer, VitConfig};
use crate::presets::{Preset, VIT_PRESETS};
use crate::report::results::{write, Predictions, PREDICTIONS_FORMAT};
use crate::train::augment::{Augmenter, Flips};
use crate::train::autocast::Precision;
use crate::train::checkpoint;
use crate::train::determinism::set_threads;
use crate::train::driver::require_batch;
use crate::train::images::{Batch, Epochs, TrainingImages};
use crate::train::lr::{LrSchedule, ScheduleKind, WarmupSchedule};
use crate::train::mixed::{MixedPrecision, MIXED_PREFIX};
use crate::train::optim::{Adam, AdamConfig};
use crate::train::{train, Schedule, StepReport, Trainable};
use histodiff_engine::stage::{StageContext, StageError};
use recipe::{Recipe, RecipeName, NOT_REPRODUCED};
use selection::{CarvedSplit, Selection};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Tensor};

/// `select`: the final epoch (SPEC §12's recommendation) or the best epoch on a
/// validation split of the training set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Last,
    BestVal,
}

choice!(Keep { "last" => Last, "best_val" => BestVal });
choice!(ScheduleKind = ScheduleKind::NAMES, ScheduleKind::parse);
choice!(Flips = Flips::NAMES, Flips::parse);

kind! {
    /// downstream ViT on real + selected synthetic images, with test predictions
    // 3: schedules with warm-up, drop-path, augmentation, label smoothing, init_weights,
    // best_val selection and recipe-dependent defaults.
    TrainClassifier("histodiffusion/train-classifier", version: 3, resumable)
        -> [model, predictions]
    {
        /// tiny: ViT 32 px/patch 8/width 64/depth 2; paper: ViT-B/16 (SPEC §8.1); official:
        /// ViT-S/16 (SPEC §11.10)
        preset: Preset = one_of(&VIT_PRESETS).default(Preset::Paper),
        /// defaults of every unset parameter below: paper (SPEC §8.1; cosine, 5 warm-up
        /// epochs, drop-path 0.1, flips, 90° rotations and a mild random resized crop where
        /// the paper is silent) or official (eval.py's DeiT recipe, SPEC §8.2)
        recipe: RecipeName = default(RecipeName::Paper),
        /// passes over the training set (paper 200, official 300, tiny 2000)
        epochs: Option<u64> = range(1..).optional(),
        /// paper 128, official 256, tiny 32
        batch_size: Option<usize> = range(1..).optional(),
        /// AdamW peak learning rate (paper 1e-4; official 5e-4·batch/512; tiny 3e-3)
        lr: Option<f64> = range(0.0..).optional(),
        /// AdamW weight decay (0.05; the paper does not state it)
        weight_decay: Option<f64> = range(0.0..).optional(),
        /// learning-rate decay after the warm-up: cosine (timm, down to min_lr), anneal
        /// (linear to 0), constant; default cosine
        schedule: Option<ScheduleKind> = optional(),
        /// linear warm-up from 1e-6 over this many epochs (official 5; paper 5, at most a
        /// tenth of the epochs)
        warmup_epochs: Option<f64> = range(0.0..).optional(),
        /// floor of the cosine (paper 1e-6, official 1e-5)
        min_lr: Option<f64> = range(0.0..).optional(),
        /// stochastic-depth rate of the last block, linear in depth as timm (0.1); off at
        /// evaluation
        drop_path: Option<f64> = range(0.0..=0.9).optional(),
        /// cross-entropy label smoothing as torch's F.cross_entropy (paper 0, official 0.1)
        label_smoothing: Option<f64> = range(0.0..=1.0).optional(),
        /// random flips of training images: both (paper: histology has no orientation),
        /// horizontal (official), none
        flips: Option<Flips> = optional(),
        /// random 90° rotations of training images (paper true, official false)
        rot90: Option<bool> = optional(),
        /// brightness/contrast/saturation jitter strength v: factors uniform in [1−v, 1+v]
        /// (0 = off, the default)
        color_jitter: Option<f64> = range(0.0..=1.0).optional(),
        /// random resized crop of training images, area fraction uniform in [crop_scale, 1],
        /// aspect 3/4–4/3 (paper 0.6, official 0.08; 1 = off)
        crop_scale: Option<f64> = range(0.01..=1.0).optional(),
        /// model to keep: last (the final epoch) or best_val (the best epoch on a stratified
        /// split of the real training set; the test set is never used)
        select: Keep = default(Keep::Last),
        /// select: best_val: share of each class of the real training set held out for
        /// validation (not trained on)
        val_fraction: f64 = range(0.01..=0.5).default(0.1),
        /// safetensors of a ViT converted by scripts/convert_checkpoint.py vit, matching the
        /// preset; a head of another class count is re-initialised
        init_weights: Option<ExternalPath> = optional(),
        /// seed of initialisation, data order, augmentation, validation split and drop-path
        seed: u64 = range(0..).default(0),
        /// checkpoint every N steps (0 = never by count)
        checkpoint_every: u64 = range(0..).default(500),
        /// checkpoint every M minutes (0 = never by time)
        checkpoint_minutes: f64 = range(0.0..).default(30.0),
        /// f32; bf16 autocast (CPU or CUDA); fp16 autocast with loss scaling (CUDA)
        precision: Precision = default(Precision::F32),
    }
    inputs {
        /// labeled image sets: the real few-shot set and any selected synthetic sets
        train: Many,
        /// the labeled test set (CRC-VAL-HE-7K or a held-out split)
        test: One,
    }
}

fn run(ctx: &mut StageContext, p: Params) -> Result<(), StageError> {
    let recipe = Recipe::from_params(&p);
    let (mut images, data) = prepare_data(ctx, &p, &recipe)?;
    let classes = images.classes().to_vec();
    let test = open_test(ctx, &classes)?;
    let vit = VitConfig {
        drop_path_rate: recipe.drop_path,
        ..recipe.preset.vit(classes.len() as i64)
    };
    vit.validate().map_err(invalid)?;
    let device = crate::device::parse(ctx.device())?;
    set_threads(ctx.job.threads);
    log_recipe(ctx, &recipe, &data);
    let (mut state, init) = build_state(ctx, &p, (&recipe, &vit), &data, device)?;
    let schedule = driver_schedule(&p, &recipe, &data);
    let trained = train(ctx, &schedule, &mut state, Some(&mut images))?;
    let chosen = choose(ctx, &mut state, &schedule, data.steps_per_epoch)?;

    let out = ctx.output_path("model");
    let arch = format!("vit-{}", recipe.preset.name());
    save(
        &out,
        &ClassifierConfig::from_vit(&arch, classes.clone(), &vit),
        &state.vs,
    )?;
    write_file(&out.join(HISTORY_FILE), &trained.history)?;
    if let Some(sel) = &state.selection {
        write_file(&out.join("validation.csv"), &sel.history_csv())?;
    }
    let meta = training_json(&p, &recipe, &data, init, chosen)?;
    write_file(&out.join(TRAINING_FILE), &meta)?;
    write_predictions(ctx, &state, &test, classes, &data, recipe.batch_size)
}

/// What the run needs to know about its training images (the real set first, carved when
/// selecting on validation).
struct Data {
    /// Real images trained on, synthetic images trained on.
    n_real: usize,
    n_synthetic: usize,
    steps_per_epoch: u64,
    split: Option<CarvedSplit>,
    select_best: bool,
    val_fraction: f64,
}

fn prepare_data(
    ctx: &StageContext,
    p: &Params,
    recipe: &Recipe,
) -> Result<(TrainingImages, Data), StageError> {
    let seed = p.seed;
    let mut dirs: Vec<PathBuf> = ctx.inputs("train").iter().map(|a| a.path.clone()).collect();
    if dirs.is_empty() {
        return Err(StageError::Invalid("input `train` is empty".into()));
    }
    let (select_best, val_fraction) = (p.select == Keep::BestVal, p.val_fraction);
    let split = if select_best {
        let scratch = ctx.job.work_dir.join("validation-split");
        let split = selection::carve(&dirs[0], val_fraction, seed, &scratch)?;
        dirs[0] = split.train.clone();
        Some(split)
    } else {
        None
    };
    let images = TrainingImages::open_many(&dirs, recipe.batch_size, seed, Epochs::KeepPartial)?;
    images.require_labels("train-classifier")?;
    let n_real = images.set_lens()[0];
    let data = Data {
        n_real,
        n_synthetic: images.len() - n_real,
        steps_per_epoch: images.steps_per_epoch(),
        split,
        select_best,
        val_fraction,
    };
    Ok((images, data))
}

/// The test set, whose classes must be the training set's. Only its manifest is read
/// here; its images are read after training, for the predictions.
fn open_test(ctx: &StageContext, classes: &[String]) -> Result<ImageSet, StageError> {
    let test = ImageSet::open(&ctx.input("test")?.path)?;
    if test.manifest().classes != classes {
        return Err(StageError::Invalid(format!(
            "test classes {:?} differ from training classes {classes:?}",
            test.manifest().classes
        )));
    }
    Ok(test)
}

fn log_recipe(ctx: &mut StageContext, recipe: &Recipe, data: &Data) {
    ctx.log(format!("train-classifier recipe: {}", recipe.to_json()));
    if let Some(split) = &data.split {
        ctx.log(format!(
            "select: best_val on {} real images held out of the training set ({} real left to train on)",
            split.n_val, split.n_train
        ));
    }
    if recipe.recipe == RecipeName::Official {
        ctx.log(format!(
            "official recipe: not reproduced: {}",
            NOT_REPRODUCED.join("; ")
        ));
    }
}

/// The model (random, or from `init_weights`), its AdamW and the rest of the step's state;
/// also what happened to `init_weights`.
fn build_state(
    ctx: &mut StageContext,
    p: &Params,
    (recipe, vit): (&Recipe, &VitConfig),
    data: &Data,
    device: Device,
) -> Result<(VitState, Option<Value>), StageError> {
    let seed = p.seed;
    tch::manual_seed(seed as i64);
    let mut vs = VarStore::new(device);
    let model = VisionTransformer::new(&vs.root(), vit.clone()).map_err(invalid)?;
    let given = p.init_weights.as_ref();
    let init = init_weights(ctx, &mut vs, given, recipe.preset, vit.num_classes)?;
    let optim = Adam::new(&vs, AdamConfig::adamw(recipe.lr, recipe.weight_decay));
    let selection = match &data.split {
        Some(split) => Some(Selection::new(
            &split.val,
            data.steps_per_epoch,
            recipe.batch_size,
            device,
        )?),
        None => None,
    };
    let state = VitState {
        vs,
        model,
        optim,
        mp: MixedPrecision::new(p.precision, device)?,
        device,
        lr: lr_schedule(recipe, data.steps_per_epoch).schedule(),
        base_lr: recipe.lr,
        augment: Augmenter::new(recipe.augment, seed),
        label_smoothing: recipe.label_smoothing,
        selection,
    };
    Ok((state, init))
}

/// Loads `init_weights` when given (after the seeded random init, so a fresh head stays
/// seeded) and describes what was loaded for `training.json`.
fn init_weights(
    ctx: &mut StageContext,
    vs: &mut VarStore,
    given: Option<&ExternalPath>,
    preset: Preset,
    classes: i64,
) -> Result<Option<Value>, StageError> {
    let Some(ExternalPath { text: shown, path }) = given else {
        return Ok(None);
    };
    let model = format!("the {} preset's ViT", preset.name());
    let head = init::load(vs, path, shown, &model)?.describe(classes);
    ctx.log(format!("init_weights {shown}: {head}"));
    Ok(Some(json!({ "file": shown, "head": head })))
}

/// The recipe's schedule in steps: warm-up epochs are rounded to whole steps.
fn lr_schedule(recipe: &Recipe, steps_per_epoch: u64) -> WarmupSchedule {
    WarmupSchedule {
        kind: recipe.schedule,
        total_steps: recipe.epochs * steps_per_epoch,
        warmup_steps: (recipe.warmup_epochs * steps_per_epoch as f64).round() as u64,
        warmup_init: recipe.warmup_lr,
        min_lr: recipe.min_lr,
    }
}

fn driver_schedule(p: &Params, recipe: &Recipe, data: &Data) -> Schedule {
    Schedule {
        total_steps: recipe.epochs * data.steps_per_epoch,
        every_steps: p.checkpoint_every,
        every_minutes: p.checkpoint_minutes,
        metric_every: 1,
        seed: p.seed,
    }
}

/// Puts the kept epoch's weights in the store and describes the choice.
fn choose(
    ctx: &mut StageContext,
    state: &mut VitState,
    schedule: &Schedule,
    steps_per_epoch: u64,
) -> Result<Value, StageError> {
    let last = json!({
        "rule": "last",
        "epoch": schedule.total_steps / steps_per_epoch.max(1),
        "step": schedule.total_steps,
    });
    let chosen = match &state.selection {
        Some(sel) => sel.install_best(&mut state.vs)?.unwrap_or(last),
        None => last,
    };
    ctx.log(format!("kept model: {chosen}"));
    if let Some(epoch) = chosen["epoch"].as_u64() {
        ctx.metric("select/epoch", None, epoch as f64);
    }
    Ok(chosen)
}

fn training_json(
    p: &Params,
    recipe: &Recipe,
    data: &Data,
    init: Option<Value>,
    chosen: Value,
) -> Result<String, StageError> {
    let mut meta = json!({
        "format": "histodiff/classifier-training",
        "recipe": recipe.to_json(),
        "precision": p.precision,
        "seed": p.seed,
        "init_weights": init,
        "select": if data.select_best { "best_val" } else { "last" },
        "val_fraction": data.select_best.then_some(data.val_fraction),
        "train_images": { "real": data.n_real, "synthetic": data.n_synthetic },
        "val_images": data.split.as_ref().map(|s| s.n_val),
        "chosen": chosen,
    });
    if recipe.recipe == RecipeName::Official {
        meta["not_reproduced"] = json!(NOT_REPRODUCED);
    }
    serde_json::to_string_pretty(&meta).map_err(StageError::other)
}

fn write_predictions(
    ctx: &StageContext,
    state: &VitState,
    test: &ImageSet,
    classes: Vec<String>,
    data: &Data,
    batch: usize,
) -> Result<(), StageError> {
    let size = state.model.config().image_size;
    let predicted = predict(&state.model, test, size, batch, state.device)?;
    let items = &test.manifest().items;
    let predictions = Predictions {
        format: PREDICTIONS_FORMAT.into(),
        classes,
        truth: items.iter().map(|i| i.label.unwrap_or(-1)).collect(),
        predicted,
        sources: items.iter().map(|i| i.source.clone()).collect(),
        train_real: Some(data.n_real as u64),
        train_synthetic: Some(data.n_synthetic as u64),
    };
    write(&ctx.output_path("predictions"), &predictions).map_err(invalid)
}

/// Cross-entropy of `logits` against class indices with label smoothing ε, exactly torch's
/// `F.cross_entropy(logits, labels, label_smoothing=ε)` (mean over the batch): the target
/// puts 1 − ε + ε/K on the true class and ε/K on every other.
pub fn classification_loss(logits: &Tensor, labels: &Tensor, label_smoothing: f64) -> Tensor {
    logits.cross_entropy_loss::<Tensor>(labels, None, tch::Reduction::Mean, -100, label_smoothing)
}

/// The forward pass of a training step under the run's precision: (logits, loss). Under
/// bf16/fp16 autocast the logits come out in the low dtype and the loss in f32.
pub fn forward_loss(
    mp: &MixedPrecision,
    model: &VisionTransformer,
    x: &Tensor,
    labels: &Tensor,
    label_smoothing: f64,
) -> Result<(Tensor, Tensor), StageError> {
    mp.forward(|| {
        let logits = model.forward_t(x, true);
        let loss = classification_loss(&logits, labels, label_smoothing);
        (logits, loss)
    })
}

/// The ViT, its AdamW, the schedule, augmentation and selection state of a run.
struct VitState {
    vs: VarStore,
    model: VisionTransformer,
    optim: Adam,
    mp: MixedPrecision,
    device: Device,
    lr: LrSchedule,
    base_lr: f64,
    augment: Augmenter,
    label_smoothing: f64,
    selection: Option<Selection>,
}

impl VitState {
    /// The batch as the model's training input: [0, 1], resized, augmented, normalised.
    fn training_input(&self, batch: &Batch, step: u64) -> Tensor {
        let size = self.model.config().image_size;
        let x = unit_input(batch.images(), size, self.device);
        normalize(&self.augment.apply(&x, step))
    }
}

impl Trainable for VitState {
    fn step(&mut self, step: u64, batch: Option<&Batch>) -> Result<StepReport, StageError> {
        let batch = require_batch(batch)?;
        self.optim.set_lr(self.lr.lr_at(self.base_lr, step));
        let x = self.training_input(batch, step);
        let y = batch.labels(self.device)?;
        let (_, loss) = forward_loss(&self.mp, &self.model, &x, &y, self.label_smoothing)?;
        self.optim.zero_grad();
        self.mp.backward_step(&loss, &mut self.optim);
        let mut metrics = vec![("lr", self.optim.lr())];
        if let Some(sel) = &mut self.selection {
            if let Some(score) = sel.after_step(step, &self.model, &self.vs)? {
                metrics.push(("val/accuracy", score.accuracy));
                metrics.push(("val/loss", score.loss));
            }
        }
        Ok(StepReport {
            loss: loss.double_value(&[]),
            metrics,
        })
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = checkpoint::collect(&self.vs, Some(&self.optim), None);
        out.extend(self.mp.state());
        if let Some(sel) = &self.selection {
            out.extend(sel.state());
        }
        out
    }

    fn restore(&mut self, state: Vec<(String, Tensor)>) -> Result<(), StageError> {
        let by_name: BTreeMap<String, Tensor> = state
            .iter()
            .map(|(k, t)| (k.clone(), t.shallow_clone()))
            .collect();
        self.mp.restore(&by_name)?;
        if let Some(sel) = &mut self.selection {
            sel.restore(&by_name)?;
        }
        let model = state
            .into_iter()
            .filter(|(k, _)| !k.starts_with(MIXED_PREFIX) && !k.starts_with(selection::PREFIX))
            .collect();
        checkpoint::restore_tensors(model, &mut self.vs, Some(&mut self.optim), None)
            .map_err(invalid)
    }
}

/// Predicted class of every image of `set`, one shard in memory at a time (eval mode,
/// no gradients).
pub fn predict(
    model: &VisionTransformer,
    set: &ImageSet,
    size: i64,
    batch: usize,
    device: Device,
) -> Result<Vec<i64>, StageError> {
    let _guard = tch::no_grad_guard();
    let mut out = Vec::with_capacity(set.len());
    set.for_each_chunk(batch, |images| {
        let logits = model.forward_t(&model_input(images, size, device), false);
        let classes = logits.argmax(1, false).to_device(Device::Cpu);
        out.extend(Vec::<i64>::try_from(&classes).map_err(StageError::other)?);
        Ok::<(), StageError>(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::autocast::Precision;
    use tch::Kind;

    /// `precision: bf16` really runs the ViT's forward under autocast: the logits come out
    /// in bf16 while the weights stay f32, and the loss is computed in f32.
    #[test]
    fn bf16_precision_reaches_the_forward_pass() {
        let vs = VarStore::new(Device::Cpu);
        let model = VisionTransformer::new(&vs.root(), VitConfig::tiny(3)).unwrap();
        let x = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 2]);
        let f32_run = MixedPrecision::new(Precision::F32, Device::Cpu).unwrap();
        let (logits, _) = forward_loss(&f32_run, &model, &x, &y, 0.0).unwrap();
        assert_eq!(logits.kind(), Kind::Float);
        let bf16_run = MixedPrecision::new(Precision::Bf16, Device::Cpu).unwrap();
        let (logits, loss) = forward_loss(&bf16_run, &model, &x, &y, 0.1).unwrap();
        assert_eq!(logits.kind(), Kind::BFloat16, "the forward ran in bf16");
        assert_eq!(
            loss.kind(),
            Kind::Float,
            "the loss is on autocast's f32 list"
        );
        assert!(vs.variables().values().all(|v| v.kind() == Kind::Float));
    }

    #[test]
    fn label_smoothing_zero_is_plain_cross_entropy() {
        let logits = Tensor::randn([5, 4], (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2, 3, 1]);
        let ours = classification_loss(&logits, &y, 0.0);
        assert!(ours.equal(&logits.cross_entropy_for_logits(&y)));
        let smoothed = classification_loss(&logits, &y, 0.2).double_value(&[]);
        // (1 − ε)·CE + ε·mean over classes of −log p.
        let logp = logits.log_softmax(1, Kind::Float);
        let uniform = -logp.mean(Kind::Float).double_value(&[]);
        let expected = 0.8 * ours.double_value(&[]) + 0.2 * uniform;
        assert!(
            (smoothed - expected).abs() < 1e-6,
            "{smoothed} vs {expected}"
        );
    }

    #[test]
    fn warm_up_epochs_become_whole_steps() {
        let r = Recipe::defaults(Preset::Tiny, RecipeName::Paper);
        let s = lr_schedule(&r, 3);
        assert_eq!((s.total_steps, s.warmup_steps), (r.epochs * 3, 15));
        assert_eq!(s.schedule().lr_at(r.lr, 0), r.warmup_lr);
    }
}
