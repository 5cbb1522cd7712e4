//! The diffusion process on plain tensors (SPEC §4): the LDM noise schedule, the ε loss,
//! ancestral DDPM and DDIM sampling, and classifier guidance. Models enter as closures
//! so the same code drives the paper-scale UNet and the test references.

pub mod ddim;
pub mod ddpm;
pub mod guidance;
pub mod loss;
pub mod noise;
pub mod schedule;

pub use ddim::{ddim_sample, ddim_step, DdimSchedule};
pub use ddpm::{ddpm_sample, ddpm_step};
pub use guidance::{
    condition_mean, condition_score, log_prob_gradient, ClassifierGuidance, GuidanceMode,
};
pub use loss::EpsLoss;
pub use noise::{GivenNoise, NoiseSource, SeededNoise};
pub use schedule::{BetaSchedule, NoiseSchedule};

/// A request the diffusion maths cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum DiffusionError {
    #[error("noise schedule: {0}")]
    Schedule(String),
    #[error("timestep {t} outside 0..{num_timesteps}")]
    Timestep { t: i64, num_timesteps: usize },
    #[error("ddim: {0}")]
    Steps(String),
    #[error("noise: {0}")]
    Noise(String),
    #[error("guidance: {0}")]
    Guidance(String),
}
