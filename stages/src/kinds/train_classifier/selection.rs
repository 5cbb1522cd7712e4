//! Checkpoint selection of `histodiffusion/train-classifier` (`select: best_val`): a
//! stratified validation split carved from the *real training set* (the first `train`
//! input; synthetic images stay in training, since the choice should measure real
//! images), evaluated after every epoch; the weights of the best epoch are kept and are
//! the model the stage writes. The test set never reaches this module: the validation set
//! is built from the training inputs only, and the test set is read after training.

use crate::artifact::classifier::model_input;
use crate::artifact::invalid;
use crate::artifact::{ImageSet, ImageSetWriter, DEFAULT_SHARD_SIZE};
use crate::data::subset::{complement, select, PerClass, SubsetSize};
use crate::models::vit::VisionTransformer;
use crate::train::data_order::mix;
use histodiff_engine::stage::StageError;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

/// Mixed into the seed so the split is not the data order's or a `data/subset` choice.
const SPLIT_STREAM: u64 = 0x0076_616c; // "val"
/// Checkpoint prefix of the selection state (kept apart from the model's variables).
pub const PREFIX: &str = "select.";
const BEST: &str = "select.best";
const BEST_WEIGHTS: &str = "select.best.";
const HISTORY: &str = "select.history";

/// The real training set split in two, written under a scratch directory.
#[derive(Debug)]
pub struct CarvedSplit {
    pub train: PathBuf,
    pub val: PathBuf,
    pub n_train: usize,
    pub n_val: usize,
}

/// Splits `real` into a training part and a validation part of round(fraction · n_c)
/// images of each class c (the `data/subset` rule), chosen by `seed`; both are written
/// under `scratch` (rewritten identically on a resumed run).
pub fn carve(
    real: &Path,
    fraction: f64,
    seed: u64,
    scratch: &Path,
) -> Result<CarvedSplit, StageError> {
    let set = ImageSet::open(real)?;
    let manifest = set.manifest();
    let labels: Vec<i64> = manifest
        .items
        .iter()
        .map(|i| i.label.unwrap_or(-1))
        .collect();
    let classes = manifest.classes.len();
    let size = SubsetSize::Fraction(fraction);
    let chosen = select(
        &labels,
        classes,
        PerClass::Stratified,
        size,
        mix(seed, SPLIT_STREAM),
    )
    .map_err(invalid)?;
    if chosen.is_empty() || chosen.len() == labels.len() {
        return Err(StageError::Invalid(format!(
            "val_fraction {fraction} of the {} real training images leaves {} for validation: \
             choose a fraction that keeps images on both sides",
            labels.len(),
            chosen.len()
        )));
    }
    let _ = std::fs::remove_dir_all(scratch);
    let (train, val) = (scratch.join("train"), scratch.join("val"));
    let writer = |dir: &Path| {
        ImageSetWriter::create(
            dir,
            manifest.classes.clone(),
            manifest.image_size,
            DEFAULT_SHARD_SIZE,
        )
        .map_err(invalid)
    };
    let (mut to_train, mut to_val) = (writer(&train)?, writer(&val)?);
    let mut next = chosen.iter().peekable();
    set.for_each(|index, chw, label| {
        let source = manifest.items[index].source.clone();
        let out = if next.peek() == Some(&&index) {
            next.next();
            &mut to_val
        } else {
            &mut to_train
        };
        out.push_chw(chw, label, source).map_err(invalid)
    })?;
    to_train.finish().map_err(invalid)?;
    to_val.finish().map_err(invalid)?;
    Ok(CarvedSplit {
        train,
        val,
        n_train: complement(labels.len(), &chosen).len(),
        n_val: chosen.len(),
    })
}

/// Accuracy and mean cross-entropy of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub accuracy: f64,
    pub loss: f64,
}

impl Score {
    /// Higher accuracy wins; equal accuracy goes to the lower loss (a small validation
    /// set ties often, and the earliest tie would favour under-trained epochs).
    fn beats(&self, other: &Score) -> bool {
        self.accuracy > other.accuracy
            || (self.accuracy == other.accuracy && self.loss < other.loss)
    }
}

/// The best epoch so far and its weights.
struct Best {
    score: Score,
    epoch: u64,
    weights: Vec<(String, Tensor)>,
}

/// Validation after every epoch and the best weights.
pub struct Selection {
    val: ImageSet,
    labels: Vec<i64>,
    steps_per_epoch: u64,
    batch: usize,
    device: Device,
    best: Option<Best>,
    /// (epoch, step, accuracy, loss) of every evaluation.
    history: Vec<[f64; 4]>,
}

impl Selection {
    pub fn new(
        val: &Path,
        steps_per_epoch: u64,
        batch: usize,
        device: Device,
    ) -> Result<Self, StageError> {
        let val = ImageSet::open(val)?;
        let labels = val
            .manifest()
            .items
            .iter()
            .map(|i| i.label.unwrap_or(-1))
            .collect();
        Ok(Self {
            val,
            labels,
            steps_per_epoch: steps_per_epoch.max(1),
            batch,
            device,
            best: None,
            history: Vec::new(),
        })
    }

    /// After step `step`: at the end of an epoch, evaluates the model and keeps its
    /// weights when they are the best so far; returns the score it measured.
    pub fn after_step(
        &mut self,
        step: u64,
        model: &VisionTransformer,
        vs: &VarStore,
    ) -> Result<Option<Score>, StageError> {
        let done = step + 1;
        if !done.is_multiple_of(self.steps_per_epoch) {
            return Ok(None);
        }
        let epoch = done / self.steps_per_epoch;
        let score = self.evaluate(model)?;
        self.history
            .push([epoch as f64, done as f64, score.accuracy, score.loss]);
        if self.best.as_ref().is_none_or(|b| score.beats(&b.score)) {
            self.best = Some(Best {
                score,
                epoch,
                weights: copy_weights(vs),
            });
        }
        Ok(Some(score))
    }

    /// Accuracy and mean cross-entropy on the validation set (eval mode, no gradients).
    fn evaluate(&self, model: &VisionTransformer) -> Result<Score, StageError> {
        let _guard = tch::no_grad_guard();
        let size = model.config().image_size;
        let (mut right, mut loss_sum, mut seen) = (0i64, 0.0f64, 0usize);
        self.val.for_each_chunk(self.batch, |images| {
            let n = images.size()[0] as usize;
            let truth = Tensor::from_slice(&self.labels[seen..seen + n]).to_device(self.device);
            let logits = model.forward_t(&model_input(images, size, self.device), false);
            right += logits
                .argmax(1, false)
                .eq_tensor(&truth)
                .sum(Kind::Int64)
                .int64_value(&[]);
            let loss =
                logits.cross_entropy_loss::<Tensor>(&truth, None, tch::Reduction::Sum, -100, 0.0);
            loss_sum += loss.double_value(&[]);
            seen += n;
            Ok::<(), StageError>(())
        })?;
        let n = seen.max(1) as f64;
        Ok(Score {
            accuracy: right as f64 / n,
            loss: loss_sum / n,
        })
    }

    /// Copies the best epoch's weights into `vs` and describes the choice; `None` when no
    /// epoch was evaluated.
    pub fn install_best(&self, vs: &mut VarStore) -> Result<Option<Value>, StageError> {
        let Some(best) = &self.best else {
            return Ok(None);
        };
        crate::weights::load_tensors_strict(vs, "best validation epoch", clones(&best.weights))
            .map_err(invalid)?;
        Ok(Some(json!({
            "rule": "best_val",
            "epoch": best.epoch,
            "step": best.epoch * self.steps_per_epoch,
            "val_accuracy": best.score.accuracy,
            "val_loss": best.score.loss,
        })))
    }

    /// `epoch,step,val_accuracy,val_loss` lines of every evaluation.
    pub fn history_csv(&self) -> String {
        let mut out = String::from("epoch,step,val_accuracy,val_loss\n");
        for [e, s, a, l] in &self.history {
            out.push_str(&format!("{e},{s},{a},{l}\n"));
        }
        out
    }

    /// The selection state for a checkpoint: the best weights, its score and epoch, the
    /// history.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        if let Some(b) = &self.best {
            let meta = [b.score.accuracy, b.score.loss, b.epoch as f64];
            out.push((BEST.to_string(), Tensor::from_slice(&meta)));
            for (k, t) in &b.weights {
                out.push((format!("{BEST_WEIGHTS}{k}"), t.shallow_clone()));
            }
        }
        if !self.history.is_empty() {
            let flat: Vec<f64> = self.history.iter().flatten().copied().collect();
            out.push((HISTORY.to_string(), Tensor::from_slice(&flat).view([-1, 4])));
        }
        out
    }

    /// Restores [`Selection::state`] from a checkpoint's tensors.
    pub fn restore(&mut self, state: &BTreeMap<String, Tensor>) -> Result<(), StageError> {
        self.history = match state.get(HISTORY) {
            Some(t) => rows(t)?,
            None => Vec::new(),
        };
        self.best = match state.get(BEST) {
            None => None,
            Some(meta) => {
                let m =
                    Vec::<f64>::try_from(&meta.to_kind(Kind::Double)).map_err(StageError::other)?;
                let [accuracy, loss, epoch] = m[..] else {
                    return Err(StageError::Invalid(format!(
                        "checkpoint: `{BEST}` is not 3 numbers"
                    )));
                };
                let weights = state
                    .iter()
                    .filter_map(|(k, t)| {
                        k.strip_prefix(BEST_WEIGHTS)
                            .map(|n| (n.to_string(), t.shallow_clone()))
                    })
                    .collect();
                Some(Best {
                    score: Score { accuracy, loss },
                    epoch: epoch as u64,
                    weights,
                })
            }
        };
        Ok(())
    }
}

/// The (N, 4) history tensor as rows.
fn rows(t: &Tensor) -> Result<Vec<[f64; 4]>, StageError> {
    let flat =
        Vec::<f64>::try_from(&t.to_kind(Kind::Double).flatten(0, -1)).map_err(StageError::other)?;
    if flat.len() % 4 != 0 {
        return Err(StageError::Invalid(format!(
            "checkpoint: `{HISTORY}` is not (N, 4)"
        )));
    }
    Ok(flat.chunks(4).map(|c| [c[0], c[1], c[2], c[3]]).collect())
}

/// A detached copy of every variable (the live ones keep training).
fn copy_weights(vs: &VarStore) -> Vec<(String, Tensor)> {
    let _guard = tch::no_grad_guard();
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    vars.into_iter()
        .map(|(k, t)| (k, t.detach().copy()))
        .collect()
}

fn clones(weights: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    weights
        .iter()
        .map(|(k, t)| (k.clone(), t.shallow_clone()))
        .collect()
}
