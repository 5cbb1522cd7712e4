//! `histodiffusion/train-image-classifier`: the auxiliary image classifier φ (SPEC §5.3),
//! an EncoderUNet with attention pooling on [-1, 1] images with t fixed to 0, trained with
//! cross-entropy and Adam (lr 5e-5, batch 64, 100 epochs; supp. Table 2). Output
//! `classifier`: safetensors of φ under the guided-diffusion names.

use super::schema::{batch_size_param, lr_param, preset_param, slot};
use super::train_common::{
    classifier_state, cross_entropy_step, mixed_precision, restore_classifier, schedule,
    schedule_params,
};
use crate::models::unet::presets::{image_classifier, tiny_classifier};
use crate::models::unet::EncoderUNetModel;
use crate::train::driver::require_batch;
use crate::train::images::{Batch, TrainingImages};
use crate::train::mixed::MixedPrecision;
use crate::train::named::trainable;
use crate::train::optim::{Adam, AdamConfig};
use crate::train::{train, StepReport, Trainable};
use histodiff_engine::registry::KindSpec;
use histodiff_engine::stage::{Stage, StageContext, StageError};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

pub struct TrainImageClassifier;

/// φ for `preset` (tiny | paper), `classes` outputs, on `image_size` px inputs.
pub fn build_image_classifier(
    vs: &VarStore,
    preset: &str,
    classes: i64,
    image_size: usize,
) -> Result<EncoderUNetModel, StageError> {
    let mut config = match preset {
        "paper" => image_classifier(classes),
        "tiny" => tiny_classifier(classes),
        other => {
            return Err(StageError::Invalid(format!(
                "unknown preset `{other}` (tiny or paper)"
            )))
        }
    };
    // The attention pool is sized for one input side: the data's.
    config.image_size = image_size as i64;
    EncoderUNetModel::new(&vs.root(), &config).map_err(|e| StageError::Invalid(e.to_string()))
}

/// φ's logits for images in [-1, 1] (t = 0).
pub fn classify(phi: &EncoderUNetModel, x: &Tensor, train: bool) -> Tensor {
    let t = Tensor::zeros([x.size()[0]], (Kind::Int64, x.device()));
    phi.forward_t(x, &t, train)
}

impl Stage for TrainImageClassifier {
    fn spec(&self) -> KindSpec {
        let mut params = vec![
            preset_param("φ size: paper EncoderUNet (SPEC §5.3) or tiny"),
            batch_size_param(64, "images per step (paper 64)"),
            lr_param(5e-5, "Adam learning rate"),
        ];
        params.extend(schedule_params(100));
        KindSpec {
            name: "histodiffusion/train-image-classifier".into(),
            version: 1,
            params,
            inputs: vec![slot(
                "images",
                true,
                false,
                "labeled image set (the few-shot subset S′)",
            )],
            outputs: vec!["classifier".into()],
            resumable: true,
            doc: "auxiliary image classifier φ for decoder fine-tuning (§2.2)".into(),
        }
    }

    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let dev = crate::device::parse(ctx.device())?;
        let mut images = TrainingImages::open(
            &ctx.input("images")?.path,
            ctx.param_i64("batch_size")? as usize,
            ctx.param_i64("seed")? as u64,
        )?;
        images.require_labels("train-image-classifier")?;
        let schedule = schedule(ctx, images.steps_per_epoch())?;
        let vs = VarStore::new(dev);
        let phi = build_image_classifier(
            &vs,
            ctx.param_str("preset")?,
            images.classes().len() as i64,
            images.image_size(),
        )?;
        let opt = Adam::from_params(trainable(&vs), AdamConfig::adam(ctx.param_f64("lr")?));
        let mut state = PhiState {
            vs,
            phi,
            opt,
            mp: mixed_precision(ctx, dev)?,
            device: dev,
        };
        train(ctx, &schedule, &mut state, Some(&mut images))?;
        crate::weights::save(&state.vs, &ctx.output_path("classifier")).map_err(StageError::other)
    }
}

struct PhiState {
    vs: VarStore,
    phi: EncoderUNetModel,
    opt: Adam,
    mp: MixedPrecision,
    device: Device,
}

impl Trainable for PhiState {
    fn step(&mut self, _step: u64, batch: Option<&Batch>) -> Result<StepReport, StageError> {
        let batch = require_batch(batch)?;
        let x = batch.unit_range(self.device);
        let y = batch.labels(self.device)?;
        self.opt.zero_grad();
        let logits = self.mp.forward(|| classify(&self.phi, &x, true))?;
        Ok(cross_entropy_step(&mut self.mp, &mut self.opt, &logits, &y))
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        classifier_state(&self.vs, &self.opt, &self.mp)
    }

    fn restore(&mut self, state: Vec<(String, Tensor)>) -> Result<(), StageError> {
        restore_classifier(&self.vs, &mut self.opt, &mut self.mp, &state)
    }
}
