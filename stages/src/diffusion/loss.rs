//! The ε-prediction objective (SPEC §4.2): per-sample mean over (C, H, W) of the
//! elementwise loss, then the batch mean. L2 is the paper's Eq. 3; L1 is the official
//! config's `loss_type: l1`.

use super::{DiffusionError, NoiseSchedule};
use tch::{Kind, Tensor};

/// Elementwise loss between the predicted and the true noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EpsLoss {
    /// (ε − ε_θ)², paper Eq. 3.
    #[default]
    L2,
    /// |ε − ε_θ|, official HistoDiffAug config.
    L1,
}

impl EpsLoss {
    /// (B,) loss of each sample: mean over every non-batch axis.
    pub fn per_sample(self, prediction: &Tensor, target: &Tensor) -> Tensor {
        let diff = prediction - target;
        let elementwise = match self {
            EpsLoss::L2 => diff.square(),
            EpsLoss::L1 => diff.abs(),
        };
        elementwise.flatten(1, -1).mean_dim(1, false, Kind::Float)
    }

    /// Scalar training loss: batch mean of [`Self::per_sample`].
    pub fn batch_mean(self, prediction: &Tensor, target: &Tensor) -> Tensor {
        self.per_sample(prediction, target).mean(Kind::Float)
    }
}

/// One training objective evaluation: z_t = q_sample(z0, t, ε), loss(ε_θ(z_t, t), ε).
pub fn diffusion_loss(
    schedule: &NoiseSchedule,
    eps_model: &mut dyn FnMut(&Tensor, &Tensor) -> Tensor,
    z0: &Tensor,
    timesteps: &Tensor,
    noise: &Tensor,
    loss: EpsLoss,
) -> Result<Tensor, DiffusionError> {
    let z_t = schedule.q_sample(z0, timesteps, noise)?;
    Ok(loss.batch_mean(&eps_model(&z_t, timesteps), noise))
}
