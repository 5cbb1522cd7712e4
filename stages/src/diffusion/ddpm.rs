//! Ancestral DDPM sampling with LDM's fixed-small variance (Σ = β̃_t, no clipping of x̂0)
//! and guided-diffusion's `condition_mean` guidance — the paper's Eq. 7–8.

use super::guidance::{condition_mean, GradientFn};
use super::{DiffusionError, NoiseSchedule, NoiseSource};
use tch::{Kind, Tensor};

/// Guidance of an ancestral step: scale g and ∇ log p(y | z_t) at the current z_t.
pub struct MeanGuidance<'a> {
    pub scale: f64,
    pub gradient: &'a Tensor,
}

/// One step z_t → z_{t−1}: μ = c1·x̂0 + c2·z_t with x̂0 from ε, μ̂ = μ + g·β̃_t·∇ when
/// guided, plus exp(½ log β̃_t)·ξ unless t = 0 (then `noise` may be `None`).
pub fn ddpm_step(
    schedule: &NoiseSchedule,
    x_t: &Tensor,
    t: i64,
    eps: &Tensor,
    guidance: Option<MeanGuidance<'_>>,
    noise: Option<&Tensor>,
) -> Result<Tensor, DiffusionError> {
    let batch = x_t.size().first().copied().unwrap_or(0);
    let timesteps = Tensor::full([batch], t, (Kind::Int64, x_t.device()));
    let x0 = schedule.predict_start_from_noise(x_t, &timesteps, eps)?;
    let (mean, variance, log_variance) = schedule.q_posterior(&x0, x_t, &timesteps)?;
    let mean = match guidance {
        Some(g) => condition_mean(&mean, &variance, g.gradient, g.scale),
        None => mean,
    };
    if t == 0 {
        return Ok(mean);
    }
    let noise =
        noise.ok_or_else(|| DiffusionError::Noise(format!("step t = {t} needs a noise tensor")))?;
    Ok(mean + (log_variance * 0.5).exp() * noise)
}

/// Full ancestral loop t = T−1 … 0 from x_T. `gradient`, when given, returns
/// ∇ log p(y | z_t, t) and is scaled by `scale`.
pub fn ddpm_sample(
    schedule: &NoiseSchedule,
    x_t: &Tensor,
    eps_model: &mut dyn FnMut(&Tensor, &Tensor) -> Tensor,
    mut gradient: Option<(f64, &mut GradientFn<'_>)>,
    noise: &mut dyn NoiseSource,
) -> Result<Tensor, DiffusionError> {
    let batch = x_t.size().first().copied().unwrap_or(0);
    let mut xs = x_t.shallow_clone();
    for t in (0..schedule.num_timesteps() as i64).rev() {
        let timesteps = Tensor::full([batch], t, (Kind::Int64, xs.device()));
        let eps = eps_model(&xs, &timesteps);
        let grad = gradient
            .as_mut()
            .map(|(scale, f)| (*scale, f(&xs, &timesteps)));
        let guidance = grad.as_ref().map(|(scale, g)| MeanGuidance {
            scale: *scale,
            gradient: g,
        });
        let xi = if t > 0 {
            Some(noise.next_like(&xs)?)
        } else {
            None
        };
        xs = ddpm_step(schedule, &xs, t, &eps, guidance, xi.as_ref())?;
    }
    Ok(xs)
}
