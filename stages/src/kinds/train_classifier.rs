//! `histodiffusion/train-classifier`: the downstream ViT (SPEC §8) trained on real plus
//! selected synthetic images, then run on the test set. It trains through the one driver
//! (train::driver): checkpoints (model and AdamW state) under the stage key every
//! `checkpoint_every` steps, every `checkpoint_minutes` and on interrupt, resumed from
//! the newest valid one; images stream from the sets' shards. Dropout/drop-path noise is
//! seeded per step, the data order per epoch, so on CPU a resumed run ends
//! byte-identical to an uninterrupted one. `model/history.csv` holds the loss per step.

use super::classifier::{for_each_chunk, model_input, save, ClassifierConfig};
use super::schema::{float, int, invalid, lr_param, one_of, param, slot, usize_param};
use super::train_common::{mixed_precision, precision_param};
use crate::artifact::ImageSet;
use crate::models::vit::{VisionTransformer, VitConfig};
use crate::report::results::{write, Predictions, PREDICTIONS_FORMAT};
use crate::train::checkpoint;
use crate::train::determinism::set_threads;
use crate::train::driver::require_batch;
use crate::train::images::{Batch, Epochs, TrainingImages};
use crate::train::mixed::{MixedPrecision, MIXED_PREFIX};
use crate::train::optim::{Adam, AdamConfig};
use crate::train::{train, Schedule, StepReport, Trainable};
use histodiff_engine::registry::KindSpec;
use histodiff_engine::stage::{Stage, StageContext, StageError};
use serde_json::Value;
use std::path::PathBuf;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Tensor};

pub struct TrainClassifier;

impl Stage for TrainClassifier {
    fn spec(&self) -> KindSpec {
        KindSpec {
            name: "histodiffusion/train-classifier".into(),
            version: 2,
            params: vec![
                param("preset", one_of(&["tiny", "paper", "official"]), Some("paper".into()),
                    "tiny: ViT 32 px/patch 8/width 64/depth 2; paper: ViT-B/16 (SPEC §8.1); official: ViT-S/16 (SPEC §11.10)"),
                param("epochs", int(Some(1), None), Some(Value::Null), "passes over the training set (paper 200; tiny 10)"),
                param("batch_size", int(Some(1), None), Some(Value::Null), "paper 128; tiny 32"),
                lr_param(1e-4, "AdamW learning rate (paper 1e-4)"),
                param("weight_decay", float(Some(0.0), None), Some(0.05.into()), "AdamW weight decay (not stated by the paper; official 0.05)"),
                param("seed", int(Some(0), None), Some(0.into()), "seed of initialisation, data order and dropout"),
                param("checkpoint_every", int(Some(0), None), Some(500.into()), "checkpoint every N steps (0 = never by count)"),
                param("checkpoint_minutes", float(Some(0.0), None), Some(30.0.into()), "checkpoint every M minutes (0 = never by time)"),
                precision_param(),
            ],
            inputs: vec![
                slot("train", true, true, "labeled image sets: the real few-shot set and any selected synthetic sets"),
                slot("test", true, false, "the labeled test set (CRC-VAL-HE-7K or a held-out split)"),
            ],
            outputs: vec!["model".into(), "predictions".into()],
            resumable: true,
            doc: "downstream ViT on real + selected synthetic images, with test predictions".into(),
        }
    }

    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let preset = ctx.param_str("preset")?.to_string();
        let (batch, epochs) = sizes(ctx, &preset)?;
        let seed = ctx.param_i64("seed")? as u64;
        let train_dirs: Vec<PathBuf> = ctx.inputs("train").iter().map(|a| a.path.clone()).collect();
        if train_dirs.is_empty() {
            return Err(StageError::Invalid("input `train` is empty".into()));
        }
        let mut images = TrainingImages::open_many(&train_dirs, batch, seed, Epochs::KeepPartial)?;
        images.require_labels("train-classifier")?;
        let classes = images.classes().to_vec();
        let test = ImageSet::open(&ctx.input("test")?.path)?;
        if test.manifest().classes != classes {
            return Err(StageError::Invalid(format!(
                "test classes {:?} differ from training classes {classes:?}",
                test.manifest().classes
            )));
        }
        let vit = vit_config(&preset, classes.len() as i64);
        vit.validate().map_err(invalid)?;
        let device = crate::device::parse(ctx.device())?;
        set_threads(ctx.job.threads);
        tch::manual_seed(seed as i64);
        let vs = VarStore::new(device);
        let model = VisionTransformer::new(&vs.root(), vit.clone()).map_err(invalid)?;
        let optim = Adam::new(
            &vs,
            AdamConfig::adamw(ctx.param_f64("lr")?, ctx.param_f64("weight_decay")?),
        );
        let (n_real, n_total) = (images.set_lens()[0], images.len());
        let schedule = Schedule {
            total_steps: epochs * images.steps_per_epoch(),
            every_steps: usize_param(ctx, "checkpoint_every")? as u64,
            every_minutes: ctx.param_f64("checkpoint_minutes")?,
            metric_every: 1,
            seed,
        };
        let mut state = VitState {
            vs,
            model,
            optim,
            mp: mixed_precision(ctx, device)?,
            device,
        };
        let trained = train(ctx, &schedule, &mut state, Some(&mut images))?;

        let config = ClassifierConfig::from_vit(&format!("vit-{preset}"), classes.clone(), &vit);
        save(&ctx.output_path("model"), &config, &state.vs)?;
        let history_path = ctx.output_path("model").join("history.csv");
        std::fs::write(&history_path, trained.history)
            .map_err(|e| StageError::Invalid(format!("{}: {e}", history_path.display())))?;
        let predicted = predict(&state.model, &test, vit.image_size, batch, device)?;
        let items = &test.manifest().items;
        let predictions = Predictions {
            format: PREDICTIONS_FORMAT.into(),
            classes,
            truth: items.iter().map(|i| i.label.unwrap_or(-1)).collect(),
            predicted,
            sources: items.iter().map(|i| i.source.clone()).collect(),
            train_real: Some(n_real as u64),
            train_synthetic: Some((n_total - n_real) as u64),
        };
        write(&ctx.output_path("predictions"), &predictions).map_err(invalid)?;
        Ok(())
    }
}

/// The ViT of a preset: tiny (CPU), paper ViT-B/16 (SPEC §8.1), official ViT-S/16 (§11.10).
fn vit_config(preset: &str, classes: i64) -> VitConfig {
    match preset {
        "tiny" => VitConfig::tiny(classes),
        "official" => VitConfig::small_16(classes),
        _ => VitConfig::base_16(classes),
    }
}

/// (batch size, epochs): the parameters when given, else the preset's.
fn sizes(ctx: &StageContext, preset: &str) -> Result<(usize, u64), StageError> {
    let (epochs, batch) = if preset == "tiny" {
        (10, 32)
    } else {
        (200, 128)
    };
    let epochs = super::schema::optional(ctx, "epochs")
        .and_then(Value::as_u64)
        .unwrap_or(epochs);
    let batch = super::schema::optional(ctx, "batch_size")
        .and_then(Value::as_u64)
        .map_or(batch, |b| b as usize);
    Ok((batch, epochs))
}

/// The ViT, its AdamW and the streamed training sets.
struct VitState {
    vs: VarStore,
    model: VisionTransformer,
    optim: Adam,
    mp: MixedPrecision,
    device: Device,
}

impl Trainable for VitState {
    fn step(&mut self, _step: u64, batch: Option<&Batch>) -> Result<StepReport, StageError> {
        let batch = require_batch(batch)?;
        let x = model_input(batch.images(), self.model.config().image_size, self.device);
        let y = batch.labels(self.device)?;
        let model = &self.model;
        let loss = self
            .mp
            .forward(|| model.forward_t(&x, true).cross_entropy_for_logits(&y))?;
        self.optim.zero_grad();
        self.mp.backward_step(&loss, &mut self.optim);
        Ok(StepReport {
            loss: loss.double_value(&[]),
            metrics: Vec::new(),
        })
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = checkpoint::collect(&self.vs, Some(&self.optim), None);
        out.extend(self.mp.state());
        out
    }

    fn restore(&mut self, state: Vec<(String, Tensor)>) -> Result<(), StageError> {
        let by_name = state
            .iter()
            .map(|(k, t)| (k.clone(), t.shallow_clone()))
            .collect();
        self.mp.restore(&by_name)?;
        let model = state
            .into_iter()
            .filter(|(k, _)| !k.starts_with(MIXED_PREFIX))
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
    for_each_chunk(set, batch, |images| {
        let logits = model.forward_t(&model_input(images, size, device), false);
        let classes = logits.argmax(1, false).to_device(Device::Cpu);
        out.extend(Vec::<i64>::try_from(&classes).map_err(StageError::other)?);
        Ok(())
    })?;
    Ok(out)
}
