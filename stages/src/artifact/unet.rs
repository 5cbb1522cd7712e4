//! The `unet` artifact of train-diffusion (or `weights/import`): safetensors with the UNet
//! under its LDM names, the EMA copy under `ema.*` (`ema.num_updates` included) and the
//! 0-d `scale_factor` s of the latents.

use super::invalid;
use crate::models::unet::UNetModel;
use crate::presets::Preset;
use crate::train::ema::Ema;
use crate::train::named::{restore_into, vars_with_prefix};
use histodiff_engine::stage::StageError;
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// Writes the artifact.
pub fn write(vs: &VarStore, ema: &Ema, scale_factor: f64, path: &Path) -> Result<(), StageError> {
    let mut out = vars_with_prefix(vs, "");
    out.extend(ema.state_tensors("ema."));
    out.push(("scale_factor".into(), Tensor::from(scale_factor as f32)));
    crate::weights::save_tensors(&out, path).map_err(StageError::other)
}

/// The artifact's `scale_factor`.
pub fn read_scale_factor(path: &Path) -> Result<f64, StageError> {
    let tensors = Tensor::read_safetensors(path)
        .map_err(|e| StageError::Invalid(format!("{}: {e}", path.display())))?;
    tensors
        .iter()
        .find(|(k, _)| k == "scale_factor")
        .map(|(_, t)| t.double_value(&[]))
        .ok_or_else(|| {
            StageError::Invalid(format!(
                "{}: no `scale_factor` (not a train-diffusion output?)",
                path.display()
            ))
        })
}

/// A fresh UNet of `preset`.
pub fn build(preset: Preset, device: Device) -> Result<(VarStore, UNetModel), StageError> {
    let vs = VarStore::new(device);
    let unet = UNetModel::new(&vs.root(), &preset.unet()?).map_err(invalid)?;
    Ok((vs, unet))
}

/// The UNet of `preset` with the artifact's weights: the `ema.*` copy when `use_ema`,
/// else the raw weights; every tensor name and shape must match.
pub fn load(
    path: &Path,
    preset: Preset,
    device: Device,
    use_ema: bool,
) -> Result<(VarStore, UNetModel), StageError> {
    let (vs, unet) = build(preset, device)?;
    let tensors = crate::weights::read_tensors(path).map_err(invalid)?;
    let chosen: Vec<(String, Tensor)> = tensors
        .into_iter()
        .filter_map(|(k, t)| match (use_ema, k.strip_prefix("ema.")) {
            (true, Some(rest)) if rest != "num_updates" => Some((rest.to_string(), t)),
            (false, None) if k != "scale_factor" => Some((k, t)),
            _ => None,
        })
        .collect();
    restore_into(&vs, &chosen, |_| true, &path.display().to_string()).map_err(invalid)?;
    Ok((vs, unet))
}

/// Latent channels the UNet takes (its first conv's input width).
pub fn latent_channels(vs: &VarStore) -> i64 {
    vs.variables()
        .get("input_blocks.0.0.weight")
        .map(|w| w.size()[1])
        .unwrap_or(3)
}
