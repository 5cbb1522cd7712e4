//! The downstream classifier artifact (`histodiffusion/train-classifier`'s `model`, or a
//! ViT made by `weights/import`), read by `histodiffusion/select` (centroid features) and
//! anything that predicts with it: a directory with `model.safetensors` (ViT weights
//! under timm/DINO names), `classifier.json` (architecture, classes, input size),
//! `history.csv` (the loss per step) and `training.json` (how it was trained and which
//! epoch was kept). Also the input pipeline: uint8 NCHW images → float, resized to the
//! model's size, normalised.

use super::{invalid, ImageSet};
use crate::data::selection::l2_normalise;
use crate::models::vit::{VisionTransformer, VitConfig};
use crate::presets::Preset;
use crate::train::driver::HISTORY_HEADER;
use histodiff_engine::stage::StageError;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

pub const MODEL_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "classifier.json";
/// The loss per step (a header only when nothing was trained).
pub const HISTORY_FILE: &str = "history.csv";
/// How the model was trained (or where it was imported from) and which epoch it is.
pub const TRAINING_FILE: &str = "training.json";
/// ImageNet statistics, as the official eval transforms (SPEC §8.2).
pub const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const STD: [f64; 3] = [0.229, 0.224, 0.225];

/// `classifier.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierConfig {
    pub arch: String,
    pub classes: Vec<String>,
    pub image_size: i64,
    pub patch_size: i64,
    pub embed_dim: i64,
    pub depth: i64,
    pub num_heads: i64,
}

impl ClassifierConfig {
    pub fn from_vit(arch: &str, classes: Vec<String>, c: &VitConfig) -> Self {
        ClassifierConfig {
            arch: arch.into(),
            classes,
            image_size: c.image_size,
            patch_size: c.patch_size,
            embed_dim: c.embed_dim,
            depth: c.depth,
            num_heads: c.num_heads,
        }
    }

    pub fn vit(&self) -> VitConfig {
        VitConfig {
            image_size: self.image_size,
            patch_size: self.patch_size,
            embed_dim: self.embed_dim,
            depth: self.depth,
            num_heads: self.num_heads,
            num_classes: self.classes.len() as i64,
            ..VitConfig::base_16(self.classes.len() as i64)
        }
    }
}

/// uint8 NCHW images (on the CPU) as the model's input: float on `device`, resized
/// bilinearly when the set's size differs from the model's, normalised.
pub fn model_input(images: &Tensor, size: i64, device: Device) -> Tensor {
    normalize(&unit_input(images, size, device))
}

/// uint8 NCHW images (on the CPU) as float in [0, 1] on `device`, resized bilinearly when
/// the set's size differs from the model's: the stage where training augments (colour
/// jitter is defined on [0, 1] images, before normalisation).
pub fn unit_input(images: &Tensor, size: i64, device: Device) -> Tensor {
    let s = images.size()[2];
    let x = images.to_device(device).to_kind(Kind::Float) / 255.0;
    if s != size {
        return x.upsample_bilinear2d([size, size], false, None, None);
    }
    x
}

/// Float images in [0, 1] normalised with the ImageNet statistics.
pub fn normalize(x: &Tensor) -> Tensor {
    let device = x.device();
    let mean = Tensor::from_slice(&MEAN)
        .to_kind(Kind::Float)
        .view([1, 3, 1, 1])
        .to_device(device);
    let std = Tensor::from_slice(&STD)
        .to_kind(Kind::Float)
        .view([1, 3, 1, 1])
        .to_device(device);
    (x - mean) / std
}

/// A classifier loaded for inference.
pub struct LoadedClassifier {
    pub config: ClassifierConfig,
    pub model: VisionTransformer,
    pub vs: nn::VarStore,
}

/// Loads a classifier artifact strictly (every key, every shape).
pub fn load(dir: &Path, device: Device) -> Result<LoadedClassifier, StageError> {
    let cfg_path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&cfg_path)
        .map_err(|e| StageError::Invalid(format!("{}: {e}", cfg_path.display())))?;
    let config: ClassifierConfig = serde_json::from_str(&text)
        .map_err(|e| StageError::Invalid(format!("{}: {e}", cfg_path.display())))?;
    let mut vs = nn::VarStore::new(device);
    let model = VisionTransformer::new(&vs.root(), config.vit()).map_err(invalid)?;
    crate::weights::load_strict(&mut vs, &dir.join(MODEL_FILE), |_| false)
        .map_err(|e| StageError::Invalid(e.to_string()))?;
    Ok(LoadedClassifier { config, model, vs })
}

/// Writes a classifier artifact into `dir`.
pub fn save(dir: &Path, config: &ClassifierConfig, vs: &nn::VarStore) -> Result<(), StageError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StageError::Invalid(format!("{}: {e}", dir.display())))?;
    vs.save(dir.join(MODEL_FILE))
        .map_err(|e| StageError::Invalid(format!("{}: {e}", dir.join(MODEL_FILE).display())))?;
    let text = serde_json::to_string_pretty(config).expect("config serialises");
    std::fs::write(dir.join(CONFIG_FILE), text)
        .map_err(|e| StageError::Invalid(format!("{}: {e}", dir.display())))
}

/// Writes a classifier that was not trained here (`weights/import`): its weights and
/// config, an empty loss history and a training record naming the file it came from.
pub fn save_imported(
    dir: &Path,
    config: &ClassifierConfig,
    vs: &nn::VarStore,
    source: &str,
    preset: Preset,
) -> Result<(), StageError> {
    save(dir, config, vs)?;
    let record = serde_json::json!({
        "format": "histodiff/classifier-training",
        "imported": source,
        "preset": preset,
        "chosen": serde_json::Value::Null,
    });
    let text = serde_json::to_string_pretty(&record).map_err(StageError::other)?;
    write_file(&dir.join(HISTORY_FILE), HISTORY_HEADER)?;
    write_file(&dir.join(TRAINING_FILE), &text)
}

/// Writes one file of the artifact.
pub fn write_file(path: &Path, text: &str) -> Result<(), StageError> {
    std::fs::write(path, text).map_err(|e| StageError::Invalid(format!("{}: {e}", path.display())))
}

impl LoadedClassifier {
    /// The CLS token after the final LayerNorm of every image of `set`, L2-normalised:
    /// the features of selective augmentation (SPEC §7.2).
    pub fn normalised_features(&self, set: &ImageSet) -> Result<Vec<Vec<f32>>, StageError> {
        let device = self.vs.device();
        let _guard = tch::no_grad_guard();
        let mut out = Vec::with_capacity(set.len());
        set.for_each_chunk(64, |images| {
            let x = model_input(images, self.config.image_size, device);
            let f = self
                .model
                .features_t(&x, false)
                .to_device(Device::Cpu)
                .to_kind(Kind::Float);
            let rows: Vec<Vec<f32>> = Vec::<Vec<f32>>::try_from(&f).map_err(StageError::other)?;
            out.extend(rows.into_iter().map(|mut r| {
                l2_normalise(&mut r);
                r
            }));
            Ok::<(), StageError>(())
        })?;
        Ok(out)
    }
}
