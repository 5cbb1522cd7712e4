//! Adam and AdamW with their state (moments and step count) as named tensors, so a
//! checkpoint restores the optimizer exactly (tch's own optimizer keeps its state out of
//! reach). The update follows `torch.optim.Adam`/`AdamW` (non-amsgrad, non-foreach
//! formulas); M3's `train::optim` supersedes this once merged.

use tch::Tensor;

/// Hyper-parameters; `decoupled` selects AdamW's weight decay (p ← p·(1 − lr·wd)),
/// otherwise Adam's L2 term (g ← g + wd·p).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub decoupled: bool,
}

impl AdamConfig {
    /// `torch.optim.Adam(lr, betas)`, no weight decay.
    pub fn adam(lr: f64, beta1: f64, beta2: f64) -> Self {
        Self {
            lr,
            beta1,
            beta2,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }

    /// `torch.optim.AdamW(lr, weight_decay)` with default betas (0.9, 0.999).
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
}

/// One optimizer over a fixed list of named parameters.
#[derive(Debug)]
pub struct Adam {
    config: AdamConfig,
    params: Vec<(String, Tensor)>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    steps: i64,
}

impl Adam {
    /// `params`: (name, variable) pairs; the names key the saved state.
    pub fn new(params: Vec<(String, Tensor)>, config: AdamConfig) -> Self {
        let zeros = |p: &Tensor| p.zeros_like().detach();
        let exp_avg = params.iter().map(|(_, p)| zeros(p)).collect();
        let exp_avg_sq = params.iter().map(|(_, p)| zeros(p)).collect();
        Self {
            config,
            params,
            exp_avg,
            exp_avg_sq,
            steps: 0,
        }
    }

    /// Clears the gradients of this optimizer's parameters.
    pub fn zero_grad(&mut self) {
        for (_, p) in &self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// One update with the configured learning rate times `lr_scale` (warm-up).
    pub fn step(&mut self, lr_scale: f64) {
        let _guard = tch::no_grad_guard();
        self.steps += 1;
        let c = self.config;
        let lr = c.lr * lr_scale;
        let bias1 = 1.0 - c.beta1.powi(self.steps as i32);
        let bias2_sqrt = (1.0 - c.beta2.powi(self.steps as i32)).sqrt();
        for (i, (_, p)) in self.params.iter().enumerate() {
            let grad = p.grad();
            if !grad.defined() {
                continue;
            }
            let mut p = p.shallow_clone();
            let grad = if c.weight_decay != 0.0 && !c.decoupled {
                &grad + &p * c.weight_decay
            } else {
                grad
            };
            if c.weight_decay != 0.0 && c.decoupled {
                let _ = p.g_mul_scalar_(1.0 - lr * c.weight_decay);
            }
            let m = &mut self.exp_avg[i];
            let _ = m.g_mul_scalar_(c.beta1);
            let _ = m.g_add_(&(&grad * (1.0 - c.beta1)));
            let v = &mut self.exp_avg_sq[i];
            let _ = v.g_mul_scalar_(c.beta2);
            let _ = v.g_add_(&(&grad * &grad * (1.0 - c.beta2)));
            let denom = v.sqrt() / bias2_sqrt + c.eps;
            let _ = p.g_sub_(&(&*m / &denom * (lr / bias1)));
        }
    }

    /// Moments under `exp_avg.<name>` / `exp_avg_sq.<name>` and the step count `steps`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("steps".to_string(), Tensor::from(self.steps))];
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.push((format!("exp_avg.{name}"), self.exp_avg[i].shallow_clone()));
            out.push((
                format!("exp_avg_sq.{name}"),
                self.exp_avg_sq[i].shallow_clone(),
            ));
        }
        out
    }

    /// Restores [`Adam::state`]; every parameter's moments must be present.
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<(), String> {
        let find = |key: &str| {
            state
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, t)| t.shallow_clone())
                .ok_or_else(|| format!("optimizer state lacks `{key}`"))
        };
        self.steps = find("steps")?.int64_value(&[]);
        let _guard = tch::no_grad_guard();
        for (i, (name, p)) in self.params.iter().enumerate() {
            for (slot, store) in [
                ("exp_avg", &mut self.exp_avg[i]),
                ("exp_avg_sq", &mut self.exp_avg_sq[i]),
            ] {
                let t = find(&format!("{slot}.{name}"))?;
                if t.size() != p.size() {
                    return Err(format!(
                        "optimizer `{slot}.{name}` has shape {:?}, expected {:?}",
                        t.size(),
                        p.size()
                    ));
                }
                store.copy_(&t.to_device(p.device()));
            }
        }
        Ok(())
    }
}
