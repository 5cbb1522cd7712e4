//! Named tensor lists: how a training state is flattened into one checkpoint file
//! (prefix per component, PyTorch names inside) and split again on resume.

use histodiff_engine::stage::StageError;
use std::collections::BTreeMap;
use std::fmt::Display;
use tch::nn::VarStore;
use tch::Tensor;

/// A checkpoint's tensors being restored into a run's parts; errors read `checkpoint: …`.
pub struct Restore {
    tensors: Vec<(String, Tensor)>,
    by_name: BTreeMap<String, Tensor>,
}

impl Restore {
    pub fn new(tensors: Vec<(String, Tensor)>) -> Self {
        let by_name = tensors
            .iter()
            .map(|(k, t)| (k.clone(), t.shallow_clone()))
            .collect();
        Self { tensors, by_name }
    }

    /// The variables of `vs`, saved under `prefix`; `what` names them in errors.
    pub fn vars(&self, vs: &VarStore, prefix: &str, what: &str) -> Result<(), StageError> {
        restore_into(vs, &take_prefix(&self.tensors, prefix), |_| true, what).map_err(failed)
    }

    /// A part that restores itself from the tensors by name (an optimizer's or an EMA's
    /// `load_state_tensors`).
    pub fn part<E: Display>(
        &self,
        load: impl FnOnce(&BTreeMap<String, Tensor>) -> Result<(), E>,
    ) -> Result<(), StageError> {
        load(&self.by_name).map_err(failed)
    }

    /// The tensor saved as `name`.
    pub fn tensor(&self, name: &str) -> Result<&Tensor, StageError> {
        self.by_name
            .get(name)
            .ok_or_else(|| failed(format!("lacks `{name}`")))
    }

    pub fn by_name(&self) -> &BTreeMap<String, Tensor> {
        &self.by_name
    }
}

fn failed(e: impl Display) -> StageError {
    StageError::Invalid(format!("checkpoint: {e}"))
}

/// Every variable of `vs` under `prefix`, sorted by name (deterministic file layout).
pub fn vars_with_prefix(vs: &VarStore, prefix: &str) -> Vec<(String, Tensor)> {
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    vars.into_iter()
        .map(|(k, t)| (format!("{prefix}{k}"), t))
        .collect()
}

/// The tensors whose names start with `prefix`, with the prefix removed.
pub fn take_prefix(tensors: &[(String, Tensor)], prefix: &str) -> Vec<(String, Tensor)> {
    tensors
        .iter()
        .filter_map(|(k, t)| {
            k.strip_prefix(prefix)
                .map(|rest| (rest.to_string(), t.shallow_clone()))
        })
        .collect()
}

/// Trainable variables of `vs` (those that require grad), sorted by name.
pub fn trainable(vs: &VarStore) -> Vec<(String, Tensor)> {
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    vars.into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect()
}

/// Copies `tensors` (names without prefix) into the variables of `vs` accepted by `keep`;
/// every kept variable must be present with its shape. `origin` names the source in errors.
pub fn restore_into(
    vs: &VarStore,
    tensors: &[(String, Tensor)],
    keep: impl Fn(&str) -> bool,
    origin: &str,
) -> Result<(), String> {
    let by_name: BTreeMap<&str, &Tensor> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let _guard = tch::no_grad_guard();
    for (name, mut var) in vs.variables() {
        if !keep(&name) {
            continue;
        }
        let src = by_name
            .get(name.as_str())
            .ok_or_else(|| format!("{origin}: lacks `{name}`"))?;
        if src.size() != var.size() {
            return Err(format!(
                "{origin}: `{name}` has shape {:?}, expected {:?}",
                src.size(),
                var.size()
            ));
        }
        var.copy_(&src.to_kind(var.kind()).to_device(var.device()));
    }
    Ok(())
}
