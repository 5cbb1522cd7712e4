//! The classifier artifacts of the guidance models, both safetensors of an EncoderUNet with
//! attention pooling under the guided-diffusion names: the latent classifier ϕ(z_t, t)
//! (train-latent-classifier's `classifier`, SPEC §5.2) and the image classifier φ on
//! [-1, 1] images with t fixed to 0 (train-image-classifier's `classifier`, SPEC §5.3), or
//! `weights/import`'s of either. The attention pool is sized for one input side, so the
//! configuration (`Preset::latent_classifier` or `Preset::image_classifier`) carries the
//! classes and that side.

use super::{invalid, load_frozen};
use crate::models::unet::{EncoderUNetConfig, EncoderUNetModel};
use histodiff_engine::stage::StageError;
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// A fresh classifier of `config` in `vs`.
pub fn build(vs: &VarStore, config: &EncoderUNetConfig) -> Result<EncoderUNetModel, StageError> {
    EncoderUNetModel::new(&vs.root(), config).map_err(invalid)
}

/// The classifier of `config` from `path`, loaded strictly (every tensor name and shape)
/// and frozen.
pub fn load(
    path: &Path,
    config: &EncoderUNetConfig,
    device: Device,
) -> Result<(VarStore, EncoderUNetModel), StageError> {
    let vs = VarStore::new(device);
    let model = build(&vs, config)?;
    Ok((load_frozen(vs, path)?, model))
}

/// Writes the classifier's weights.
pub fn save(vs: &VarStore, path: &Path) -> Result<(), StageError> {
    crate::weights::save(vs, path).map_err(StageError::other)
}

/// φ's logits for images in [-1, 1] (t = 0).
pub fn classify(phi: &EncoderUNetModel, x: &Tensor, train: bool) -> Tensor {
    let t = Tensor::zeros([x.size()[0]], (Kind::Int64, x.device()));
    phi.forward_t(x, &t, train)
}
