//! Training checkpoints, the one format of every resumable kind (docs/checkpoints.md):
//! `ckpt-<12-digit step>.safetensors` in the stage key's checkpoint directory, holding every
//! tensor of the training state (model weights under their PyTorch names, the optimizer
//! state `optim.<param>.exp_avg|.exp_avg_sq|.step`, the EMA shadow `ema.<param>`, or a
//! kind's own prefixes) and, in the safetensors metadata, where the run stands
//! ([`CheckpointMeta`]) and a blake3 hash of the tensors.
//!
//! Files are written atomically (temporary file, fsync, rename, fsync of the directory), so
//! a crash leaves the previous checkpoint or the new one. The hash catches what atomicity
//! cannot (a disk or a copy that corrupted a file later): [`resume`] sets a damaged newest
//! checkpoint aside and falls back to the previous one, so a multi-day run loses
//! `checkpoint_every` steps instead of everything.

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
/// Metadata key holding [`StoredMeta`] as JSON.
const META_KEY: &str = "histodiff.checkpoint";
/// Metadata key holding the hex blake3 hash of the tensors ([`content_hash`]).
const HASH_KEY: &str = "histodiff.content_hash";
/// Format tag and version written into every checkpoint.
const FORMAT: &str = "histodiff/checkpoint";
const FORMAT_VERSION: u32 = 2;
/// Suffix given to a checkpoint that failed to load, so it is kept for inspection but
/// never read again.
pub const DAMAGED_SUFFIX: &str = ".damaged";

/// Where the run stands. The data order and every random draw are functions of the seed
/// and the step (train::data_order, train::determinism), so the step is the whole position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Steps completed (optimizer steps, or finished batches for sampling).
    pub step: u64,
    /// Stage-specific values (e.g. the loss history of the run so far).
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}

/// The metadata as stored: the run's position under a format tag.
#[derive(Debug, Serialize, Deserialize)]
struct StoredMeta {
    format: String,
    version: u32,
    #[serde(flatten)]
    meta: CheckpointMeta,
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

/// [`restore`] from the tensors the driver hands to `Trainable::restore`.
pub fn restore_tensors(
    tensors: Vec<(String, Tensor)>,
    vs: &mut VarStore,
    optim: Option<&mut Adam>,
    ema: Option<&mut Ema>,
) -> Result<(), CheckpointError> {
    let checkpoint = Checkpoint {
        meta: CheckpointMeta {
            step: 0,
            extra: BTreeMap::new(),
        },
        tensors: tensors.into_iter().collect(),
    };
    restore(&checkpoint, vs, optim, ema)
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

/// One tensor's bytes on the CPU, ready for safetensors.
pub(crate) struct Buffer {
    pub(crate) name: String,
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<usize>,
    pub(crate) data: Vec<u8>,
}

/// A tensor's bytes on the CPU, as safetensors stores them.
pub(crate) fn buffer(name: &str, tensor: &Tensor) -> Result<Buffer, CheckpointError> {
    let bad = |reason: String| CheckpointError::Tensor {
        name: name.to_string(),
        reason,
    };
    let tensor = tensor.to_device(tch::Device::Cpu).contiguous();
    let dtype = dtype_of(tensor.kind())
        .ok_or_else(|| bad(format!("unsupported kind {:?}", tensor.kind())))?;
    let numel = tensor.numel();
    let mut data = vec![0u8; numel * tensor.kind().elt_size_in_bytes()];
    tensor
        .f_copy_data_u8(&mut data, numel)
        .map_err(|e| bad(e.to_string()))?;
    let shape = tensor.size().iter().map(|&d| d as usize).collect();
    Ok(Buffer {
        name: name.to_string(),
        dtype,
        shape,
        data,
    })
}

/// blake3 over every tensor in name order: name, dtype, shape, then the bytes, each
/// length-prefixed, so that no two different states hash alike.
fn content_hash<'a>(
    tensors: impl Iterator<Item = (&'a str, Dtype, &'a [usize], &'a [u8])>,
) -> String {
    let mut sorted: Vec<_> = tensors.collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut hasher = blake3::Hasher::new();
    for (name, dtype, shape, data) in sorted {
        for field in [name.as_bytes(), format!("{dtype:?}").as_bytes()] {
            hasher.update(&(field.len() as u64).to_le_bytes());
            hasher.update(field);
        }
        hasher.update(&(shape.len() as u64).to_le_bytes());
        for d in shape {
            hasher.update(&(*d as u64).to_le_bytes());
        }
        hasher.update(&(data.len() as u64).to_le_bytes());
        hasher.update(data);
    }
    hasher.finalize().to_hex().to_string()
}

/// Serialises to safetensors bytes with the metadata and the content hash.
fn serialize(
    meta: &CheckpointMeta,
    tensors: &[(String, Tensor)],
) -> Result<Vec<u8>, CheckpointError> {
    let buffers = tensors
        .iter()
        .map(|(name, t)| buffer(name, t))
        .collect::<Result<Vec<_>, _>>()?;
    let hash = content_hash(buffers.iter().map(|b| {
        (
            b.name.as_str(),
            b.dtype,
            b.shape.as_slice(),
            b.data.as_slice(),
        )
    }));
    let views = buffers
        .iter()
        .map(|b| {
            safetensors::tensor::TensorView::new(b.dtype, b.shape.clone(), &b.data)
                .map(|view| (b.name.as_str(), view))
                .map_err(|e| CheckpointError::Tensor {
                    name: b.name.clone(),
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let stored = StoredMeta {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        meta: meta.clone(),
    };
    let json = serde_json::to_string(&stored).expect("checkpoint metadata serialises");
    let info = HashMap::from([(META_KEY.to_string(), json), (HASH_KEY.to_string(), hash)]);
    safetensors::serialize(views, Some(info)).map_err(|e| CheckpointError::Tensor {
        name: "<file>".into(),
        reason: e.to_string(),
    })
}

/// Reads a checkpoint written by [`save`], checking its format and content hash.
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let format = |reason: String| CheckpointError::Format {
        path: path.display().to_string(),
        reason,
    };
    let bytes = fs::read(path).map_err(io_err(path))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| format(e.to_string()))?;
    let info = header.metadata().as_ref();
    let field = |key: &str| {
        info.and_then(|m| m.get(key))
            .ok_or_else(|| format(format!("no `{key}` metadata")))
    };
    let stored: StoredMeta =
        serde_json::from_str(field(META_KEY)?).map_err(|e| format(e.to_string()))?;
    if stored.format != FORMAT || stored.version != FORMAT_VERSION {
        return Err(format(format!(
            "format {} v{}, expected {FORMAT} v{FORMAT_VERSION}",
            stored.format, stored.version
        )));
    }
    let expected = field(HASH_KEY)?.clone();
    let file = SafeTensors::deserialize(&bytes).map_err(|e| format(e.to_string()))?;
    let views = file.tensors();
    let found = content_hash(
        views
            .iter()
            .map(|(name, v)| (name.as_str(), v.dtype(), v.shape(), v.data())),
    );
    if found != expected {
        return Err(format(format!(
            "content hash {found} differs from the recorded {expected}: the file is damaged"
        )));
    }
    let mut tensors = BTreeMap::new();
    for (name, view) in views {
        let kind = kind_of(view.dtype())
            .ok_or_else(|| format(format!("`{name}` has dtype {:?}", view.dtype())))?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let tensor = Tensor::f_from_data_size(view.data(), &shape, kind)
            .map_err(|e| format(e.to_string()))?;
        tensors.insert(name, tensor);
    }
    Ok(Checkpoint {
        meta: stored.meta,
        tensors,
    })
}

/// What [`resume`] found in a checkpoint directory.
#[derive(Debug, Default)]
pub struct Resumption {
    /// The newest checkpoint that loaded and matched its hash, with its path.
    pub checkpoint: Option<(PathBuf, Checkpoint)>,
    /// Newer checkpoints that did not, renamed with [`DAMAGED_SUFFIX`], and why.
    pub set_aside: Vec<(PathBuf, String)>,
}

/// The newest valid checkpoint of `dir`. A newer one that does not parse or fails its hash
/// is renamed `<file>.damaged` (kept for inspection, never read again) and the previous one
/// is tried, so one torn or corrupted file does not end a multi-day run.
pub fn resume(dir: &Path) -> Result<Resumption, CheckpointError> {
    let mut found = Resumption::default();
    for (_, path) in list(dir)?.into_iter().rev() {
        match load(&path) {
            Ok(checkpoint) => {
                found.checkpoint = Some((path, checkpoint));
                break;
            }
            Err(e @ (CheckpointError::Format { .. } | CheckpointError::Io { .. })) => {
                let mut aside = path.clone().into_os_string();
                aside.push(DAMAGED_SUFFIX);
                let aside = PathBuf::from(aside);
                fs::rename(&path, &aside).map_err(io_err(&path))?;
                found.set_aside.push((aside, e.to_string()));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(found)
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

/// Checkpoints of `dir` sorted by step (temporary and damaged files are not checkpoints).
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
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
