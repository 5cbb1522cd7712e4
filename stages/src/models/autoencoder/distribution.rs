//! The diagonal Gaussian posterior q(z | x) of the KL autoencoder (SPEC §2.4).

use super::config::AutoencoderError;
use tch::Tensor;

/// `DiagonalGaussianDistribution`: moments split into mean ‖ logvar along channels, logvar
/// clamped to [−30, 20] so exp() neither underflows to 0 nor overflows.
#[derive(Debug)]
pub struct DiagonalGaussian {
    /// The encoder's raw moments (B, 2·embed_dim, h, w) (LDM's `parameters`).
    pub moments: Tensor,
    pub mean: Tensor,
    /// Clamped log-variance.
    pub logvar: Tensor,
    pub std: Tensor,
    pub var: Tensor,
}

impl DiagonalGaussian {
    /// Splits `moments` (B, 2·C, h, w); the channel count must be even.
    pub fn new(moments: Tensor) -> Result<Self, AutoencoderError> {
        let size = moments.size();
        if size.len() != 4 || size[1] % 2 != 0 {
            return Err(AutoencoderError::Shape {
                place: "posterior moments",
                expected: "(B, 2·C, h, w)".into(),
                found: size,
            });
        }
        let halves = moments.chunk(2, 1);
        let logvar = halves[1].clamp(-30.0, 20.0);
        let std = (&logvar * 0.5).exp();
        let var = logvar.exp();
        Ok(Self {
            mean: halves[0].shallow_clone(),
            logvar,
            std,
            var,
            moments,
        })
    }

    /// μ + σ·ξ with ξ drawn from libtorch's global generator (seed it with `tch::manual_seed`).
    pub fn sample(&self) -> Tensor {
        &self.mean + &self.std * self.mean.randn_like()
    }

    /// μ + σ·ξ for a given ξ of the posterior's shape (reproducible sampling).
    pub fn sample_with_noise(&self, noise: &Tensor) -> Result<Tensor, AutoencoderError> {
        if noise.size() != self.mean.size() {
            return Err(AutoencoderError::Shape {
                place: "posterior noise",
                expected: format!("{:?}", self.mean.size()),
                found: noise.size(),
            });
        }
        Ok(&self.mean + &self.std * noise)
    }

    /// The mean μ.
    pub fn mode(&self) -> Tensor {
        self.mean.shallow_clone()
    }

    /// KL(q ‖ N(0, I)) per sample, shape (B,): ½ Σ_{c,h,w} (μ² + σ² − 1 − logvar).
    pub fn kl(&self) -> Tensor {
        let terms = self.mean.square() + &self.var - 1.0 - &self.logvar;
        terms.sum_dim_intlist(&[1i64, 2, 3][..], false, None::<tch::Kind>) * 0.5
    }
}
