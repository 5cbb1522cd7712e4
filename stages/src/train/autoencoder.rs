//! The pieces train-autoencoder and finetune-decoder share: the AE and its
//! LPIPSWithDiscriminator loss in two VarStores, and one alternating step (AE optimizer,
//! then discriminator optimizer on the same batch and detached x̂, SPEC §2.5).

use super::driver::require_batch;
use super::images::Batch;
use super::memory_format::prepare_var_store;
use super::mixed::MixedPrecision;
use super::named::{restore_into, take_prefix, trainable, vars_with_prefix};
use super::optim::{Adam, AdamConfig};
use super::{StepReport, Trainable};
use crate::artifact::unet_classifier::classify;
use crate::losses::{AeLossConfig, LpipsWithDiscriminator};
use crate::models::autoencoder::AutoencoderConfig;
use crate::models::autoencoder::AutoencoderKL;
use crate::models::discriminator::DiscriminatorConfig;
use crate::models::unet::EncoderUNetModel;
use histodiff_engine::stage::StageError;
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// The AE, its loss, and one Adam per side.
pub struct AeTraining {
    pub ae_vs: VarStore,
    pub ae: AutoencoderKL,
    pub loss_vs: VarStore,
    pub loss: LpipsWithDiscriminator,
    pub opt_ae: Adam,
    pub opt_disc: Adam,
    /// Precision of both sides (one loss scaler when fp16).
    pub mp: MixedPrecision,
}

/// Loss components of one step, for metrics.
pub struct AeStepValues {
    pub total: f64,
    pub rec: f64,
    pub kl: f64,
    pub g_loss: f64,
    pub d_weight: f64,
    pub disc_loss: f64,
}

/// Weight files an autoencoder training starts from.
#[derive(Debug, Clone, Copy, Default)]
pub struct AeWeights<'a> {
    /// LPIPS (VGG16 + linear heads), needed when the perceptual weight is positive.
    pub lpips: Option<&'a Path>,
    /// An autoencoder to start from (decoder fine-tuning); None trains from scratch.
    pub init: Option<&'a Path>,
}

impl AeTraining {
    /// Builds both stores on `device`; loads LPIPS from `weights.lpips` when the perceptual
    /// weight is positive (required then). `weights.init` loads AE weights (fine-tuning).
    /// `frozen` names AE variables kept out of the AE optimizer (fine-tuning freezes the
    /// encoder).
    pub fn new(
        device: Device,
        configs: (AutoencoderConfig, DiscriminatorConfig),
        loss_config: AeLossConfig,
        weights: AeWeights<'_>,
        lr: (f64, f64),
        frozen: impl Fn(&str) -> bool,
        mp: MixedPrecision,
    ) -> Result<Self, StageError> {
        let mut ae_vs = VarStore::new(device);
        let ae = AutoencoderKL::new(&ae_vs.root(), configs.0).map_err(StageError::other)?;
        if let Some(path) = weights.init {
            crate::weights::load_strict(&mut ae_vs, path, |_| false)
                .map_err(|e| StageError::Invalid(e.to_string()))?;
        }
        for (name, var) in ae_vs.variables() {
            if frozen(&name) {
                let _ = var.set_requires_grad(false);
            }
        }
        let mut loss_vs = VarStore::new(device);
        let loss_config = AeLossConfig {
            discriminator: configs.1,
            ..loss_config
        };
        let weight = loss_config.perceptual_weight;
        let loss = LpipsWithDiscriminator::new(&loss_vs.root(), loss_config);
        match (weight > 0.0, weights.lpips) {
            (true, Some(path)) => crate::weights::load_strict_prefixed(&mut loss_vs, path, "", "perceptual_loss.")
                .map_err(|e| StageError::Invalid(e.to_string()))?,
            (true, None) => {
                return Err(StageError::Invalid(
                    "perceptual_weight > 0 needs `lpips_weights` (see docs/weights.md), or set perceptual_weight: 0".into(),
                ))
            }
            (false, _) => {}
        }
        // channels_last on CUDA, before the optimizers so their state follows the layout.
        prepare_var_store(&ae_vs);
        prepare_var_store(&loss_vs);
        // Both sides use Adam(β = 0.5, 0.9) as the LDM AutoencoderKL (SPEC §2.5).
        let opt_ae = optimizer(trainable(&ae_vs), lr.0);
        let opt_disc = optimizer(disc_params(&loss_vs), lr.1);
        Ok(Self {
            ae_vs,
            ae,
            loss_vs,
            loss,
            opt_ae,
            opt_disc,
            mp,
        })
    }

    /// One AE update then one discriminator update on images `x` in [-1, 1].
    /// `extra` adds a term to the AE loss from the reconstruction (fine-tuning's CE).
    pub fn step(
        &mut self,
        x: &Tensor,
        global_step: i64,
        extra: impl FnOnce(&Tensor) -> Result<Option<Tensor>, StageError>,
    ) -> Result<AeStepValues, StageError> {
        self.opt_ae.zero_grad();
        self.opt_disc.zero_grad();
        let (ae, loss) = (&self.ae, &self.loss);
        let (xrec, g, total) = self.mp.forward(|| -> Result<_, StageError> {
            let (xrec, posterior) = ae.forward(x, true, true).map_err(StageError::other)?;
            let g = loss
                .generator_loss(
                    x,
                    &xrec,
                    &posterior,
                    global_step,
                    Some(ae.last_layer()),
                    true,
                )
                .map_err(StageError::other)?;
            let total = match extra(&xrec)? {
                Some(term) => &g.loss + term,
                None => g.loss.shallow_clone(),
            };
            Ok((xrec, g, total))
        })??;
        self.mp.backward_step(&total, &mut self.opt_ae);
        // The generator's backward also reached the discriminator; start its step clean.
        self.opt_disc.zero_grad();
        let d = self
            .mp
            .forward(|| loss.discriminator_loss(x, &xrec, global_step, true))?
            .map_err(StageError::other)?;
        self.mp.backward_step(&d.loss, &mut self.opt_disc);
        Ok(AeStepValues {
            total: total.double_value(&[]),
            rec: g.rec,
            kl: g.kl,
            g_loss: g.g_loss,
            d_weight: g.d_weight,
            disc_loss: d.loss.double_value(&[]),
        })
    }

    /// Weights, discriminator and BN statistics, both optimizers (LPIPS is an input).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vars_with_prefix(&self.ae_vs, "ae.");
        out.extend(
            vars_with_prefix(&self.loss_vs, "loss.")
                .into_iter()
                .filter(|(k, _)| !is_lpips(k)),
        );
        out.extend(self.opt_ae.state_tensors(OPT_AE));
        out.extend(self.opt_disc.state_tensors(OPT_DISC));
        out.extend(self.mp.state());
        out
    }

    pub fn restore(&mut self, state: &[(String, Tensor)]) -> Result<(), StageError> {
        let bad = |e: String| StageError::Invalid(format!("checkpoint: {e}"));
        restore_into(
            &self.ae_vs,
            &take_prefix(state, "ae."),
            |_| true,
            "autoencoder",
        )
        .map_err(bad)?;
        restore_into(
            &self.loss_vs,
            &take_prefix(state, "loss."),
            |k| !is_lpips(&format!("loss.{k}")),
            "loss",
        )
        .map_err(bad)?;
        let by_name = state
            .iter()
            .map(|(k, t)| (k.clone(), t.shallow_clone()))
            .collect();
        self.opt_ae
            .load_state_tensors(OPT_AE, &by_name)
            .map_err(|e| bad(e.to_string()))?;
        self.opt_disc
            .load_state_tensors(OPT_DISC, &by_name)
            .map_err(|e| bad(e.to_string()))?;
        self.mp.restore(&by_name)
    }
}

/// The optimizer of either side: torch.optim.Adam(params, lr, betas=(0.5, 0.9)), as LDM's
/// AutoencoderKL.configure_optimizers (SPEC §2.5). Public so that the parity test drives
/// exactly the optimizer the kinds step.
pub fn optimizer(params: Vec<(String, Tensor)>, lr: f64) -> Adam {
    Adam::from_params(
        params,
        AdamConfig {
            beta1: 0.5,
            beta2: 0.9,
            ..AdamConfig::adam(lr)
        },
    )
}

/// Checkpoint prefixes of the two optimizers' state.
const OPT_AE: &str = "opt_ae.";
const OPT_DISC: &str = "opt_disc.";

fn is_lpips(prefixed: &str) -> bool {
    prefixed.starts_with("loss.perceptual_loss.")
}

/// The discriminator's trainable variables (`logvar` stays frozen as upstream).
fn disc_params(loss_vs: &VarStore) -> Vec<(String, Tensor)> {
    trainable(loss_vs)
        .into_iter()
        .filter(|(k, _)| k.starts_with("discriminator."))
        .collect()
}

/// The classifier term of decoder fine-tuning (Eq. 5): λ_CE·CE(φ(x̂), y), φ frozen.
pub struct ClassifierTerm {
    pub phi: EncoderUNetModel,
    pub lambda: f64,
}

/// An autoencoder fit as the driver runs it: Eq. 4 alone (train-autoencoder), or with the
/// classifier term of Eq. 5 (finetune-decoder), whose CE is reported instead of the KL.
pub struct AeFit {
    pub training: AeTraining,
    pub classifier: Option<ClassifierTerm>,
}

impl Trainable for AeFit {
    fn step(&mut self, step: u64, batch: Option<&Batch>) -> Result<StepReport, StageError> {
        let batch = require_batch(batch)?;
        let device = self.training.ae_vs.device();
        let x = batch.unit_range(device);
        let Some(term) = &self.classifier else {
            let v = self.training.step(&x, step as i64, |_| Ok(None))?;
            return Ok(report(&v, ("kl", v.kl)));
        };
        let y = batch.labels(device)?;
        let mut ce_value = 0.0;
        let v = self.training.step(&x, step as i64, |xrec| {
            let ce = classify(&term.phi, xrec, false).cross_entropy_for_logits(&y);
            ce_value = ce.double_value(&[]);
            Ok(Some(ce * term.lambda))
        })?;
        Ok(report(&v, ("ce", ce_value)))
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        self.training.state()
    }

    fn restore(&mut self, state: Vec<(String, Tensor)>) -> Result<(), StageError> {
        self.training.restore(&state)
    }
}

/// A step's loss and metrics; `second` is the KL, or the CE when fine-tuning.
fn report(v: &AeStepValues, second: (&'static str, f64)) -> StepReport {
    StepReport {
        loss: v.total,
        metrics: vec![
            ("rec", v.rec),
            second,
            ("g_loss", v.g_loss),
            ("d_weight", v.d_weight),
            ("disc_loss", v.disc_loss),
        ],
    }
}
