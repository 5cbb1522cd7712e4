//! `histodiffusion/finetune-decoder`: Eq. 5, L = L_rec(x̂, x) + λ_CE·CE(φ(x̂), y) (SPEC §6).
//! The decoder and post_quant_conv train; the encoder and quant_conv stay frozen (so the
//! latent space the diffusion model learned is unchanged); φ is frozen and in eval mode.
//! L_rec is the §2.5 composite (L1 + LPIPS + adaptive hinge GAN, the discriminator trained
//! alongside from a fresh start, since the AE artifact carries no discriminator).
//! Output `autoencoder`: the whole AE with the fine-tuned decoder D′ (an autoencoder
//! artifact, crate::artifact::autoencoder).

use super::declare::kind;
use super::params::range;
use super::train_common::{AeLossParams, ScheduleParams, TrainingParams};
use crate::artifact::{autoencoder, unet_classifier};
use crate::train::autoencoder::{AeFit, AeTraining, AeWeights, ClassifierTerm};
use crate::train::train;
use histodiff_engine::stage::{StageContext, StageError};

kind! {
    /// decoder fine-tuning with the auxiliary classifier's CE (Eq. 5)
    FinetuneDecoder("histodiffusion/finetune-decoder", version: 1, resumable) -> [autoencoder] {
        /// preset: AE and φ size (as in train-autoencoder / train-image-classifier)
        /// batch_size: images per step (paper 4)
        /// lr: Adam learning rate (β 0.5, 0.9) of decoder and discriminator
        ..training: TrainingParams = TrainingParams::specs(4, 5e-5),
        /// λ_CE of Eq. 5
        lambda_ce: f64 = range(0.0..).default(1.0),
        /// disc_start: step from which the GAN terms count (0: from the start)
        /// kl_weight: λ_KL (constant: the encoder is frozen)
        /// lpips_weights: LPIPS safetensors; required when perceptual_weight > 0
        ..loss: AeLossParams = AeLossParams::specs(0),
        ..run: ScheduleParams = ScheduleParams::specs(50, true),
    }
    inputs {
        /// AE weights from train-autoencoder
        autoencoder: One,
        /// labeled image set (S′)
        images: One,
        /// φ weights from train-image-classifier
        classifier: One,
    }
}

fn run(ctx: &mut StageContext, p: Params) -> Result<(), StageError> {
    let mut start = p.training.start(ctx, &p.run, Some("finetune-decoder"))?;
    let preset = p.training.preset;
    let images = &start.images;
    let (classes, size) = (images.classes().len() as i64, images.image_size() as i64);
    let phi_config = preset.unet_classifier(classes, size)?;
    let phi_path = &ctx.input("classifier")?.path;
    let (_phi_vs, phi) = unet_classifier::load(phi_path, &phi_config, start.device)?;
    let ae_path = ctx.input("autoencoder")?.path.clone();
    let lr = p.training.lr;
    let frozen = |name: &str| name.starts_with("encoder.") || name.starts_with("quant_conv.");
    let weights = AeWeights {
        lpips: p.loss.lpips(),
        init: Some(&ae_path),
    };
    let training = AeTraining::new(
        start.device,
        preset.autoencoder()?,
        p.loss.config(),
        weights,
        (lr, lr),
        frozen,
        start.mp,
    )?;
    let classifier = ClassifierTerm {
        phi,
        lambda: p.lambda_ce,
    };
    let mut fit = AeFit {
        training,
        classifier: Some(classifier),
    };
    train(ctx, &start.schedule, &mut fit, Some(&mut start.images))?;
    autoencoder::save(&fit.training.ae_vs, &ctx.output_path("autoencoder"))
}
