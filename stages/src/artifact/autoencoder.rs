//! The autoencoder artifact: train-autoencoder's and finetune-decoder's `autoencoder` (or
//! `weights/import`'s), safetensors of the whole AE under the LDM names (`encoder.*`,
//! `decoder.*`, `quant_conv.*`, `post_quant_conv.*`).

use super::{invalid, load_frozen};
use crate::models::autoencoder::AutoencoderKL;
use crate::presets::Preset;
use histodiff_engine::stage::StageError;
use std::path::Path;
use tch::nn::VarStore;
use tch::Device;

/// Writes the AE's weights.
pub fn save(vs: &VarStore, path: &Path) -> Result<(), StageError> {
    crate::weights::save(vs, path).map_err(StageError::other)
}

/// The AE of `preset` from `path`, loaded strictly (every tensor name and shape) and
/// frozen, as the kinds downstream of the AE use it.
pub fn load(
    path: &Path,
    preset: Preset,
    device: Device,
) -> Result<(VarStore, AutoencoderKL), StageError> {
    let vs = VarStore::new(device);
    let ae = AutoencoderKL::new(&vs.root(), preset.autoencoder()?.0).map_err(invalid)?;
    Ok((load_frozen(vs, path)?, ae))
}
