//! The one resumable training driver of every training kind (DESIGN "Execution"): a step
//! loop that checkpoints every N steps, every M minutes and when the worker is asked to
//! stop, and resumes from the newest valid checkpoint of the stage key.
//!
//! Determinism: every random draw of step `s` comes from `(seed, s)` — libtorch's global
//! generator is re-seeded before each step ([`seed_torch_for_step`]) and the data order of
//! an epoch is a permutation of `(seed, epoch)` (train::data_order) — so a checkpoint needs
//! only the step number and the tensors (weights, optimizer moments, EMA, running
//! statistics), and a resumed run on the CPU ends byte-identical to an uninterrupted one.

use super::checkpoint::{self, CheckpointMeta};
use super::determinism::seed_torch_for_step;
use super::images::{Batch, TrainingImages};
use histodiff_engine::protocol::Event;
use histodiff_engine::stage::{StageContext, StageError};
use std::time::{Duration, Instant};
use tch::Tensor;

/// Checkpoints kept after a write: the newest, and one before it to fall back on when the
/// newest turns out damaged.
const KEEP: usize = 2;
/// Key of the loss history in the checkpoint metadata.
const HISTORY_KEY: &str = "history";
/// First line of a loss history (`step,loss` lines follow).
pub const HISTORY_HEADER: &str = "step,loss\n";

/// What one step reports: the loss for progress, and named scalars for the metrics table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepReport {
    pub loss: f64,
    pub metrics: Vec<(&'static str, f64)>,
}

/// A training state the driver can step, save and restore.
pub trait Trainable {
    /// Runs step `step` (0-based) on its batch (when the run has training images);
    /// libtorch's generator is already seeded for it.
    fn step(&mut self, step: u64, batch: Option<&Batch>) -> Result<StepReport, StageError>;
    /// Every tensor the next steps depend on (weights, optimizer state, EMA, buffers).
    fn state(&self) -> Vec<(String, Tensor)>;
    /// Restores [`Trainable::state`] as written at a checkpoint.
    fn restore(&mut self, state: Vec<(String, Tensor)>) -> Result<(), StageError>;
}

/// The batch a kind that trains on images was given (the driver passes one whenever the
/// run has training images).
pub fn require_batch(batch: Option<&Batch>) -> Result<&Batch, StageError> {
    batch.ok_or_else(|| StageError::msg("this kind trains on images but got no batch"))
}

/// How long to train and when to checkpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub total_steps: u64,
    /// Checkpoint every this many steps (0: never by count).
    pub every_steps: u64,
    /// Checkpoint when this many minutes passed since the last one (0: never by time).
    pub every_minutes: f64,
    /// Emit metrics every this many steps (and at the last step).
    pub metric_every: u64,
    /// Seed all per-step randomness derives from.
    pub seed: u64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Trained {
    /// The step it resumed from (0 for a fresh run).
    pub resumed_from: u64,
    /// `step,loss` lines of every recorded step since step 0, resumed runs included.
    pub history: String,
}

/// Trains `model` from its newest valid checkpoint (or step 0) to `schedule.total_steps`,
/// feeding it the batches of `data` (streamed a few steps ahead) when given. On an
/// interrupt request it writes a checkpoint and returns [`StageError::Interrupted`].
pub fn train(
    ctx: &mut StageContext,
    schedule: &Schedule,
    model: &mut dyn Trainable,
    mut data: Option<&mut TrainingImages>,
) -> Result<Trained, StageError> {
    let (start, mut history) = resume(ctx, schedule, model)?;
    if let Some(data) = data.as_deref_mut() {
        data.begin(start, schedule.total_steps)?;
    }
    let mut last_save = Instant::now();
    let minutes = Duration::from_secs_f64(schedule.every_minutes.max(0.0) * 60.0);
    let mut rate = Throughput::default();
    for step in start..schedule.total_steps {
        if ctx.interrupted() {
            save(ctx, step, model, &history)?;
            return Err(StageError::Interrupted { step });
        }
        seed_torch_for_step(schedule.seed, step);
        let began = Instant::now();
        let batch = data.as_deref_mut().map(|d| d.next(step)).transpose()?;
        let report = model.step(step, batch.as_ref())?;
        rate.add(batch.as_ref().map_or(0, Batch::len), began.elapsed());
        if !report.loss.is_finite() {
            return Err(StageError::Invalid(format!(
                "loss is {} at step {step}",
                report.loss
            )));
        }
        let done = step + 1;
        ctx.progress(done, schedule.total_steps, Some(report.loss));
        if done % schedule.metric_every.max(1) == 0 || done == schedule.total_steps {
            record(ctx, done, &report, &mut history);
        }
        if done == schedule.total_steps {
            break;
        }
        let by_count = schedule.every_steps > 0 && done % schedule.every_steps == 0;
        let by_time = schedule.every_minutes > 0.0 && last_save.elapsed() >= minutes;
        if by_count || by_time {
            save(ctx, done, model, &history)?;
            last_save = Instant::now();
        }
    }
    let prepared = data.and_then(|d| d.data_rate());
    report_rates(ctx, schedule.total_steps, &rate, prepared);
    Ok(Trained {
        resumed_from: start,
        history,
    })
}

/// Restores the newest valid checkpoint; returns the step to start from and the history.
fn resume(
    ctx: &mut StageContext,
    schedule: &Schedule,
    model: &mut dyn Trainable,
) -> Result<(u64, String), StageError> {
    let found = checkpoint::resume(ctx.checkpoint_dir()).map_err(StageError::other)?;
    for (path, why) in &found.set_aside {
        ctx.log(format!(
            "warning: set aside damaged checkpoint {} ({why})",
            path.display()
        ));
    }
    let Some((path, ckpt)) = found.checkpoint else {
        if !found.set_aside.is_empty() {
            ctx.log("warning: no valid checkpoint left; starting over from step 0");
        }
        return Ok((0, HISTORY_HEADER.to_string()));
    };
    let history = ckpt
        .meta
        .extra
        .get(HISTORY_KEY)
        .cloned()
        .unwrap_or_else(|| HISTORY_HEADER.to_string());
    let step = ckpt.meta.step;
    model.restore(ckpt.tensors.into_iter().collect())?;
    ctx.log(format!("resumed from {} at step {step}", path.display()));
    Ok((step.min(schedule.total_steps), history))
}

fn record(ctx: &mut StageContext, done: u64, report: &StepReport, history: &mut String) {
    ctx.metric("loss", Some(done), report.loss);
    for (name, v) in &report.metrics {
        ctx.metric(name, Some(done), *v);
    }
    history.push_str(&format!("{done},{}\n", report.loss));
}

/// Images consumed and the time the steps took, for `train/images_per_s`.
#[derive(Debug, Default)]
struct Throughput {
    images: u64,
    busy: Duration,
}

impl Throughput {
    fn add(&mut self, images: usize, took: Duration) {
        self.images += images as u64;
        self.busy += took;
    }
}

/// Emits the step and data-loading rates, so a user can see whether loading keeps up.
fn report_rates(ctx: &mut StageContext, total: u64, rate: &Throughput, data: Option<f64>) {
    if rate.images == 0 || rate.busy.is_zero() {
        return;
    }
    let consumed = rate.images as f64 / rate.busy.as_secs_f64();
    ctx.metric("train/images_per_s", Some(total), consumed);
    if let Some(prepared) = data {
        ctx.metric("data/images_per_s", Some(total), prepared);
        ctx.log(format!(
            "data loading: {prepared:.0} images/s prepared, {consumed:.0} images/s consumed"
        ));
    }
}

fn save(
    ctx: &mut StageContext,
    step: u64,
    model: &dyn Trainable,
    history: &str,
) -> Result<(), StageError> {
    let dir = ctx.checkpoint_dir().to_path_buf();
    let meta = CheckpointMeta {
        step,
        extra: [(HISTORY_KEY.to_string(), history.to_string())].into(),
    };
    let path = checkpoint::save(&dir, &meta, &model.state()).map_err(StageError::other)?;
    checkpoint::prune(&dir, KEEP).map_err(StageError::other)?;
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    ctx.emit(Event::Checkpoint { step, file });
    Ok(())
}
