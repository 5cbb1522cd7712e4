//! The StyleGAN2 generator artifact: stylegan2/train's `generator`, or an official snapshot
//! converted by scripts/convert_checkpoint.py: the G_ema weights under
//! `G_ema.<official name>`, the architecture as JSON in the `histodiff.stylegan2`
//! safetensors metadata (docs/weights.md).

use super::invalid;
use crate::models::stylegan2::{Generator, Stylegan2Config};
use crate::train::named::vars_with_prefix;
use histodiff_engine::stage::StageError;
use std::collections::HashMap;
use std::path::Path;
use tch::nn::VarStore;
use tch::Device;

/// Metadata key of the architecture.
pub const CONFIG_KEY: &str = "histodiff.stylegan2";

/// Writes G_ema (the `G_ema.*` variables of `vs`) with its architecture.
pub fn write(vs: &VarStore, config: &Stylegan2Config, path: &Path) -> Result<(), StageError> {
    let json = serde_json::to_string(config).map_err(StageError::other)?;
    let tensors = vars_with_prefix(vs, "G_ema.");
    crate::weights::save_tensors_with_metadata(
        &tensors,
        HashMap::from([(CONFIG_KEY.to_string(), json)]),
        path,
    )
    .map_err(StageError::Invalid)
}

/// G_ema, built from the recorded architecture and loaded strictly.
pub fn load(path: &Path, device: Device) -> Result<(VarStore, Generator), StageError> {
    let meta = crate::weights::read_metadata(path).map_err(StageError::Invalid)?;
    let json = meta.get(CONFIG_KEY).ok_or_else(|| {
        StageError::Invalid(format!(
            "{}: not a StyleGAN2 generator artifact (no `{CONFIG_KEY}` metadata; convert official snapshots with scripts/convert_checkpoint.py stylegan2)",
            path.display()
        ))
    })?;
    let config: Stylegan2Config = serde_json::from_str(json)
        .map_err(|e| StageError::Invalid(format!("{}: `{CONFIG_KEY}`: {e}", path.display())))?;
    let mut vs = VarStore::new(device);
    let g = Generator::new(&vs.root(), &config)
        .map_err(|e| StageError::Invalid(format!("{}: {e}", path.display())))?;
    // Keys outside `G_ema.` stay as they are, so the strict load names them as unexpected.
    let tensors = crate::weights::read_tensors(path)
        .map_err(invalid)?
        .into_iter()
        .map(|(k, t)| (k.strip_prefix("G_ema.").map(str::to_string).unwrap_or(k), t))
        .collect();
    crate::weights::load_tensors_strict(&mut vs, &path.display().to_string(), tensors)
        .map_err(invalid)?;
    vs.freeze();
    Ok((vs, g))
}
