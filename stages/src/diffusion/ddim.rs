//! DDIM sampling as LDM's `DDIMSampler` does it (SPEC §4.3): uniform discretisation
//! τ_i = i·c + 1 with c = T // S, a_prev_0 = ᾱ_0 (not 1), σ_i from η, no x̂0 clipping,
//! noise at every step when η > 0, and optional classifier guidance on ε.

use super::guidance::ClassifierGuidance;
use super::schedule::as_f32;
use super::{DiffusionError, NoiseSchedule, NoiseSource};
use tch::{Kind, Tensor};

/// Per-step tables of an S-step DDIM run (all f64, rounded through f32 like LDM's buffers).
#[derive(Debug, Clone, PartialEq)]
pub struct DdimSchedule {
    /// τ_i, ascending.
    pub timesteps: Vec<i64>,
    /// a_i = ᾱ_{τ_i}.
    pub alphas: Vec<f64>,
    /// a_prev_i = ᾱ_{τ_{i−1}}, a_prev_0 = ᾱ_0.
    pub alphas_prev: Vec<f64>,
    /// σ_i = η √((1 − a_prev)/(1 − a)) √(1 − a/a_prev).
    pub sigmas: Vec<f64>,
    pub eta: f64,
}

impl DdimSchedule {
    /// Uniform schedule with `steps` steps. τ_{S−1} = (S−1)·c + 1 must stay below T, which
    /// excludes S = T (LDM would index past its table there).
    pub fn uniform(
        schedule: &NoiseSchedule,
        steps: usize,
        eta: f64,
    ) -> Result<Self, DiffusionError> {
        let n = schedule.num_timesteps();
        let c = n.checked_div(steps).unwrap_or(0);
        if steps == 0 || c == 0 || (steps - 1) * c + 1 >= n || eta < 0.0 {
            return Err(DiffusionError::Steps(format!(
                "{steps} steps (η = {eta}) do not fit a {n}-step schedule"
            )));
        }
        let timesteps: Vec<i64> = (0..steps).map(|i| (i * c + 1) as i64).collect();
        let ac = |t: i64| as_f32(schedule.alphas_cumprod[t as usize]);
        let alphas: Vec<f64> = timesteps.iter().map(|t| ac(*t)).collect();
        let alphas_prev: Vec<f64> = std::iter::once(ac(0))
            .chain(alphas[..steps - 1].iter().copied())
            .collect();
        let sigmas = alphas
            .iter()
            .zip(&alphas_prev)
            .map(|(a, ap)| as_f32(eta * ((1.0 - ap) / (1.0 - a) * (1.0 - a / ap)).sqrt()))
            .collect();
        Ok(Self {
            timesteps,
            alphas,
            alphas_prev,
            sigmas,
            eta,
        })
    }

    pub fn len(&self) -> usize {
        self.timesteps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timesteps.is_empty()
    }
}

/// One DDIM update: x̂0 = (x − √(1−a)ε)/√a; x' = √a_prev x̂0 + √(1 − a_prev − σ²) ε + σ ξ.
/// Returns (x', x̂0). `noise` is required when σ > 0.
pub fn ddim_step(
    xs: &Tensor,
    eps: &Tensor,
    a: f64,
    a_prev: f64,
    sigma: f64,
    noise: Option<&Tensor>,
) -> Result<(Tensor, Tensor), DiffusionError> {
    let x0 = (xs - eps * as_f32((1.0 - a).sqrt())) / as_f32(a.sqrt());
    let direction = eps * as_f32((1.0 - a_prev - sigma * sigma).max(0.0).sqrt());
    let mean = &x0 * as_f32(a_prev.sqrt()) + direction;
    let next = match (sigma > 0.0, noise) {
        (false, _) => mean,
        (true, Some(noise)) => mean + noise * sigma,
        (true, None) => {
            return Err(DiffusionError::Noise(format!(
                "σ = {sigma} > 0 needs a noise tensor"
            )))
        }
    };
    Ok((next, x0))
}

/// Runs the S-step loop from x_T (i = S−1 … 0) and returns x_0 (not x̂0). `eps_model`
/// gets (x, t) with t (B,) int64 filled with τ_i; noise is drawn only when σ_i > 0.
pub fn ddim_sample(
    ddim: &DdimSchedule,
    x_t: &Tensor,
    eps_model: &mut dyn FnMut(&Tensor, &Tensor) -> Tensor,
    mut guidance: Option<&mut ClassifierGuidance<'_>>,
    noise: &mut dyn NoiseSource,
) -> Result<Tensor, DiffusionError> {
    let batch = x_t.size().first().copied().unwrap_or(0);
    let mut xs = x_t.shallow_clone();
    for index in (0..ddim.len()).rev() {
        let timesteps = Tensor::full([batch], ddim.timesteps[index], (Kind::Int64, xs.device()));
        let mut eps = eps_model(&xs, &timesteps);
        if let Some(guide) = guidance.as_deref_mut() {
            eps = guide.guide(&eps, &xs, &timesteps, ddim, index)?;
        }
        let sigma = ddim.sigmas[index];
        let xi = if sigma > 0.0 {
            Some(noise.next_like(&xs)?)
        } else {
            None
        };
        xs = ddim_step(
            &xs,
            &eps,
            ddim.alphas[index],
            ddim.alphas_prev[index],
            sigma,
            xi.as_ref(),
        )?
        .0;
    }
    Ok(xs)
}
