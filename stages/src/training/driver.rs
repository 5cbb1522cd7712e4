//! The step loop: resume, seed, step, report, checkpoint, stop on request.

use super::checkpoint;
use super::data_order::mix;
use histodiff_engine::protocol::Event;
use histodiff_engine::stage::{StageContext, StageError};
use std::time::{Duration, Instant};
use tch::Tensor;

/// What one step reports: the loss for progress, and named scalars for the metrics table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepReport {
    pub loss: f64,
    pub metrics: Vec<(&'static str, f64)>,
}

/// A training state the driver can step, save and restore.
pub trait Trainable {
    /// Runs step `step` (0-based); libtorch's generator is already seeded for it.
    fn step(&mut self, step: u64) -> Result<StepReport, StageError>;
    /// Every tensor the next steps depend on (weights, optimizer state, EMA, buffers).
    fn state(&self) -> Vec<(String, Tensor)>;
    /// Restores [`Trainable::state`] as written at a checkpoint.
    fn restore(&mut self, state: Vec<(String, Tensor)>) -> Result<(), StageError>;
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

/// Seeds libtorch's global generator for `step` of a run seeded `seed`.
pub fn seed_step(seed: u64, step: u64) {
    // manual_seed takes an i64; the bit pattern is what matters.
    tch::manual_seed(mix(seed, step) as i64);
}

/// Trains `model` from its newest checkpoint (or step 0) to `schedule.total_steps`.
/// Returns the step it resumed from. On an interrupt request it writes a checkpoint and
/// returns [`StageError::Interrupted`].
pub fn train(
    ctx: &mut StageContext,
    schedule: &Schedule,
    model: &mut dyn Trainable,
) -> Result<u64, StageError> {
    let dir = ctx.checkpoint_dir().to_path_buf();
    let start = match checkpoint::newest(&dir).map_err(StageError::other)? {
        Some(ckpt) => {
            let state = checkpoint::read(&ckpt).map_err(StageError::other)?;
            model.restore(state)?;
            ctx.log(format!(
                "resumed from {} at step {}",
                ckpt.path.display(),
                ckpt.step
            ));
            ckpt.step.min(schedule.total_steps)
        }
        None => 0,
    };
    let mut last_save = Instant::now();
    let minutes = Duration::from_secs_f64(schedule.every_minutes.max(0.0) * 60.0);
    for step in start..schedule.total_steps {
        if ctx.interrupted() {
            save(ctx, step, model)?;
            return Err(StageError::Interrupted { step });
        }
        seed_step(schedule.seed, step);
        let report = model.step(step)?;
        if !report.loss.is_finite() {
            return Err(StageError::Invalid(format!(
                "loss is {} at step {step}",
                report.loss
            )));
        }
        let done = step + 1;
        ctx.progress(done, schedule.total_steps, Some(report.loss));
        if done % schedule.metric_every.max(1) == 0 || done == schedule.total_steps {
            ctx.metric("loss", Some(done), report.loss);
            for (name, v) in &report.metrics {
                ctx.metric(name, Some(done), *v);
            }
        }
        if done == schedule.total_steps {
            break;
        }
        let by_count = schedule.every_steps > 0 && done % schedule.every_steps == 0;
        let by_time = schedule.every_minutes > 0.0 && last_save.elapsed() >= minutes;
        if by_count || by_time {
            save(ctx, done, model)?;
            last_save = Instant::now();
        }
    }
    Ok(start)
}

fn save(ctx: &mut StageContext, step: u64, model: &dyn Trainable) -> Result<(), StageError> {
    let dir = ctx.checkpoint_dir().to_path_buf();
    let ckpt = checkpoint::write(&dir, step, &model.state()).map_err(StageError::other)?;
    let file = ckpt
        .path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    ctx.emit(&Event::Checkpoint { step, file });
    Ok(())
}
