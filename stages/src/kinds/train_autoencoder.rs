//! `histodiffusion/train-autoencoder`: the KL autoencoder with L1 + LPIPS + KL + patch
//! GAN (Eq. 4, SPEC §2.5), resumable. Output `autoencoder`: safetensors of the AE weights
//! under the LDM names (`encoder.*`, `decoder.*`, `quant_conv.*`, `post_quant_conv.*`).

use super::schema::{
    batch_size_param, float, int, lr_param, optional_path, param, preset_param, slot,
};
use super::train_common::{mixed_precision, schedule, schedule_params};
use crate::losses::AeLossConfig;
use crate::train::autoencoder::{preset, AeTraining, AeWeights};
use crate::train::driver::require_batch;
use crate::train::images::{Batch, TrainingImages};
use crate::train::{train, StepReport, Trainable};
use histodiff_engine::protocol::Event;
use histodiff_engine::registry::KindSpec;
use histodiff_engine::stage::{Stage, StageContext, StageError};
use serde_json::Value;
use tch::{Device, Tensor};

pub struct TrainAutoencoder;

impl Stage for TrainAutoencoder {
    fn spec(&self) -> KindSpec {
        let mut params = vec![
            preset_param("model size: paper kl-f4 (SPEC §2.1) or tiny (CPU)"),
            batch_size_param(6, "images per step (paper 6)"),
            lr_param(4.5e-6, "Adam learning rate of both optimizers (β 0.5, 0.9)"),
            param(
                "disc_start",
                int(Some(0), None),
                Some(50001.into()),
                "step from which the GAN terms count",
            ),
            param(
                "kl_weight",
                float(Some(0.0), None),
                Some(1e-6.into()),
                "λ_KL",
            ),
            param(
                "disc_weight",
                float(Some(0.0), None),
                Some(0.5.into()),
                "factor on the adaptive GAN weight",
            ),
            param(
                "perceptual_weight",
                float(Some(0.0), None),
                Some(1.0.into()),
                "LPIPS weight; 0 needs no LPIPS weights",
            ),
            param(
                "lpips_weights",
                histodiff_engine::registry::ParamType::Path,
                Some(Value::Null),
                "LPIPS safetensors (docs/weights.md); required when perceptual_weight > 0",
            ),
        ];
        params.extend(schedule_params(10));
        KindSpec {
            name: "histodiffusion/train-autoencoder".into(),
            version: 1,
            params,
            inputs: vec![slot(
                "images",
                true,
                false,
                "image set (labels ignored), e.g. the unlabeled pre-training patches",
            )],
            outputs: vec!["autoencoder".into()],
            resumable: true,
            doc: "KL autoencoder (kl-f4), L1 + LPIPS + KL + patch GAN (Eq. 4)".into(),
        }
    }

    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let dev = crate::device::parse(ctx.device())?;
        let mut images = TrainingImages::open(
            &ctx.input("images")?.path,
            ctx.param_i64("batch_size")? as usize,
            ctx.param_i64("seed")? as u64,
        )?;
        let schedule = schedule(ctx, images.steps_per_epoch())?;
        warn_if_gan_never_starts(ctx, schedule.total_steps)?;
        let loss_config = AeLossConfig {
            disc_start: ctx.param_i64("disc_start")?,
            kl_weight: ctx.param_f64("kl_weight")?,
            disc_weight: ctx.param_f64("disc_weight")?,
            perceptual_weight: ctx.param_f64("perceptual_weight")?,
            ..AeLossConfig::default()
        };
        let lpips = optional_path(ctx, "lpips_weights")?.map(|(_, p)| p);
        let lr = ctx.param_f64("lr")?;
        let training = AeTraining::new(
            dev,
            preset(ctx.param_str("preset")?)?,
            loss_config,
            AeWeights {
                lpips: lpips.as_deref(),
                init: None,
            },
            (lr, lr),
            |_| false,
            mixed_precision(ctx, dev)?,
        )?;
        let mut state = AeState {
            training,
            device: dev,
        };
        train(ctx, &schedule, &mut state, Some(&mut images))?;
        let out = ctx.output_path("autoencoder");
        crate::weights::save(&state.training.ae_vs, &out).map_err(StageError::other)?;
        Ok(())
    }
}

/// The GAN terms count from step `disc_start` (0-based steps, SPEC §2.5). A run that
/// ends before it trains without them — right for a deliberate `disc_start` past the end,
/// a silent loss when the paper's 50,001 meets a small data set — so it warns, not fails.
fn warn_if_gan_never_starts(ctx: &mut StageContext, total_steps: u64) -> Result<(), StageError> {
    let disc_start = ctx.param_i64("disc_start")?;
    let gan_on = ctx.param_f64("disc_weight")? > 0.0;
    if gan_on && u64::try_from(disc_start).is_ok_and(|d| d >= total_steps) {
        let message = format!(
            "histodiffusion/train-autoencoder: disc_start {disc_start} >= the run's {total_steps} steps, \
             so the patch-GAN terms never count; set disc_start below {total_steps} to train them"
        );
        // tracing reaches the worker's stderr; the event, the execution's log.
        tracing::warn!("{message}");
        ctx.emit(Event::Log {
            level: "warn".into(),
            message,
        });
    }
    Ok(())
}

struct AeState {
    training: AeTraining,
    device: Device,
}

impl Trainable for AeState {
    fn step(&mut self, step: u64, batch: Option<&Batch>) -> Result<StepReport, StageError> {
        let batch = require_batch(batch)?;
        let x = batch.unit_range(self.device);
        let v = self.training.step(&x, step as i64, |_| Ok(None))?;
        Ok(StepReport {
            loss: v.total,
            metrics: vec![
                ("rec", v.rec),
                ("kl", v.kl),
                ("g_loss", v.g_loss),
                ("d_weight", v.d_weight),
                ("disc_loss", v.disc_loss),
            ],
        })
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        self.training.state()
    }

    fn restore(&mut self, state: Vec<(String, Tensor)>) -> Result<(), StageError> {
        self.training.restore(&state)
    }
}
