//! `histodiffusion/train-autoencoder`: the KL autoencoder with L1 + LPIPS + KL + patch
//! GAN (Eq. 4, SPEC §2.5), resumable. Output `autoencoder`: the autoencoder artifact
//! (crate::artifact::autoencoder).

use super::declare::kind;
use super::train_common::{AeLossParams, ScheduleParams, TrainingParams};
use crate::artifact::autoencoder;
use crate::train::autoencoder::{AeFit, AeTraining, AeWeights};
use crate::train::train;
use histodiff_engine::protocol::Event;
use histodiff_engine::stage::{StageContext, StageError};

kind! {
    /// KL autoencoder (kl-f4), L1 + LPIPS + KL + patch GAN (Eq. 4)
    TrainAutoencoder("histodiffusion/train-autoencoder", version: 1, resumable) -> [autoencoder] {
        /// preset: model size: paper kl-f4 (SPEC §2.1) or tiny (CPU)
        /// batch_size: images per step (paper 6)
        /// lr: Adam learning rate of both optimizers (β 0.5, 0.9)
        ..training: TrainingParams = TrainingParams::specs(6, 4.5e-6),
        ..loss: AeLossParams = AeLossParams::specs(50001),
        ..run: ScheduleParams = ScheduleParams::specs(10, true),
    }
    inputs {
        /// image set (labels ignored), e.g. the unlabeled pre-training patches
        images: One,
    }
}

fn run(ctx: &mut StageContext, p: Params) -> Result<(), StageError> {
    let mut start = p.training.start(ctx, &p.run, None)?;
    warn_if_gan_never_starts(ctx, &p.loss, start.schedule.total_steps);
    let lr = p.training.lr;
    let weights = AeWeights {
        lpips: p.loss.lpips(),
        init: None,
    };
    let configs = p.training.preset.autoencoder()?;
    let training = AeTraining::new(
        start.device,
        configs,
        p.loss.config(),
        weights,
        (lr, lr),
        |_| false,
        start.mp,
    )?;
    let mut fit = AeFit {
        training,
        classifier: None,
    };
    train(ctx, &start.schedule, &mut fit, Some(&mut start.images))?;
    autoencoder::save(&fit.training.ae_vs, &ctx.output_path("autoencoder"))
}

/// The GAN terms count from step `disc_start` (0-based steps, SPEC §2.5). A run that
/// ends before it trains without them — right for a deliberate `disc_start` past the end,
/// a silent loss when the paper's 50,001 meets a small data set — so it warns, not fails.
fn warn_if_gan_never_starts(ctx: &mut StageContext, loss: &AeLossParams, total_steps: u64) {
    let disc_start = loss.disc_start;
    if loss.disc_weight > 0.0 && disc_start >= total_steps {
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
}
