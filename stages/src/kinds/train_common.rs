//! Parameters every resumable training kind shares (length, seed, checkpoint policy) and
//! their translation into the driver's [`Schedule`].

use super::schema::{float, int, one_of, param};
use crate::train::autocast::Precision;
use crate::train::mixed::MixedPrecision;
use crate::train::named::{restore_into, take_prefix, vars_with_prefix};
use crate::train::optim::Adam;
use crate::train::{Schedule, StepReport};
use histodiff_engine::registry::ParamSpec;
use histodiff_engine::stage::{StageContext, StageError};

/// `steps`, `epochs`, `seed`, `checkpoint_every`, `checkpoint_minutes`, `metric_every`,
/// `precision`.
pub fn schedule_params(default_epochs: i64) -> Vec<ParamSpec> {
    vec![
        precision_param(),
        param(
            "steps",
            int(Some(0), None),
            Some(0.into()),
            "optimizer steps; 0 means `epochs` × batches per epoch",
        ),
        param(
            "epochs",
            int(Some(1), None),
            Some(default_epochs.into()),
            "passes over the data when `steps` is 0",
        ),
        param(
            "seed",
            int(Some(0), None),
            Some(0.into()),
            "seed of initialisation, data order and per-step noise",
        ),
        param(
            "checkpoint_every",
            int(Some(0), None),
            Some(1000.into()),
            "checkpoint every N steps (0: never by count)",
        ),
        param(
            "checkpoint_minutes",
            float(Some(0.0), None),
            Some(10.0.into()),
            "checkpoint every M minutes (0: never by time)",
        ),
        param(
            "metric_every",
            int(Some(1), None),
            Some(10.into()),
            "record loss metrics every N steps",
        ),
    ]
}

/// The schedule parameters of [`schedule_params`], typed (precision aside).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
pub struct ScheduleParams {
    pub steps: u64,
    pub epochs: u64,
    pub seed: u64,
    pub checkpoint_every: u64,
    pub checkpoint_minutes: f64,
    pub metric_every: u64,
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

/// The schedule from those parameters; `steps_per_epoch` comes from the data.
pub fn schedule(ctx: &StageContext, steps_per_epoch: u64) -> Result<Schedule, StageError> {
    let params = ScheduleParams {
        steps: ctx.param_i64("steps")?.max(0) as u64,
        epochs: ctx.param_i64("epochs")?.max(1) as u64,
        seed: ctx.param_i64("seed")? as u64,
        checkpoint_every: ctx.param_i64("checkpoint_every")?.max(0) as u64,
        checkpoint_minutes: ctx.param_f64("checkpoint_minutes")?,
        metric_every: ctx.param_i64("metric_every")?.max(1) as u64,
    };
    Ok(params.schedule(steps_per_epoch))
}

/// A kind's parameters as its typed struct (the engine has checked them against the spec,
/// so a failure here is a spec and struct that disagree).
pub fn typed_params<T: serde::de::DeserializeOwned>(ctx: &StageContext) -> Result<T, StageError> {
    serde_json::from_value(serde_json::Value::Object(ctx.job.params.clone()))
        .map_err(|e| StageError::Invalid(format!("parameters of {}: {e}", ctx.job.kind)))
}

/// One cross-entropy step of a classifier (φ or ϕ): backward, optimizer step, and the
/// loss and batch accuracy for the progress line.
pub fn cross_entropy_step(
    mp: &mut MixedPrecision,
    opt: &mut Adam,
    logits: &tch::Tensor,
    labels: &tch::Tensor,
) -> StepReport {
    let loss = logits.cross_entropy_for_logits(labels);
    mp.backward_step(&loss, opt);
    let acc = logits
        .argmax(-1, false)
        .eq_tensor(labels)
        .to_kind(tch::Kind::Float)
        .mean(tch::Kind::Float);
    StepReport {
        loss: loss.double_value(&[]),
        metrics: vec![("accuracy", acc.double_value(&[]))],
    }
}

/// Checkpoint state of a classifier trained alone: its weights under `phi.`, the
/// optimizer's moments under `opt.`.
pub fn classifier_state(
    vs: &tch::nn::VarStore,
    opt: &Adam,
    mp: &MixedPrecision,
) -> Vec<(String, tch::Tensor)> {
    let mut out = vars_with_prefix(vs, "phi.");
    out.extend(opt.state_tensors("opt."));
    out.extend(mp.state());
    out
}

/// Restores what [`classifier_state`] saved.
pub fn restore_classifier(
    vs: &tch::nn::VarStore,
    opt: &mut Adam,
    mp: &mut MixedPrecision,
    state: &[(String, tch::Tensor)],
) -> Result<(), StageError> {
    let bad = |e: String| StageError::Invalid(format!("checkpoint: {e}"));
    restore_into(vs, &take_prefix(state, "phi."), |_| true, "classifier").map_err(bad)?;
    let by_name = state
        .iter()
        .map(|(k, t)| (k.clone(), t.shallow_clone()))
        .collect();
    opt.load_state_tensors("opt.", &by_name)
        .map_err(|e| bad(e.to_string()))?;
    mp.restore(&by_name)
}

/// `precision`: f32, or autocast in bf16 (CPU or CUDA) or fp16 (CUDA, with loss scaling).
pub fn precision_param() -> ParamSpec {
    param(
        "precision",
        one_of(&["f32", "bf16", "fp16"]),
        Some("f32".into()),
        "f32; bf16 autocast (CPU or CUDA); fp16 autocast with loss scaling (CUDA)",
    )
}

/// The run's mixed precision from the `precision` parameter, checked against `device`.
pub fn mixed_precision(
    ctx: &StageContext,
    device: tch::Device,
) -> Result<MixedPrecision, StageError> {
    let name = ctx.param_str("precision")?;
    let precision = Precision::parse(name)
        .ok_or_else(|| StageError::Invalid(format!("unknown precision `{name}`")))?;
    MixedPrecision::new(precision, device)
}
