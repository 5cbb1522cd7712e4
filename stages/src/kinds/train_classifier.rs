//! `histodiffusion/train-classifier`: the downstream ViT (SPEC §8) trained on real plus
//! selected synthetic images, then run on the test set. Checkpoints (model, AdamW state,
//! step, epoch, data order) go under the stage key's checkpoint directory every
//! `checkpoint_every` steps, every `checkpoint_minutes`, and on interrupt; a rerun resumes
//! from the newest. Dropout/drop-path noise is seeded per step, the data order per epoch,
//! so on CPU a resumed run ends byte-identical to an uninterrupted one.

use super::classifier::{batches, device_of, model_input, save, ClassifierConfig};
use super::schema::{float, int, invalid, lr_param, one_of, param, slot, usize_param};
use crate::artifact::{ImageBatch, ImageSet};
use crate::models::vit::{VisionTransformer, VitConfig};
use crate::report::results::{write, Predictions, PREDICTIONS_FORMAT};
use crate::train::checkpoint::{self, CheckpointMeta};
use crate::train::determinism::{seed_torch_for_step, set_threads, DataOrder};
use crate::train::optim::{Adam, AdamConfig};
use histodiff_engine::protocol::Event;
use histodiff_engine::registry::KindSpec;
use histodiff_engine::stage::{Stage, StageContext, StageError};
use serde_json::Value;
use std::time::Instant;
use tch::nn::ModuleT;

pub struct TrainClassifier;

/// First line of `history.csv` (one `step,loss` line per optimizer step follows).
const HISTORY_HEADER: &str = "step,loss\n";

impl Stage for TrainClassifier {
    fn spec(&self) -> KindSpec {
        KindSpec {
            name: "histodiffusion/train-classifier".into(),
            version: 1,
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
        let (train, classes, n_real) = load_train(ctx)?;
        let test = ImageSet::open(&ctx.input("test")?.path)?;
        if test.manifest().classes != classes {
            return Err(StageError::Invalid(format!(
                "test classes {:?} differ from training classes {classes:?}",
                test.manifest().classes
            )));
        }
        let preset = ctx.param_str("preset")?.to_string();
        let k = classes.len() as i64;
        let (vit, epochs, batch) = match preset.as_str() {
            "tiny" => (VitConfig::tiny(k), 10, 32),
            "official" => (VitConfig::small_16(k), 200, 128),
            _ => (VitConfig::base_16(k), 200, 128),
        };
        let epochs = super::schema::optional(ctx, "epochs")
            .and_then(Value::as_u64)
            .unwrap_or(epochs);
        let batch = super::schema::optional(ctx, "batch_size")
            .and_then(Value::as_u64)
            .map_or(batch, |b| b as usize);
        vit.validate().map_err(invalid)?;
        let device = device_of(ctx.device())?;
        set_threads(ctx.job.threads);
        let seed = ctx.param_i64("seed")? as u64;
        tch::manual_seed(seed as i64);
        let mut vs = tch::nn::VarStore::new(device);
        let model = VisionTransformer::new(&vs.root(), vit.clone()).map_err(invalid)?;
        let mut optim = Adam::new(
            &vs,
            AdamConfig::adamw(ctx.param_f64("lr")?, ctx.param_f64("weight_decay")?),
        );
        let loop_state = Loop {
            epochs,
            batch,
            seed,
            n: train.len(),
        };
        let history = loop_state.train(ctx, &model, &mut vs, &mut optim, &train)?;

        let config = ClassifierConfig::from_vit(&format!("vit-{preset}"), classes.clone(), &vit);
        save(&ctx.output_path("model"), &config, &vs)?;
        let history_path = ctx.output_path("model").join("history.csv");
        std::fs::write(&history_path, history)
            .map_err(|e| StageError::Invalid(format!("{}: {e}", history_path.display())))?;
        let test_batch = test.load_all()?;
        let predicted = predict(&model, &test_batch, vit.image_size, batch, device)?;
        let truth = test_batch.labels.clone().unwrap_or_default();
        let predictions = Predictions {
            format: PREDICTIONS_FORMAT.into(),
            classes,
            truth,
            predicted,
            sources: test
                .manifest()
                .items
                .iter()
                .map(|i| i.source.clone())
                .collect(),
            train_real: Some(n_real as u64),
            train_synthetic: Some((train.len() - n_real) as u64),
        };
        write(&ctx.output_path("predictions"), &predictions).map_err(invalid)?;
        Ok(())
    }
}

/// Concatenates the training sets (classes must agree); the first is counted as real.
fn load_train(ctx: &StageContext) -> Result<(ImageBatch, Vec<String>, usize), StageError> {
    let mut all: Option<ImageBatch> = None;
    let mut classes = Vec::new();
    let mut n_real = 0;
    for (i, artifact) in ctx.inputs("train").iter().enumerate() {
        let set = ImageSet::open(&artifact.path)?;
        let b = set.load_all()?;
        if i == 0 {
            classes = set.manifest().classes.clone();
            n_real = b.len();
        } else if set.manifest().classes != classes {
            return Err(StageError::Invalid(format!(
                "{}: classes differ from the first training set",
                artifact.producer
            )));
        }
        match &mut all {
            None => all = Some(b),
            Some(a) if a.image_size == b.image_size => {
                a.images.extend(b.images);
                if let (Some(x), Some(y)) = (&mut a.labels, b.labels) {
                    x.extend(y);
                }
            }
            Some(a) => {
                return Err(StageError::Invalid(format!(
                    "{}: {} px images, the first set has {} px",
                    artifact.producer, b.image_size, a.image_size
                )))
            }
        }
    }
    let all = all.ok_or_else(|| StageError::Invalid("input `train` is empty".into()))?;
    if all.labels.is_none() || classes.is_empty() {
        return Err(StageError::Invalid("training sets must be labeled".into()));
    }
    Ok((all, classes, n_real))
}

/// The fixed shape of training: what a checkpoint must agree with to resume.
struct Loop {
    epochs: u64,
    batch: usize,
    seed: u64,
    n: usize,
}

impl Loop {
    fn train(
        &self,
        ctx: &mut StageContext,
        model: &VisionTransformer,
        vs: &mut tch::nn::VarStore,
        optim: &mut Adam,
        data: &ImageBatch,
    ) -> Result<String, StageError> {
        let steps_per_epoch = self.n.div_ceil(self.batch) as u64;
        let total = self.epochs * steps_per_epoch;
        let mut history = String::from(HISTORY_HEADER);
        let (mut step, mut epoch, mut position, mut order) =
            (0u64, 0u64, 0usize, DataOrder::new(self.seed));
        if let Some(path) = checkpoint::latest(ctx.checkpoint_dir()).map_err(invalid)? {
            let ckpt = checkpoint::load(&path).map_err(invalid)?;
            checkpoint::restore(&ckpt, vs, Some(optim), None).map_err(invalid)?;
            (step, epoch, position) = (
                ckpt.meta.step,
                ckpt.meta.epoch,
                ckpt.meta.data_position as usize,
            );
            order = DataOrder::from_state(&ckpt.meta.data_order).map_err(invalid)?;
            history = ckpt
                .meta
                .extra
                .get("history")
                .cloned()
                .unwrap_or_else(|| HISTORY_HEADER.into());
            ctx.log(format!("resumed from {} at step {step}", path.display()));
        }
        let labels = data.labels.as_ref().expect("checked labeled");
        let every = usize_param(ctx, "checkpoint_every")? as u64;
        let minutes = ctx.param_f64("checkpoint_minutes")?;
        let mut last_save = Instant::now();
        let device = vs.device();
        let size = model.config().image_size;
        while epoch < self.epochs {
            // The order of an epoch is regenerated from the state saved at its start.
            let epoch_start = order.state();
            let perm = order.permutation(self.n);
            while position < self.n {
                let idx: Vec<usize> = perm[position..(position + self.batch).min(self.n)].to_vec();
                seed_torch_for_step(self.seed, step);
                let x = model_input(data, &idx, size, device);
                let y =
                    tch::Tensor::from_slice(&idx.iter().map(|&i| labels[i]).collect::<Vec<i64>>())
                        .to_device(device);
                let loss = model.forward_t(&x, true).cross_entropy_for_logits(&y);
                optim.zero_grad();
                loss.backward();
                optim.step();
                position += idx.len();
                step += 1;
                let value = loss.double_value(&[]);
                ctx.progress(step, total, Some(value));
                ctx.metric("train/loss", Some(step), value);
                history += &format!("{step},{value}\n");
                let due = (every > 0 && step % every == 0)
                    || (minutes > 0.0 && last_save.elapsed().as_secs_f64() > minutes * 60.0);
                if due || ctx.interrupted() {
                    let meta = CheckpointMeta {
                        step,
                        epoch,
                        data_position: position as u64,
                        data_order: epoch_start.clone(),
                        extra: [("history".to_string(), history.clone())].into(),
                    };
                    self.save(ctx, vs, optim, &meta)?;
                    last_save = Instant::now();
                    if ctx.interrupted() {
                        return Err(StageError::Interrupted { step });
                    }
                }
            }
            epoch += 1;
            position = 0;
        }
        Ok(history)
    }

    fn save(
        &self,
        ctx: &mut StageContext,
        vs: &tch::nn::VarStore,
        optim: &Adam,
        meta: &CheckpointMeta,
    ) -> Result<(), StageError> {
        let tensors = checkpoint::collect(vs, Some(optim), None);
        let path = checkpoint::save(ctx.checkpoint_dir(), meta, &tensors).map_err(invalid)?;
        checkpoint::prune(ctx.checkpoint_dir(), 2).map_err(invalid)?;
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        ctx.emit(&Event::Checkpoint {
            step: meta.step,
            file,
        });
        Ok(())
    }
}

/// Predicted class of every image of `set` (eval mode, no gradients).
pub fn predict(
    model: &VisionTransformer,
    set: &ImageBatch,
    size: i64,
    batch: usize,
    device: tch::Device,
) -> Result<Vec<i64>, StageError> {
    let _guard = tch::no_grad_guard();
    let mut out = Vec::with_capacity(set.len());
    for idx in batches(set.len(), batch) {
        let logits = model.forward_t(&model_input(set, &idx, size, device), false);
        let classes = logits.argmax(1, false).to_device(tch::Device::Cpu);
        out.extend(Vec::<i64>::try_from(&classes).map_err(StageError::other)?);
    }
    Ok(out)
}
