//! Classifier guidance (SPEC §4.4): the gradient ∇_{z_t} log p_ϕ(y | z_t) by autograd,
//! the DDIM form `condition_score` (ε̂ = ε − g·√(1−ᾱ_t)·∇) and the ancestral form
//! `condition_mean` (μ̂ = μ + g·Σ·∇), plus the official HistoDiffAug variant as an
//! explicit option.

use super::{DdimSchedule, DiffusionError};
use tch::{Kind, Tensor};

/// Multiplier hard-coded in HistoDiffAug's `p_sample_ddim`.
pub const OFFICIAL_MULTIPLIER: f64 = 10.0;
/// HistoDiffAug indexes its S-step ᾱ table with ⌊t / 20⌋ (right only for S = 50).
pub const OFFICIAL_INDEX_DIVISOR: i64 = 20;

/// ∇_{x} Σ_b log softmax(classifier(x, t))_{b, y_b}, computed on a detached copy of x so
/// each sample gets its own gradient; works inside `no_grad` sampling loops.
pub fn log_prob_gradient(
    classifier: &dyn Fn(&Tensor, &Tensor) -> Tensor,
    xs: &Tensor,
    timesteps: &Tensor,
    labels: &Tensor,
) -> Tensor {
    tch::with_grad(|| {
        let x_in = xs.detach().set_requires_grad(true);
        let log_probs = classifier(&x_in, timesteps).log_softmax(-1, Kind::Float);
        let selected = log_probs.gather(
            1,
            &labels
                .to_kind(Kind::Int64)
                .to_device(xs.device())
                .unsqueeze(1),
            false,
        );
        let grads = Tensor::run_backward(&[selected.sum(Kind::Float)], &[&x_in], false, false);
        grads
            .into_iter()
            .next()
            .unwrap_or_else(|| x_in.zeros_like())
            .to_kind(xs.kind())
    })
}

/// ε̂ = ε − scale·√(1 − ᾱ)·∇ (guided-diffusion `condition_score`).
pub fn condition_score(eps: &Tensor, gradient: &Tensor, alpha_bar: f64, scale: f64) -> Tensor {
    eps - gradient * (scale * (1.0 - alpha_bar).sqrt())
}

/// μ̂ = μ + scale·Σ·∇ (guided-diffusion `condition_mean`); `variance` broadcasts.
pub fn condition_mean(mean: &Tensor, variance: &Tensor, gradient: &Tensor, scale: f64) -> Tensor {
    mean + variance * gradient * scale
}

/// (z_t, t) → ∇_{z_t} log p(y | z_t, t), the class labels bound by the caller.
pub type GradientFn<'a> = dyn FnMut(&Tensor, &Tensor) -> Tensor + 'a;

/// Which ᾱ and multiplier the DDIM guidance uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GuidanceMode {
    /// √(1 − ᾱ_{τ_i}) of the current step, multiplier 1 (paper, Song et al.).
    #[default]
    ConditionScore,
    /// HistoDiffAug's code: ×10 and √(1 − ddim_alphas[⌊τ/20⌋]); fails when the index
    /// leaves the S-step table (e.g. S = 10) where the original would crash.
    OfficialCompat,
}

/// Guidance of a DDIM run: ε ← ε − m·scale·√(1 − ᾱ)·∇ log p(y | z_t).
pub struct ClassifierGuidance<'a> {
    /// g (paper: 1.0).
    pub scale: f64,
    pub mode: GuidanceMode,
    /// (z_t, t) → ∇_{z_t} log p(y | z_t, t), labels bound by the caller.
    pub gradient: Box<GradientFn<'a>>,
}

impl ClassifierGuidance<'_> {
    /// Guided ε at DDIM step `index` (timestep τ = ddim.timesteps[index]).
    pub fn guide(
        &mut self,
        eps: &Tensor,
        xs: &Tensor,
        timesteps: &Tensor,
        ddim: &DdimSchedule,
        index: usize,
    ) -> Result<Tensor, DiffusionError> {
        let tau = ddim.timesteps[index];
        let (alpha_bar, multiplier) = match self.mode {
            GuidanceMode::ConditionScore => (ddim.alphas[index], 1.0),
            GuidanceMode::OfficialCompat => (official_alpha(ddim, tau)?, OFFICIAL_MULTIPLIER),
        };
        let gradient = (self.gradient)(xs, timesteps);
        Ok(condition_score(
            eps,
            &gradient,
            alpha_bar,
            multiplier * self.scale,
        ))
    }
}

/// ddim_alphas[⌊τ/20⌋] as HistoDiffAug reads it.
pub fn official_alpha(ddim: &DdimSchedule, tau: i64) -> Result<f64, DiffusionError> {
    let index = tau / OFFICIAL_INDEX_DIVISOR;
    ddim.alphas.get(index as usize).copied().ok_or_else(|| {
        DiffusionError::Guidance(format!(
            "official-compat guidance reads ddim_alphas[{tau}/20 = {index}] of a {}-step table (only S = 50 is what the code intends)",
            ddim.alphas.len()
        ))
    })
}
