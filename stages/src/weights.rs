//! Strict weight loading: tch's `VarStore::load` ignores extra keys and silently adopts
//! the file's dtype. Here every missing and unexpected key is reported, shapes are
//! checked, and values are copied into the store's own dtype on purpose.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use tch::{nn::VarStore, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{file}: cannot read safetensors: {source}")]
    Read { file: String, source: tch::TchError },
    #[error("{file}: weights do not match the model: missing keys [{missing}], unexpected keys [{unexpected}]")]
    Keys {
        file: String,
        missing: String,
        unexpected: String,
    },
    #[error("{file}: `{key}` has shape {found:?}, the model expects {expected:?}")]
    Shape {
        file: String,
        key: String,
        found: Vec<i64>,
        expected: Vec<i64>,
    },
    #[error("{file}: cannot write safetensors: {source}")]
    Write { file: String, source: tch::TchError },
}

/// Reads every tensor of a safetensors file.
pub fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>, WeightsError> {
    Tensor::read_safetensors(path).map_err(|source| WeightsError::Read {
        file: path.display().to_string(),
        source,
    })
}

/// Loads `path` into `vs`, requiring exactly the same key set (after dropping keys for
/// which `ignore` returns true, e.g. BatchNorm's `num_batches_tracked`).
pub fn load_strict(
    vs: &mut VarStore,
    path: &Path,
    ignore: impl Fn(&str) -> bool,
) -> Result<(), WeightsError> {
    let file = path.display().to_string();
    let tensors: Vec<(String, Tensor)> = read_tensors(path)?
        .into_iter()
        .filter(|(k, _)| !ignore(k))
        .collect();
    load_tensors_strict(vs, &file, tensors)
}

/// Loads the tensors of `path` whose keys start with `file_prefix` into the variables of
/// `vs` whose names start with `store_prefix` (prefixes swapped), strictly on that subset:
/// every such variable must be in the file and every such key in the store. Other keys and
/// variables are left alone. E.g. an AE checkpoint's `loss.` keys into a loss store built at
/// the root (`"loss."`, `""`), or a user's LPIPS file into `perceptual_loss.` (`""`,
/// `"perceptual_loss."`).
pub fn load_strict_prefixed(
    vs: &mut VarStore,
    path: &Path,
    file_prefix: &str,
    store_prefix: &str,
) -> Result<(), WeightsError> {
    let file = path.display().to_string();
    let tensors: Vec<(String, Tensor)> = read_tensors(path)?
        .into_iter()
        .filter_map(|(k, t)| {
            k.strip_prefix(file_prefix)
                .map(|rest| (format!("{store_prefix}{rest}"), t))
        })
        .collect();
    let vars: HashMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .filter(|(k, _)| k.starts_with(store_prefix))
        .collect();
    copy_strict(&vars, &file, tensors)
}

/// Same as [`load_strict`] from tensors already in memory; `origin` names them in errors.
pub fn load_tensors_strict(
    vs: &mut VarStore,
    origin: &str,
    tensors: Vec<(String, Tensor)>,
) -> Result<(), WeightsError> {
    copy_strict(&vs.variables(), origin, tensors)
}

/// Copies `tensors` into `vars`, requiring the same key set and shapes; `origin` names
/// them in errors. For a subset of a store, pass only that subset's variables.
pub fn copy_strict(
    vars: &HashMap<String, Tensor>,
    origin: &str,
    tensors: Vec<(String, Tensor)>,
) -> Result<(), WeightsError> {
    let file_keys: BTreeSet<&str> = tensors.iter().map(|(k, _)| k.as_str()).collect();
    let model_keys: BTreeSet<&str> = vars.keys().map(String::as_str).collect();
    let missing: Vec<&str> = model_keys.difference(&file_keys).copied().collect();
    let unexpected: Vec<&str> = file_keys.difference(&model_keys).copied().collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(WeightsError::Keys {
            file: origin.to_string(),
            missing: missing.join(", "),
            unexpected: unexpected.join(", "),
        });
    }
    let _guard = tch::no_grad_guard();
    for (key, value) in tensors {
        let mut var = vars[&key].shallow_clone();
        if var.size() != value.size() {
            return Err(WeightsError::Shape {
                file: origin.to_string(),
                key,
                found: value.size(),
                expected: var.size(),
            });
        }
        var.copy_(&value.to_kind(var.kind()).to_device(var.device()));
    }
    Ok(())
}

/// Saves every variable of `vs` under its PyTorch name, so `safetensors.torch.load_file`
/// reads it back into the reference module.
pub fn save(vs: &VarStore, path: &Path) -> Result<(), WeightsError> {
    let named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    save_tensors(&named, path)
}

/// Writes named tensors (moved to the CPU) as a safetensors artifact.
pub fn save_tensors(tensors: &[(String, Tensor)], path: &Path) -> Result<(), WeightsError> {
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.detach().to_device(tch::Device::Cpu)))
        .collect();
    Tensor::write_safetensors(&cpu, path).map_err(|source| WeightsError::Write {
        file: path.display().to_string(),
        source,
    })
}

/// Writes named tensors with string metadata (e.g. an architecture as JSON), so an artifact
/// says how to rebuild its model.
pub fn save_tensors_with_metadata(
    tensors: &[(String, Tensor)],
    metadata: std::collections::HashMap<String, String>,
    path: &Path,
) -> Result<(), String> {
    let buffers = tensors
        .iter()
        .map(|(name, t)| crate::train::checkpoint::buffer(name, &t.detach()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let views = buffers
        .iter()
        .map(|b| {
            safetensors::tensor::TensorView::new(b.dtype, b.shape.clone(), &b.data)
                .map(|view| (b.name.as_str(), view))
                .map_err(|e| format!("{}: {e}", b.name))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize_to_file(views, Some(metadata), path)
        .map_err(|e| format!("{}: cannot write safetensors: {e}", path.display()))
}

/// The string metadata of a safetensors file (empty when it has none).
pub fn read_metadata(path: &Path) -> Result<std::collections::HashMap<String, String>, String> {
    use std::io::Read;
    let fail = |e: String| format!("{}: cannot read safetensors header: {e}", path.display());
    let mut file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| fail(e.to_string()))?;
    let n = u64::from_le_bytes(len);
    if n > 100_000_000 {
        return Err(fail(format!("header of {n} bytes")));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header)
        .map_err(|e| fail(e.to_string()))?;
    let json: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| fail(e.to_string()))?;
    Ok(json
        .get("__metadata__")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default())
}
