//! `histodiffusion/train-image-classifier`: the auxiliary image classifier φ (SPEC §5.3),
//! an EncoderUNet with attention pooling on [-1, 1] images with t fixed to 0, trained with
//! cross-entropy and Adam (lr 5e-5, batch 64, 100 epochs; supp. Table 2). Output
//! `classifier`: the image classifier artifact (crate::artifact::unet_classifier).

use super::declare::kind;
use super::train_common::{ClassifierFit, ScheduleParams, TrainingParams};
use crate::artifact::unet_classifier::{self, classify};
use crate::train::images::Batch;
use crate::train::mixed::MixedPrecision;
use crate::train::optim::AdamConfig;
use crate::train::train;
use histodiff_engine::stage::{StageContext, StageError};
use tch::nn::VarStore;

kind! {
    /// auxiliary image classifier φ for decoder fine-tuning (§2.2)
    TrainImageClassifier("histodiffusion/train-image-classifier", version: 1, resumable)
        -> [classifier]
    {
        /// preset: φ size: paper EncoderUNet (SPEC §5.3) or tiny
        /// batch_size: images per step (paper 64)
        /// lr: Adam learning rate
        ..training: TrainingParams = TrainingParams::specs(64, 5e-5),
        ..run: ScheduleParams = ScheduleParams::specs(100, true),
    }
    inputs {
        /// labeled image set (the few-shot subset S′)
        images: One,
    }
}

fn run(ctx: &mut StageContext, p: Params) -> Result<(), StageError> {
    let mut start = p
        .training
        .start(ctx, &p.run, Some("train-image-classifier"))?;
    let vs = VarStore::new(start.device);
    let images = &start.images;
    let (classes, size) = (images.classes().len() as i64, images.image_size() as i64);
    let config = p.training.preset.unet_classifier(classes, size)?;
    let phi = unet_classifier::build(&vs, &config)?;
    let device = start.device;
    let logits = move |batch: &Batch, mp: &MixedPrecision| {
        mp.forward(|| classify(&phi, &batch.unit_range(device), true))
    };
    let config = AdamConfig::adam(p.training.lr);
    let mut fit = ClassifierFit::new(vs, config, start.mp, logits);
    train(ctx, &start.schedule, &mut fit, Some(&mut start.images))?;
    unet_classifier::save(&fit.model.vs, &ctx.output_path("classifier"))
}
