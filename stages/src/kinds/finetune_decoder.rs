//! `histodiffusion/finetune-decoder`: Eq. 5, L = L_rec(x̂, x) + λ_CE·CE(φ(x̂), y) (SPEC §6).
//! The decoder and post_quant_conv train; the encoder and quant_conv stay frozen (so the
//! latent space the diffusion model learned is unchanged); φ is frozen and in eval mode.
//! L_rec is the §2.5 composite (L1 + LPIPS + adaptive hinge GAN, the discriminator trained
//! alongside from a fresh start, since the AE artifact carries no discriminator).
//! Output `autoencoder`: the whole AE with the fine-tuned decoder D′.

use super::schema::{
    batch_size_param, float, int, lr_param, optional_path, param, preset_param, slot,
};
use super::train_common::{mixed_precision, schedule, schedule_params};
use super::train_image_classifier::{build_image_classifier, classify};
use crate::losses::AeLossConfig;
use crate::models::unet::EncoderUNetModel;
use crate::train::autoencoder::{preset, AeTraining, AeWeights};
use crate::train::driver::require_batch;
use crate::train::images::{Batch, TrainingImages};
use crate::train::{train, StepReport, Trainable};
use histodiff_engine::registry::{KindSpec, ParamType};
use histodiff_engine::stage::{Stage, StageContext, StageError};
use serde_json::Value;
use tch::nn::VarStore;
use tch::{Device, Tensor};

pub struct FinetuneDecoder;

impl Stage for FinetuneDecoder {
    fn spec(&self) -> KindSpec {
        let mut params = vec![
            preset_param("AE and φ size (as in train-autoencoder / train-image-classifier)"),
            batch_size_param(4, "images per step (paper 4)"),
            lr_param(
                5e-5,
                "Adam learning rate (β 0.5, 0.9) of decoder and discriminator",
            ),
            param(
                "lambda_ce",
                float(Some(0.0), None),
                Some(1.0.into()),
                "λ_CE of Eq. 5",
            ),
            param(
                "disc_start",
                int(Some(0), None),
                Some(0.into()),
                "step from which the GAN terms count (0: from the start)",
            ),
            param(
                "kl_weight",
                float(Some(0.0), None),
                Some(1e-6.into()),
                "λ_KL (constant: the encoder is frozen)",
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
                ParamType::Path,
                Some(Value::Null),
                "LPIPS safetensors; required when perceptual_weight > 0",
            ),
        ];
        params.extend(schedule_params(50));
        KindSpec {
            name: "histodiffusion/finetune-decoder".into(),
            version: 1,
            params,
            inputs: vec![
                slot(
                    "autoencoder",
                    true,
                    false,
                    "AE weights from train-autoencoder",
                ),
                slot("images", true, false, "labeled image set (S′)"),
                slot(
                    "classifier",
                    true,
                    false,
                    "φ weights from train-image-classifier",
                ),
            ],
            outputs: vec!["autoencoder".into()],
            resumable: true,
            doc: "decoder fine-tuning with the auxiliary classifier's CE (Eq. 5)".into(),
        }
    }

    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let dev = crate::device::parse(ctx.device())?;
        let mut images = TrainingImages::open(
            &ctx.input("images")?.path,
            ctx.param_i64("batch_size")? as usize,
            ctx.param_i64("seed")? as u64,
        )?;
        images.require_labels("finetune-decoder")?;
        let schedule = schedule(ctx, images.steps_per_epoch())?;
        let preset_name = ctx.param_str("preset")?.to_string();
        let mut phi_vs = VarStore::new(dev);
        let phi = build_image_classifier(
            &phi_vs,
            &preset_name,
            images.classes().len() as i64,
            images.image_size(),
        )?;
        crate::weights::load_strict(&mut phi_vs, &ctx.input("classifier")?.path, |_| false)
            .map_err(|e| StageError::Invalid(e.to_string()))?;
        phi_vs.freeze();
        let loss_config = AeLossConfig {
            disc_start: ctx.param_i64("disc_start")?,
            kl_weight: ctx.param_f64("kl_weight")?,
            disc_weight: ctx.param_f64("disc_weight")?,
            perceptual_weight: ctx.param_f64("perceptual_weight")?,
            ..AeLossConfig::default()
        };
        let lpips = optional_path(ctx, "lpips_weights")?.map(|(_, p)| p);
        let ae_path = ctx.input("autoencoder")?.path.clone();
        let lr = ctx.param_f64("lr")?;
        let frozen = |name: &str| name.starts_with("encoder.") || name.starts_with("quant_conv.");
        let training = AeTraining::new(
            dev,
            preset(&preset_name)?,
            loss_config,
            AeWeights {
                lpips: lpips.as_deref(),
                init: Some(&ae_path),
            },
            (lr, lr),
            frozen,
            mixed_precision(ctx, dev)?,
        )?;
        let lambda_ce = ctx.param_f64("lambda_ce")?;
        let mut state = FtState {
            training,
            phi,
            lambda_ce,
            device: dev,
        };
        train(ctx, &schedule, &mut state, Some(&mut images))?;
        crate::weights::save(&state.training.ae_vs, &ctx.output_path("autoencoder"))
            .map_err(StageError::other)
    }
}

struct FtState {
    training: AeTraining,
    phi: EncoderUNetModel,
    lambda_ce: f64,
    device: Device,
}

impl Trainable for FtState {
    fn step(&mut self, step: u64, batch: Option<&Batch>) -> Result<StepReport, StageError> {
        let batch = require_batch(batch)?;
        let x = batch.unit_range(self.device);
        let y = batch.labels(self.device)?;
        let mut ce_value = 0.0;
        let (phi, lambda) = (&self.phi, self.lambda_ce);
        let v = self.training.step(&x, step as i64, |xrec| {
            let ce = classify(phi, xrec, false).cross_entropy_for_logits(&y);
            ce_value = ce.double_value(&[]);
            Ok(Some(ce * lambda))
        })?;
        Ok(StepReport {
            loss: v.total,
            metrics: vec![
                ("rec", v.rec),
                ("ce", ce_value),
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
