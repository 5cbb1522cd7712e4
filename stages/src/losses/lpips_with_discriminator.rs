//! `LPIPSWithDiscriminator` (LDM `contperceptual.py` on taming's losses): the KL
//! autoencoder's training objective, Eq. 4 of the paper, in its two alternating steps
//! (SPEC §2.5).
//!
//! Variables live under the path it is built at (`loss` in an AE checkpoint):
//! `perceptual_loss.*` (frozen LPIPS), `discriminator.main.*` (trainable) and `logvar`
//! (a scalar that no optimizer updates in the official code, so it is frozen here too).
//! The loss's own trainable variables are therefore exactly the discriminator's, and an
//! optimizer built on its VarStore is the official discriminator optimizer.

use crate::models::autoencoder::DiagonalGaussian;
use crate::models::discriminator::{DiscriminatorConfig, NLayerDiscriminator};
use crate::models::lpips::{Lpips, LpipsError};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Discriminator objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscLoss {
    /// ½(mean ReLU(1 − D(x)) + mean ReLU(1 + D(x̂))) — the configured one.
    Hinge,
    /// ½(mean softplus(−D(x)) + mean softplus(D(x̂))).
    Vanilla,
}

/// Constructor arguments in force for the paper's AE (SPEC §2.5 defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AeLossConfig {
    /// Global step from which the GAN terms count (`disc_start`).
    pub disc_start: i64,
    /// Weight of the KL term (`kl_weight`, λ_KL).
    pub kl_weight: f64,
    /// Factor on the adaptive GAN weight (`disc_weight`).
    pub disc_weight: f64,
    /// GAN factor once `disc_start` is reached (`disc_factor`).
    pub disc_factor: f64,
    /// Weight of LPIPS inside the reconstruction term (`perceptual_weight`).
    pub perceptual_weight: f64,
    /// Initial value of the (frozen) output log-variance ℓ (`logvar_init`).
    pub logvar_init: f64,
    /// Discriminator objective (`disc_loss`).
    pub disc_loss: DiscLoss,
    /// PatchGAN size (`disc_in_channels`, `disc_num_layers`; ndf is fixed at 64 upstream).
    pub discriminator: DiscriminatorConfig,
}

impl Default for AeLossConfig {
    fn default() -> Self {
        Self {
            disc_start: 50001,
            kl_weight: 1e-6,
            disc_weight: 0.5,
            disc_factor: 1.0,
            perceptual_weight: 1.0,
            logvar_init: 0.0,
            disc_loss: DiscLoss::Hinge,
            discriminator: DiscriminatorConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AeLossError {
    #[error("autoencoder loss: inputs {inputs:?} and reconstructions {reconstructions:?} differ in shape")]
    Shape {
        inputs: Vec<i64>,
        reconstructions: Vec<i64>,
    },
    #[error("autoencoder loss: {0}")]
    Lpips(#[from] LpipsError),
    #[error("autoencoder loss: adaptive weight gradient: {0}")]
    Gradient(#[from] tch::TchError),
}

/// The AE (optimizer 0) step: `loss` carries the graph; the rest are detached values to log.
#[derive(Debug)]
pub struct GeneratorStep {
    /// L_nll + kl_weight·L_kl + λ_d·disc_factor·g_loss.
    pub loss: Tensor,
    /// Σ nll / B.
    pub nll: f64,
    /// Mean of the per-element reconstruction term (|x − x̂| + LPIPS broadcast).
    pub rec: f64,
    /// Σ_b KL_b / B.
    pub kl: f64,
    /// −mean D(x̂).
    pub g_loss: f64,
    /// Adaptive weight λ_d (already × disc_weight).
    pub d_weight: f64,
    /// 0 before `disc_start`, `disc_factor` after.
    pub disc_factor: f64,
}

/// The discriminator (optimizer 1) step.
#[derive(Debug)]
pub struct DiscriminatorStep {
    /// disc_factor · hinge (or vanilla) loss, with the graph into the discriminator.
    pub loss: Tensor,
    pub logits_real: f64,
    pub logits_fake: f64,
}

#[derive(Debug)]
pub struct LpipsWithDiscriminator {
    pub perceptual_loss: Lpips,
    pub discriminator: NLayerDiscriminator,
    /// ℓ of nll = rec / exp(ℓ) + ℓ, a 0-d frozen variable.
    pub logvar: Tensor,
    config: AeLossConfig,
}

impl LpipsWithDiscriminator {
    /// Builds at `vs` (the `loss` path). LPIPS weights must be loaded afterwards (they are
    /// NaN until then) unless `perceptual_weight` is 0, which never evaluates LPIPS.
    pub fn new(vs: &nn::Path, config: AeLossConfig) -> Self {
        let init = Tensor::full(
            [0i64; 0],
            config.logvar_init,
            (tch::Kind::Float, vs.device()),
        );
        let logvar = vs.add("logvar", init, false);
        Self {
            perceptual_loss: Lpips::new(&(vs / "perceptual_loss")),
            discriminator: NLayerDiscriminator::new(&(vs / "discriminator"), &config.discriminator),
            logvar,
            config,
        }
    }

    pub fn config(&self) -> &AeLossConfig {
        &self.config
    }

    /// `adopt_weight`: the GAN factor at `global_step`.
    pub fn disc_factor(&self, global_step: i64) -> f64 {
        if global_step >= self.config.disc_start {
            self.config.disc_factor
        } else {
            0.0
        }
    }

    /// The AE step. `last_layer` is the decoder's last weight (`AutoencoderKL::last_layer`);
    /// without it, or outside grad mode, λ_d = 0 (as upstream in validation). `train`
    /// runs the discriminator with batch statistics (updating its running ones).
    pub fn generator_loss(
        &self,
        inputs: &Tensor,
        reconstructions: &Tensor,
        posterior: &DiagonalGaussian,
        global_step: i64,
        last_layer: Option<&Tensor>,
        train: bool,
    ) -> Result<GeneratorStep, AeLossError> {
        check_shapes(inputs, reconstructions)?;
        let batch = inputs.size()[0] as f64;
        // 1–3. Per-element L1 plus the per-sample LPIPS broadcast over every element.
        let l1 = (inputs - reconstructions).abs();
        let rec = if self.config.perceptual_weight > 0.0 {
            l1 + self.perceptual_loss.forward(inputs, reconstructions)?
                * self.config.perceptual_weight
        } else {
            l1
        };
        let nll = &rec / self.logvar.exp() + &self.logvar;
        let nll_loss = nll.sum(None::<tch::Kind>) / batch;
        // 4. KL summed over latent elements, averaged over the batch.
        let kl_loss = posterior.kl().sum(None::<tch::Kind>) / batch;
        // 5. Generator term on the patch logits of the reconstruction.
        let g_loss = -self
            .discriminator
            .forward_t(reconstructions, train)
            .mean(None::<tch::Kind>);
        // 6–7. Adaptive weight (computed whenever disc_factor > 0, as upstream) and schedule.
        let d_weight = match last_layer {
            Some(layer) if self.config.disc_factor > 0.0 && nll_loss.requires_grad() => {
                self.adaptive_weight(&nll_loss, &g_loss, layer)?
            }
            _ => 0.0,
        };
        let disc_factor = self.disc_factor(global_step);
        // 8. Total.
        let loss =
            &nll_loss + &kl_loss * self.config.kl_weight + &g_loss * (d_weight * disc_factor);
        Ok(GeneratorStep {
            loss,
            nll: nll_loss.double_value(&[]),
            rec: rec.mean(None::<tch::Kind>).double_value(&[]),
            kl: kl_loss.double_value(&[]),
            g_loss: g_loss.double_value(&[]),
            d_weight,
            disc_factor,
        })
    }

    /// λ_d = clamp(‖∇_W nll‖ / (‖∇_W g‖ + 1e-4), 0, 1e4) · disc_weight, W = `last_layer`;
    /// the graph is kept for the step's own backward.
    fn adaptive_weight(
        &self,
        nll_loss: &Tensor,
        g_loss: &Tensor,
        last_layer: &Tensor,
    ) -> Result<f64, AeLossError> {
        let nll_grad = Tensor::f_run_backward(&[nll_loss], &[last_layer], true, false)?;
        let g_grad = Tensor::f_run_backward(&[g_loss], &[last_layer], true, false)?;
        let ratio =
            nll_grad[0].norm().double_value(&[]) / (g_grad[0].norm().double_value(&[]) + 1e-4);
        Ok(ratio.clamp(0.0, 1e4) * self.config.disc_weight)
    }

    /// The discriminator step on real images and detached reconstructions.
    pub fn discriminator_loss(
        &self,
        inputs: &Tensor,
        reconstructions: &Tensor,
        global_step: i64,
        train: bool,
    ) -> Result<DiscriminatorStep, AeLossError> {
        check_shapes(inputs, reconstructions)?;
        let real = self.discriminator.forward_t(&inputs.detach(), train);
        let fake = self
            .discriminator
            .forward_t(&reconstructions.detach(), train);
        let mean = |t: Tensor| t.mean(None::<tch::Kind>);
        let d_loss = match self.config.disc_loss {
            DiscLoss::Hinge => (mean((-&real + 1.0).relu()) + mean((&fake + 1.0).relu())) * 0.5,
            DiscLoss::Vanilla => (mean((-&real).softplus()) + mean(fake.softplus())) * 0.5,
        };
        Ok(DiscriminatorStep {
            loss: d_loss * self.disc_factor(global_step),
            logits_real: real.mean(None::<tch::Kind>).double_value(&[]),
            logits_fake: fake.mean(None::<tch::Kind>).double_value(&[]),
        })
    }
}

fn check_shapes(inputs: &Tensor, reconstructions: &Tensor) -> Result<(), AeLossError> {
    if inputs.size() != reconstructions.size() || inputs.dim() != 4 {
        return Err(AeLossError::Shape {
            inputs: inputs.size(),
            reconstructions: reconstructions.size(),
        });
    }
    Ok(())
}
