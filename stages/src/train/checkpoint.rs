//! Training checkpoints: one safetensors file per checkpoint holding the model weights under
//! their PyTorch names, the optimizer state (`optim.<param>.exp_avg`, `.exp_avg_sq`, `.step`),
//! the EMA shadow (`ema.<param>`, `ema.num_updates`) and, in the safetensors metadata, the
//! position of the run (step, epoch, data-order position and RNG state). Files are written
//! atomically (temporary file, fsync, rename, fsync of the directory), so a crash leaves
//! either the previous newest checkpoint or the new one, never a torn file.

use super::determinism::DataOrderState;
use super::ema::{Ema, EmaError};
use super::optim::{Adam, OptimError};
use crate::weights::{load_tensors_strict, WeightsError};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Kind, Tensor};

/// Prefix of optimizer-state tensors.
pub const OPTIM_PREFIX: &str = "optim.";
/// Prefix of EMA tensors.
pub const EMA_PREFIX: &str = "ema.";
/// Metadata key holding [`CheckpointMeta`] as JSON.
const META_KEY: &str = "histodiff.checkpoint";

/// Where the run stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Optimizer steps completed.
    pub step: u64,
    /// Epochs completed.
    pub epoch: u64,
    /// Samples of the current epoch's order already consumed.
    pub data_position: u64,
    /// Data-order generator state after the last consumed batch.
    pub data_order: DataOrderState,
    /// Stage-specific values (e.g. the seed, a running loss).
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a histodiff checkpoint: {reason}")]
    Format { path: String, reason: String },
    #[error("tensor `{name}` cannot be stored: {reason}")]
    Tensor { name: String, reason: String },
    #[error("checkpoint model weights: {0}")]
    Model(#[from] WeightsError),
    #[error("checkpoint optimizer state: {0}")]
    Optimizer(#[from] OptimError),
    #[error("checkpoint EMA: {0}")]
    Ema(#[from] EmaError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A checkpoint in memory: every tensor by its stored name, and the metadata.
#[derive(Debug)]
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    pub tensors: BTreeMap<String, Tensor>,
}

impl Checkpoint {
    /// The model weights: every tensor that is neither optimizer state nor EMA.
    pub fn model_tensors(&self) -> Vec<(String, Tensor)> {
        self.tensors
            .iter()
            .filter(|(k, _)| !k.starts_with(OPTIM_PREFIX) && !k.starts_with(EMA_PREFIX))
            .map(|(k, t)| (k.clone(), t.shallow_clone()))
            .collect()
    }
}

/// Everything a checkpoint holds for a model: all its variables (buffers included), and the
/// optimizer and EMA state when given.
pub fn collect(vs: &VarStore, optim: Option<&Adam>, ema: Option<&Ema>) -> Vec<(String, Tensor)> {
    let mut tensors: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, t)| (k, t.detach()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors.extend(
        optim
            .map(|o| o.state_tensors(OPTIM_PREFIX))
            .unwrap_or_default(),
    );
    tensors.extend(ema.map(|e| e.state_tensors(EMA_PREFIX)).unwrap_or_default());
    tensors
}

/// Restores the model strictly, then the optimizer and EMA state when given.
pub fn restore(
    checkpoint: &Checkpoint,
    vs: &mut VarStore,
    optim: Option<&mut Adam>,
    ema: Option<&mut Ema>,
) -> Result<(), CheckpointError> {
    load_tensors_strict(vs, "checkpoint", checkpoint.model_tensors())?;
    if let Some(optim) = optim {
        optim.load_state_tensors(OPTIM_PREFIX, &checkpoint.tensors)?;
    }
    if let Some(ema) = ema {
        ema.load_state_tensors(EMA_PREFIX, &checkpoint.tensors)?;
    }
    Ok(())
}

/// The file name of the checkpoint after `step` steps; zero-padded so names sort by step.
pub fn file_name(step: u64) -> String {
    format!("ckpt-{step:012}.safetensors")
}

/// Step encoded in a checkpoint file name, if it is one.
fn step_of(name: &str) -> Option<u64> {
    name.strip_prefix("ckpt-")?
        .strip_suffix(".safetensors")?
        .parse()
        .ok()
}

/// Writes `tensors` and `meta` to `dir/ckpt-<step>.safetensors` atomically; returns the path.
pub fn save(
    dir: &Path,
    meta: &CheckpointMeta,
    tensors: &[(String, Tensor)],
) -> Result<PathBuf, CheckpointError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let path = dir.join(file_name(meta.step));
    let bytes = serialize(meta, tensors)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name(meta.step),
        std::process::id()
    ));
    {
        let mut file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        file.write_all(&bytes).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    // The rename is durable only once the directory entry is.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(path)
}

/// Serialises to safetensors bytes with the metadata under `histodiff.checkpoint`.
fn serialize(
    meta: &CheckpointMeta,
    tensors: &[(String, Tensor)],
) -> Result<Vec<u8>, CheckpointError> {
    let mut buffers = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let tensor = tensor.to_device(tch::Device::Cpu).contiguous();
        let dtype = dtype_of(tensor.kind()).ok_or_else(|| CheckpointError::Tensor {
            name: name.clone(),
            reason: format!("unsupported kind {:?}", tensor.kind()),
        })?;
        let numel = tensor.numel();
        let mut data = vec![0u8; numel * tensor.kind().elt_size_in_bytes()];
        tensor
            .f_copy_data_u8(&mut data, numel)
            .map_err(|e| CheckpointError::Tensor {
                name: name.clone(),
                reason: e.to_string(),
            })?;
        let shape: Vec<usize> = tensor.size().iter().map(|&d| d as usize).collect();
        buffers.push((name.as_str(), dtype, shape, data));
    }
    let views = buffers
        .iter()
        .map(|(name, dtype, shape, data)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), data)
                .map(|view| (*name, view))
                .map_err(|e| CheckpointError::Tensor {
                    name: name.to_string(),
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let json = serde_json::to_string(meta).expect("checkpoint metadata serialises");
    let info = HashMap::from([(META_KEY.to_string(), json)]);
    safetensors::serialize(views, Some(info)).map_err(|e| CheckpointError::Tensor {
        name: "<file>".into(),
        reason: e.to_string(),
    })
}

/// Reads a checkpoint written by [`save`].
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let format = |reason: String| CheckpointError::Format {
        path: path.display().to_string(),
        reason,
    };
    let bytes = fs::read(path).map_err(io_err(path))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| format(e.to_string()))?;
    let json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| format(format!("no `{META_KEY}` metadata")))?;
    let meta: CheckpointMeta = serde_json::from_str(json).map_err(|e| format(e.to_string()))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| format(e.to_string()))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in file.tensors() {
        let kind = kind_of(view.dtype())
            .ok_or_else(|| format(format!("`{name}` has dtype {:?}", view.dtype())))?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let tensor = Tensor::f_from_data_size(view.data(), &shape, kind)
            .map_err(|e| format(e.to_string()))?;
        tensors.insert(name, tensor);
    }
    Ok(Checkpoint { meta, tensors })
}

/// The checkpoint with the highest step in `dir` (None if there is none or no directory).
pub fn latest(dir: &Path) -> Result<Option<PathBuf>, CheckpointError> {
    Ok(list(dir)?.pop().map(|(_, path)| path))
}

/// Deletes all but the newest `keep` checkpoints of `dir`.
pub fn prune(dir: &Path, keep: usize) -> Result<(), CheckpointError> {
    let all = list(dir)?;
    let excess = all.len().saturating_sub(keep);
    for (_, path) in all.into_iter().take(excess) {
        fs::remove_file(&path).map_err(io_err(&path))?;
    }
    Ok(())
}

/// Checkpoints of `dir` sorted by step (temporary files are not checkpoints).
fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        if let Some(step) = entry.file_name().to_str().and_then(step_of) {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

fn dtype_of(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Bool => Dtype::BOOL,
        Kind::Uint8 => Dtype::U8,
        Kind::Int8 => Dtype::I8,
        Kind::Int16 => Dtype::I16,
        Kind::Int => Dtype::I32,
        Kind::Int64 => Dtype::I64,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Half => Dtype::F16,
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        _ => return None,
    })
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    [
        Kind::Bool,
        Kind::Uint8,
        Kind::Int8,
        Kind::Int16,
        Kind::Int,
        Kind::Int64,
        Kind::BFloat16,
        Kind::Half,
        Kind::Float,
        Kind::Double,
    ]
    .into_iter()
    .find(|k| dtype_of(*k) == Some(dtype))
}
