//! Adam and AdamW whose state we own, so a checkpoint can hold it and a resumed run continues
//! bit for bit (tch's optimizer cannot export its state). The update is torch.optim's
//! single-tensor Adam (the CPU default), operation for operation.

use std::collections::BTreeMap;
use tch::Tensor;

/// Adam hyper-parameters; `Default` is PyTorch's AdamW default with lr 1e-3.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate (schedulers change it with [`Adam::set_lr`]).
    pub lr: f64,
    /// Decay of the first-moment average.
    pub beta1: f64,
    /// Decay of the second-moment average.
    pub beta2: f64,
    /// Added to the root of the second moment.
    pub eps: f64,
    /// Weight decay: decoupled (θ ← θ(1 − lr·wd)) for AdamW, added to the gradient for Adam.
    pub weight_decay: f64,
    /// true: AdamW (Loshchilov & Hutter); false: Adam with L2 in the gradient.
    pub decoupled: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self::adamw(1e-3, 0.01)
    }
}

impl AdamConfig {
    /// torch.optim.AdamW(lr, weight_decay) with betas (0.9, 0.999), eps 1e-8.
    pub fn adamw(lr: f64, weight_decay: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            decoupled: true,
        }
    }

    /// torch.optim.Adam(lr) with betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn adam(lr: f64) -> Self {
        Self {
            weight_decay: 0.0,
            decoupled: false,
            ..Self::adamw(lr, 0.0)
        }
    }
}

/// Per-parameter state, torch's `exp_avg`, `exp_avg_sq`, `step`.
#[derive(Debug)]
pub struct ParamState {
    pub exp_avg: Tensor,
    pub exp_avg_sq: Tensor,
    pub step: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    #[error("optimizer state for parameter `{0}` is missing `{1}`")]
    Missing(String, &'static str),
    #[error("optimizer state `{key}` has shape {found:?}, parameter has {expected:?}")]
    Shape {
        key: String,
        found: Vec<i64>,
        expected: Vec<i64>,
    },
    #[error("optimizer state has entries for unknown parameters: {0}")]
    Unknown(String),
}

/// The optimizer over named parameters (sorted by name, so state files are stable).
#[derive(Debug)]
pub struct Adam {
    config: AdamConfig,
    params: Vec<(String, Tensor)>,
    state: BTreeMap<String, ParamState>,
}

impl Adam {
    /// Optimises every trainable variable of the store.
    pub fn new(vs: &tch::nn::VarStore, config: AdamConfig) -> Self {
        let params = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        Self::from_params(params, config)
    }

    /// Optimises the given tensors (they must require grad), named for the state file.
    pub fn from_params(mut params: Vec<(String, Tensor)>, config: AdamConfig) -> Self {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            config,
            params,
            state: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    pub fn lr(&self) -> f64 {
        self.config.lr
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    /// The parameters, in state order.
    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// Clears every gradient (set to zero, as `zero_grad(set_to_none=False)`).
    pub fn zero_grad(&mut self) {
        for (_, p) in &self.params {
            let mut grad = p.grad();
            if grad.defined() {
                let _ = grad.detach_().zero_();
            }
        }
    }

    /// One update of every parameter that has a gradient.
    pub fn step(&mut self) {
        let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).collect();
        self.step_with(&grads);
    }

    /// One update with the given gradients, in [`Adam::params`] order; a parameter whose
    /// gradient is undefined is skipped, as torch skips a `None` grad (for losses
    /// differentiated with `Tensor::run_backward`, e.g. StyleGAN2's phases).
    pub fn step_with(&mut self, grads: &[Tensor]) {
        let _guard = tch::no_grad_guard();
        let c = self.config;
        for ((name, param), grad) in self.params.iter().zip(grads) {
            if !grad.defined() {
                continue;
            }
            let state = self
                .state
                .entry(name.clone())
                .or_insert_with(|| ParamState {
                    exp_avg: param.zeros_like(),
                    exp_avg_sq: param.zeros_like(),
                    step: 0,
                });
            update(param, grad, state, &c);
        }
    }

    /// State as tensors named `<prefix><param>.exp_avg`, `.exp_avg_sq`, `.step` (int64 scalar).
    pub fn state_tensors(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(3 * self.state.len());
        for (name, s) in &self.state {
            out.push((format!("{prefix}{name}.exp_avg"), s.exp_avg.shallow_clone()));
            out.push((
                format!("{prefix}{name}.exp_avg_sq"),
                s.exp_avg_sq.shallow_clone(),
            ));
            out.push((format!("{prefix}{name}.step"), Tensor::from(s.step)));
        }
        out
    }

    /// Restores state written by [`Adam::state_tensors`]; parameters without state
    /// (never stepped) stay fresh, entries for unknown parameters are an error.
    pub fn load_state_tensors(
        &mut self,
        prefix: &str,
        tensors: &BTreeMap<String, Tensor>,
    ) -> Result<(), OptimError> {
        let mut state = BTreeMap::new();
        for (name, param) in &self.params {
            let key = |field: &str| format!("{prefix}{name}.{field}");
            let Some(step) = tensors.get(&key("step")) else {
                continue;
            };
            let moment = |field: &'static str| -> Result<Tensor, OptimError> {
                let t = tensors
                    .get(&key(field))
                    .ok_or_else(|| OptimError::Missing(name.clone(), field))?;
                if t.size() != param.size() {
                    return Err(OptimError::Shape {
                        key: key(field),
                        found: t.size(),
                        expected: param.size(),
                    });
                }
                Ok(t.to_kind(param.kind()).to_device(param.device()))
            };
            let s = ParamState {
                exp_avg: moment("exp_avg")?,
                exp_avg_sq: moment("exp_avg_sq")?,
                step: step.int64_value(&[]),
            };
            state.insert(name.clone(), s);
        }
        let known: usize = state.len() * 3;
        let ours = tensors.keys().filter(|k| k.starts_with(prefix)).count();
        if ours != known {
            let names: Vec<&str> = self.params.iter().map(|(n, _)| n.as_str()).collect();
            let unknown: Vec<&str> = tensors
                .keys()
                .filter(|k| k.starts_with(prefix))
                .filter(|k| {
                    !names.iter().any(|n| {
                        k.strip_prefix(prefix)
                            .is_some_and(|r| r.starts_with(&format!("{n}.")))
                    })
                })
                .map(String::as_str)
                .collect();
            return Err(OptimError::Unknown(unknown.join(", ")));
        }
        self.state = state;
        Ok(())
    }
}

/// torch.optim.adam `_single_tensor_adam` (no amsgrad, not maximising, not capturable).
/// torch's `addcmul_(a, b, value=v)` computes `self + (v·a)·b`; tch has no `value`, so v is
/// folded into the first factor, which rounds the same way.
fn update(param: &Tensor, grad: &Tensor, s: &mut ParamState, c: &AdamConfig) {
    s.step += 1;
    let mut param = param.shallow_clone();
    let mut grad = grad.shallow_clone();
    if c.weight_decay != 0.0 {
        if c.decoupled {
            let _ = param.g_mul_scalar_(1.0 - c.lr * c.weight_decay);
        } else {
            grad = &grad + &param * c.weight_decay;
        }
    }
    let _ = s.exp_avg.lerp_(&grad, 1.0 - c.beta1);
    let _ = s
        .exp_avg_sq
        .g_mul_scalar_(c.beta2)
        .addcmul_(&(&grad * (1.0 - c.beta2)), &grad);
    // Python evaluates `beta ** step` with a float step: powf, not powi.
    let bias_correction1 = 1.0 - c.beta1.powf(s.step as f64);
    let bias_correction2 = 1.0 - c.beta2.powf(s.step as f64);
    let step_size = c.lr / bias_correction1;
    let denom = (s.exp_avg_sq.sqrt() / bias_correction2.sqrt()).g_add_scalar(c.eps);
    let _ = param.addcdiv_(&(&s.exp_avg * -step_size), &denom);
}
