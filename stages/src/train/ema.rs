//! Exponential moving average of the trainable weights, as LDM's `LitEma` (SPEC §4.2):
//! after every training batch n ← n + 1, d = min(decay, (1 + n)/(10 + n)) and
//! shadow ← shadow − (1 − d)(shadow − θ). The shadow is keyed by the parameter's own name
//! (LitEma strips dots for buffer names; we keep names and write `ema.<param>` in checkpoints,
//! and read LitEma's layout with [`Ema::load_litema`]).

use std::collections::BTreeMap;
use tch::{nn::VarStore, Tensor};

/// LitEma's buffer name for a parameter: the name without dots
/// (`model.diffusion_model.out.0.weight` → `modeldiffusion_modelout0weight`), as stored
/// under `model_ema.` in LDM checkpoints.
pub fn litema_name(param: &str) -> String {
    param.replace('.', "")
}

#[derive(Debug, thiserror::Error)]
pub enum EmaError {
    #[error("parameters `{0}` and `{1}` have the same LitEma name `{2}`")]
    LitEmaCollision(String, String, String),
    #[error("EMA shadow and model differ: missing [{missing}], unexpected [{unexpected}]")]
    Keys { missing: String, unexpected: String },
    #[error("EMA shadow `{key}` has shape {found:?}, the model has {expected:?}")]
    Shape {
        key: String,
        found: Vec<i64>,
        expected: Vec<i64>,
    },
}

/// The shadow weights and the update count n.
#[derive(Debug)]
pub struct Ema {
    decay: f64,
    warmup: bool,
    num_updates: i64,
    shadow: BTreeMap<String, Tensor>,
}

impl Ema {
    /// Shadows every trainable variable of `vs`, starting from its current values.
    /// `warmup` enables LitEma's (1 + n)/(10 + n) ramp (timm's ModelEmaV2 has none).
    pub fn new(vs: &VarStore, decay: f64, warmup: bool) -> Self {
        let _guard = tch::no_grad_guard();
        let shadow = trainable(vs)
            .into_iter()
            .map(|(k, t)| (k, t.detach().copy()))
            .collect();
        Self {
            decay,
            warmup,
            num_updates: 0,
            shadow,
        }
    }

    /// Number of updates so far (n).
    pub fn num_updates(&self) -> i64 {
        self.num_updates
    }

    /// The decay the next update will use.
    pub fn next_decay(&self) -> f64 {
        let n = (self.num_updates + 1) as f64;
        if self.warmup {
            self.decay.min((1.0 + n) / (10.0 + n))
        } else {
            self.decay
        }
    }

    /// One EMA step towards the current weights of `vs`.
    pub fn update(&mut self, vs: &VarStore) {
        let _guard = tch::no_grad_guard();
        let one_minus_decay = 1.0 - self.next_decay();
        self.num_updates += 1;
        let vars = vs.variables();
        for (name, shadow) in self.shadow.iter_mut() {
            if let Some(param) = vars.get(name) {
                let delta = (&*shadow - param) * one_minus_decay;
                let _ = shadow.g_sub_(&delta);
            }
        }
    }

    /// The shadow tensor of one parameter.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.shadow.get(name)
    }

    /// Writes the shadow into the model (e.g. before evaluating or exporting EMA weights).
    pub fn copy_to(&self, vs: &VarStore) {
        let _guard = tch::no_grad_guard();
        let vars = vs.variables();
        for (name, shadow) in &self.shadow {
            if let Some(var) = vars.get(name) {
                let mut var = var.shallow_clone();
                var.copy_(shadow);
            }
        }
    }

    /// Shadow tensors named `<prefix><param>` plus `<prefix>num_updates` (int64 scalar).
    pub fn state_tensors(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .shadow
            .iter()
            .map(|(k, t)| (format!("{prefix}{k}"), t.shallow_clone()))
            .collect();
        out.push((
            format!("{prefix}num_updates"),
            Tensor::from(self.num_updates),
        ));
        out
    }

    /// Restores what [`Ema::state_tensors`] wrote; the key set must match exactly.
    pub fn load_state_tensors(
        &mut self,
        prefix: &str,
        tensors: &BTreeMap<String, Tensor>,
    ) -> Result<(), EmaError> {
        let counter = format!("{prefix}num_updates");
        let theirs: Vec<&str> = tensors
            .keys()
            .filter(|k| **k != counter)
            .filter_map(|k| k.strip_prefix(prefix))
            .collect();
        let missing: Vec<&str> = self
            .shadow
            .keys()
            .map(String::as_str)
            .filter(|k| !theirs.contains(k))
            .collect();
        let unexpected: Vec<&str> = theirs
            .iter()
            .copied()
            .filter(|k| !self.shadow.contains_key(*k))
            .collect();
        if !missing.is_empty() || !unexpected.is_empty() || !tensors.contains_key(&counter) {
            let missing = if tensors.contains_key(&counter) {
                missing
            } else {
                [missing, vec!["num_updates"]].concat()
            };
            return Err(EmaError::Keys {
                missing: missing.join(", "),
                unexpected: unexpected.join(", "),
            });
        }
        let _guard = tch::no_grad_guard();
        for (name, shadow) in self.shadow.iter_mut() {
            let value = &tensors[&format!("{prefix}{name}")];
            if value.size() != shadow.size() {
                return Err(EmaError::Shape {
                    key: name.clone(),
                    found: value.size(),
                    expected: shadow.size(),
                });
            }
            shadow.copy_(value);
        }
        self.num_updates = tensors[&counter].int64_value(&[]);
        Ok(())
    }
}

impl Ema {
    /// Loads a LitEma state (`<prefix><name without dots>` for each parameter, plus
    /// `<prefix>num_updates` when present, e.g. prefix `model_ema.` of an LDM checkpoint);
    /// `our_name` maps our parameter names to the checkpoint's (before dots are dropped).
    pub fn load_litema(
        &mut self,
        prefix: &str,
        tensors: &BTreeMap<String, Tensor>,
        our_name: impl Fn(&str) -> String,
    ) -> Result<(), EmaError> {
        let mut mapped: BTreeMap<String, Tensor> = BTreeMap::new();
        let mut owner: BTreeMap<String, String> = BTreeMap::new();
        for name in self.shadow.keys() {
            let key = format!("{prefix}{}", litema_name(&our_name(name)));
            if let Some(other) = owner.insert(key.clone(), name.clone()) {
                return Err(EmaError::LitEmaCollision(other, name.clone(), key));
            }
            if let Some(t) = tensors.get(&key) {
                mapped.insert(format!("ema.{name}"), t.shallow_clone());
            }
        }
        let count = tensors
            .get(&format!("{prefix}num_updates"))
            .map_or(0, |t| t.int64_value(&[]));
        mapped.insert("ema.num_updates".into(), Tensor::from(count));
        self.load_state_tensors("ema.", &mapped)
    }
}

/// Trainable variables by name (LitEma shadows only parameters that require grad).
fn trainable(vs: &VarStore) -> Vec<(String, Tensor)> {
    vs.variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn;

    #[test]
    fn litema_layout_loads_by_dotless_name() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _w = vs
            .root()
            .sub("out")
            .sub(0)
            .var("weight", &[2], nn::Init::Const(0.0));
        let mut ema = Ema::new(&vs, 0.9999, true);
        let tensors = BTreeMap::from([
            (
                "model_ema.diffusion_modelout0weight".to_string(),
                Tensor::from_slice(&[1.0f32, 2.0]),
            ),
            ("model_ema.num_updates".to_string(), Tensor::from(42i64)),
        ]);
        ema.load_litema("model_ema.", &tensors, |n| format!("diffusion_model.{n}"))
            .unwrap();
        assert_eq!(ema.num_updates(), 42);
        assert_eq!(
            Vec::<f32>::try_from(ema.get("out.0.weight").unwrap()).unwrap(),
            vec![1.0, 2.0]
        );
        // A missing shadow is an error, not a silently kept initial value.
        assert!(ema
            .load_litema("other.", &tensors, |n| n.to_string())
            .is_err());
    }
}
