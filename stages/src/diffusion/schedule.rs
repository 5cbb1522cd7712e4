//! LDM's "linear" schedule — linear in √β (`make_beta_schedule`), computed in float64 —
//! and every buffer `register_schedule` derives from it. Coefficients are handed to the
//! tensor code rounded to f32, as the checkpoint's float32 buffers are.

use super::DiffusionError;
use tch::{Kind, Tensor};

/// Endpoints of the √β-linear schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BetaSchedule {
    pub beta_start: f64,
    pub beta_end: f64,
    pub num_timesteps: usize,
}

impl BetaSchedule {
    /// Official HistoDiffAug config (`histo-ldm-kl-8.yaml`): 0.0015 → 0.0155, T = 1000.
    pub fn histodiffaug() -> Self {
        Self {
            beta_start: 0.0015,
            beta_end: 0.0155,
            num_timesteps: 1000,
        }
    }

    /// LDM-4 (CelebA / FFHQ / bedrooms) configs: 0.0015 → 0.0195, T = 1000.
    pub fn ldm4() -> Self {
        Self {
            beta_start: 0.0015,
            beta_end: 0.0195,
            num_timesteps: 1000,
        }
    }
}

impl Default for BetaSchedule {
    fn default() -> Self {
        Self::histodiffaug()
    }
}

/// Every per-timestep table of LDM's `DDPM.register_schedule` (v_posterior = 0), f64.
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    pub betas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
    /// ᾱ_{t−1}, with ᾱ_{−1} = 1.
    pub alphas_cumprod_prev: Vec<f64>,
    pub sqrt_alphas_cumprod: Vec<f64>,
    pub sqrt_one_minus_alphas_cumprod: Vec<f64>,
    pub log_one_minus_alphas_cumprod: Vec<f64>,
    pub sqrt_recip_alphas_cumprod: Vec<f64>,
    pub sqrt_recipm1_alphas_cumprod: Vec<f64>,
    /// β̃_t = β_t(1 − ᾱ_{t−1})/(1 − ᾱ_t).
    pub posterior_variance: Vec<f64>,
    /// log max(β̃_t, 1e-20).
    pub posterior_log_variance_clipped: Vec<f64>,
    pub posterior_mean_coef1: Vec<f64>,
    pub posterior_mean_coef2: Vec<f64>,
}

/// Rounds a coefficient through f32, the precision of the reference's buffers.
pub fn as_f32(value: f64) -> f64 {
    value as f32 as f64
}

impl NoiseSchedule {
    pub fn new(config: BetaSchedule) -> Result<Self, DiffusionError> {
        let BetaSchedule {
            beta_start,
            beta_end,
            num_timesteps: n,
        } = config;
        if n < 2 || !(0.0 < beta_start && beta_start <= beta_end && beta_end < 1.0) {
            return Err(DiffusionError::Schedule(format!(
                "need T ≥ 2 and 0 < β_start ≤ β_end < 1, got {config:?}"
            )));
        }
        let (s0, s1) = (beta_start.sqrt(), beta_end.sqrt());
        let betas: Vec<f64> = (0..n)
            .map(|t| (s0 + (t as f64 / (n - 1) as f64) * (s1 - s0)).powi(2))
            .collect();
        let alphas_cumprod: Vec<f64> = betas
            .iter()
            .scan(1.0, |acc, beta| {
                *acc *= 1.0 - beta;
                Some(*acc)
            })
            .collect();
        let alphas_cumprod_prev: Vec<f64> = std::iter::once(1.0)
            .chain(alphas_cumprod[..n - 1].iter().copied())
            .collect();
        let per_t = |f: &dyn Fn(usize) -> f64| (0..n).map(f).collect::<Vec<f64>>();
        let (b, ac, acp) = (&betas, &alphas_cumprod, &alphas_cumprod_prev);
        let posterior_variance = per_t(&|t| b[t] * (1.0 - acp[t]) / (1.0 - ac[t]));
        Ok(Self {
            sqrt_alphas_cumprod: per_t(&|t| ac[t].sqrt()),
            sqrt_one_minus_alphas_cumprod: per_t(&|t| (1.0 - ac[t]).sqrt()),
            log_one_minus_alphas_cumprod: per_t(&|t| (1.0 - ac[t]).ln()),
            sqrt_recip_alphas_cumprod: per_t(&|t| (1.0 / ac[t]).sqrt()),
            sqrt_recipm1_alphas_cumprod: per_t(&|t| (1.0 / ac[t] - 1.0).sqrt()),
            posterior_log_variance_clipped: posterior_variance
                .iter()
                .map(|v| v.max(1e-20).ln())
                .collect(),
            posterior_mean_coef1: per_t(&|t| b[t] * acp[t].sqrt() / (1.0 - ac[t])),
            posterior_mean_coef2: per_t(&|t| (1.0 - acp[t]) * (1.0 - b[t]).sqrt() / (1.0 - ac[t])),
            posterior_variance,
            betas,
            alphas_cumprod,
            alphas_cumprod_prev,
        })
    }

    pub fn num_timesteps(&self) -> usize {
        self.betas.len()
    }

    /// The (T,) float32 buffers under LDM's `LatentDiffusion` names, for checkpoints.
    pub fn buffers(&self) -> Vec<(&'static str, Tensor)> {
        let tables: [(&'static str, &Vec<f64>); 12] = [
            ("betas", &self.betas),
            ("alphas_cumprod", &self.alphas_cumprod),
            ("alphas_cumprod_prev", &self.alphas_cumprod_prev),
            ("sqrt_alphas_cumprod", &self.sqrt_alphas_cumprod),
            (
                "sqrt_one_minus_alphas_cumprod",
                &self.sqrt_one_minus_alphas_cumprod,
            ),
            (
                "log_one_minus_alphas_cumprod",
                &self.log_one_minus_alphas_cumprod,
            ),
            ("sqrt_recip_alphas_cumprod", &self.sqrt_recip_alphas_cumprod),
            (
                "sqrt_recipm1_alphas_cumprod",
                &self.sqrt_recipm1_alphas_cumprod,
            ),
            ("posterior_variance", &self.posterior_variance),
            (
                "posterior_log_variance_clipped",
                &self.posterior_log_variance_clipped,
            ),
            ("posterior_mean_coef1", &self.posterior_mean_coef1),
            ("posterior_mean_coef2", &self.posterior_mean_coef2),
        ];
        tables
            .into_iter()
            .map(|(name, values)| (name, Tensor::from_slice(values).to_kind(Kind::Float)))
            .collect()
    }

    /// table[t] (rounded to f32) for a single timestep.
    pub fn at(&self, table: &[f64], t: i64) -> Result<f64, DiffusionError> {
        usize::try_from(t)
            .ok()
            .and_then(|i| table.get(i))
            .map(|v| as_f32(*v))
            .ok_or(DiffusionError::Timestep {
                t,
                num_timesteps: table.len(),
            })
    }

    /// table[t_b] for every sample, shaped (B, 1, …, 1) like `like`, on its device and kind.
    pub fn extract(
        &self,
        table: &[f64],
        timesteps: &Tensor,
        like: &Tensor,
    ) -> Result<Tensor, DiffusionError> {
        let steps: Vec<i64> = Vec::<i64>::try_from(
            timesteps
                .to_kind(Kind::Int64)
                .to_device(tch::Device::Cpu)
                .flatten(0, -1),
        )
        .map_err(|e| DiffusionError::Schedule(format!("cannot read timesteps: {e}")))?;
        let values: Vec<f32> = steps
            .iter()
            .map(|t| self.at(table, *t).map(|v| v as f32))
            .collect::<Result<_, _>>()?;
        let mut shape = vec![values.len() as i64];
        shape.resize(like.dim().max(1), 1);
        Ok(Tensor::from_slice(&values)
            .reshape(shape)
            .to_kind(like.kind())
            .to_device(like.device()))
    }

    /// Forward process sample z_t = √ᾱ_t z0 + √(1−ᾱ_t) ε.
    pub fn q_sample(
        &self,
        z0: &Tensor,
        timesteps: &Tensor,
        noise: &Tensor,
    ) -> Result<Tensor, DiffusionError> {
        let a = self.extract(&self.sqrt_alphas_cumprod, timesteps, z0)?;
        let s = self.extract(&self.sqrt_one_minus_alphas_cumprod, timesteps, z0)?;
        Ok(a * z0 + s * noise)
    }

    /// x̂0 = √(1/ᾱ_t) z_t − √(1/ᾱ_t − 1) ε (LDM `predict_start_from_noise`).
    pub fn predict_start_from_noise(
        &self,
        x_t: &Tensor,
        timesteps: &Tensor,
        eps: &Tensor,
    ) -> Result<Tensor, DiffusionError> {
        let a = self.extract(&self.sqrt_recip_alphas_cumprod, timesteps, x_t)?;
        let b = self.extract(&self.sqrt_recipm1_alphas_cumprod, timesteps, x_t)?;
        Ok(a * x_t - b * eps)
    }

    /// Posterior q(x_{t−1} | x_t, x0): (mean, variance β̃_t, log β̃_t clipped).
    pub fn q_posterior(
        &self,
        x0: &Tensor,
        x_t: &Tensor,
        timesteps: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor), DiffusionError> {
        let c1 = self.extract(&self.posterior_mean_coef1, timesteps, x_t)?;
        let c2 = self.extract(&self.posterior_mean_coef2, timesteps, x_t)?;
        let var = self.extract(&self.posterior_variance, timesteps, x_t)?;
        let log_var = self.extract(&self.posterior_log_variance_clipped, timesteps, x_t)?;
        Ok((c1 * x0 + c2 * x_t, var, log_var))
    }
}
