//! Checkpoint files of one stage key: `step-<12 digits>.safetensors` in the key's
//! checkpoint directory, each holding every tensor of the training state. A file is
//! written under a temporary name and renamed into place, so a crash leaves either the
//! previous checkpoint or the new one, never half of one. Older files are pruned.

use std::path::{Path, PathBuf};
use tch::Tensor;

/// Checkpoints kept after a write (the newest and one before it).
const KEEP: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint directory {dir}: {source}")]
    Io { dir: String, source: std::io::Error },
    #[error("checkpoint {file}: {source}")]
    Tensors { file: String, source: tch::TchError },
}

/// A checkpoint found on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Steps completed when it was written.
    pub step: u64,
    pub path: PathBuf,
}

fn file_name(step: u64) -> String {
    format!("step-{step:012}.safetensors")
}

fn parse_step(name: &str) -> Option<u64> {
    name.strip_prefix("step-")?
        .strip_suffix(".safetensors")?
        .parse()
        .ok()
}

fn io(dir: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        dir: dir.display().to_string(),
        source,
    }
}

/// Every checkpoint in `dir`, oldest first (empty when the directory does not exist).
pub fn list(dir: &Path) -> Result<Vec<Checkpoint>, CheckpointError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        if let Some(step) = name.to_str().and_then(parse_step) {
            found.push(Checkpoint {
                step,
                path: entry.path(),
            });
        }
    }
    found.sort_by_key(|c| c.step);
    Ok(found)
}

/// The newest checkpoint, if any.
pub fn newest(dir: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    Ok(list(dir)?.pop())
}

/// Writes `tensors` to `path` as safetensors (CPU, contiguous), via a temporary file.
pub fn write_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), CheckpointError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".tmp-{}",
        path.file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default()
    ));
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                t.detach().to_device(tch::Device::Cpu).contiguous(),
            )
        })
        .collect();
    Tensor::write_safetensors(&cpu, &tmp).map_err(|source| CheckpointError::Tensors {
        file: tmp.display().to_string(),
        source,
    })?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(dir))?;
    std::fs::rename(&tmp, path).map_err(io(dir))
}

/// Writes `tensors` as the checkpoint of `step` atomically and prunes older ones.
pub fn write(
    dir: &Path,
    step: u64,
    tensors: &[(String, Tensor)],
) -> Result<Checkpoint, CheckpointError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(file_name(step));
    write_tensors(&path, tensors)?;
    let all = list(dir)?;
    for old in all.iter().take(all.len().saturating_sub(KEEP)) {
        std::fs::remove_file(&old.path).map_err(io(dir))?;
    }
    Ok(Checkpoint { step, path })
}

/// Reads every tensor of a checkpoint.
pub fn read(checkpoint: &Checkpoint) -> Result<Vec<(String, Tensor)>, CheckpointError> {
    Tensor::read_safetensors(&checkpoint.path).map_err(|source| CheckpointError::Tensors {
        file: checkpoint.path.display().to_string(),
        source,
    })
}
