//! `histodiffusion/train-diffusion`: the latent UNet ε_θ (Eq. 3, SPEC §4.2) on
//! z0 = s·E(x).sample() with the AE frozen; t ~ U{0..T−1}, ε-prediction with L2 (paper) or
//! L1 (official), AdamW (wd 0.01) with LDM's linear warm-up, EMA with LitEma's warm-up.
//! s = 1/std(z) over the first `scale_images` images in data order (§2.6). Output `unet`:
//! safetensors with the UNet under its LDM names, the EMA copy under `ema.*`
//! (`ema.num_updates` included) and the 0-d `scale_factor`.

use super::schema::{
    batch_size_param, float, int, invalid, lr_param, one_of, param, preset_param, slot,
};
use super::train_common::{mixed_precision, schedule, schedule_params};
use crate::diffusion::{BetaSchedule, EpsLoss, NoiseSchedule};
use crate::models::autoencoder::AutoencoderKL;
use crate::models::unet::presets::{histodiffaug_unet, tiny_unet};
use crate::models::unet::UNetModel;
use crate::train::determinism::seed_torch_for_step;
use crate::train::driver::require_batch;
use crate::train::ema::Ema;
use crate::train::images::{Batch, TrainingImages};
use crate::train::lr::LrSchedule;
use crate::train::memory_format::prepare_var_store;
use crate::train::mixed::MixedPrecision;
use crate::train::named::{restore_into, take_prefix, trainable, vars_with_prefix};
use crate::train::optim::{Adam, AdamConfig};
use crate::train::{train, DataOrder, StepReport, Trainable};
use histodiff_engine::registry::KindSpec;
use histodiff_engine::stage::{Stage, StageContext, StageError};
use std::collections::BTreeMap;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

pub struct TrainDiffusion;

/// The frozen AE of `preset` loaded from `path`.
pub fn load_autoencoder(
    dev: Device,
    preset: &str,
    path: &std::path::Path,
) -> Result<(VarStore, AutoencoderKL), StageError> {
    let mut vs = VarStore::new(dev);
    let ae = AutoencoderKL::new(&vs.root(), crate::train::autoencoder::preset(preset)?.0)
        .map_err(invalid)?;
    crate::weights::load_strict(&mut vs, path, |_| false).map_err(invalid)?;
    vs.freeze();
    Ok((vs, ae))
}

impl Stage for TrainDiffusion {
    fn spec(&self) -> KindSpec {
        let mut params = vec![
            preset_param("UNet and AE size: paper (SPEC §3.1) or tiny"),
            batch_size_param(4, "latents per step (paper 4)"),
            lr_param(5e-5, "AdamW learning rate (wd 0.01)"),
            param(
                "loss",
                one_of(&["l2", "l1"]),
                Some("l2".into()),
                "ε loss: l2 (paper Eq. 3) or l1 (official config)",
            ),
            param(
                "warm_up_steps",
                int(Some(0), None),
                Some(10_000.into()),
                "linear LR warm-up steps (LDM 10k)",
            ),
            param(
                "ema_decay",
                float(Some(0.0), Some(1.0)),
                Some(0.9999.into()),
                "EMA decay (with LitEma's (1+n)/(10+n) warm-up)",
            ),
            param(
                "scale_images",
                int(Some(1), None),
                Some(1024.into()),
                "images whose latents set s = 1/std(z)",
            ),
        ];
        params.extend(schedule_params(10));
        KindSpec {
            name: "histodiffusion/train-diffusion".into(),
            version: 1,
            params,
            inputs: vec![
                slot("images", true, false, "image set (labels ignored)"),
                slot(
                    "autoencoder",
                    true,
                    false,
                    "AE weights from train-autoencoder (frozen)",
                ),
            ],
            outputs: vec!["unet".into()],
            resumable: true,
            doc: "latent diffusion UNet, ε-prediction, T = 1000, EMA (Eq. 3)".into(),
        }
    }

    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let dev = crate::device::parse(ctx.device())?;
        let seed = ctx.param_i64("seed")? as u64;
        let mut images = TrainingImages::open(
            &ctx.input("images")?.path,
            ctx.param_i64("batch_size")? as usize,
            seed,
        )?;
        let schedule = schedule(ctx, images.steps_per_epoch())?;
        let preset = ctx.param_str("preset")?.to_string();
        let (_ae_vs, ae) = load_autoencoder(dev, &preset, &ctx.input("autoencoder")?.path)?;
        let vs = VarStore::new(dev);
        let config = if preset == "tiny" {
            tiny_unet()
        } else {
            histodiffaug_unet()
        };
        let unet = UNetModel::new(&vs.root(), &config).map_err(invalid)?;
        // channels_last on CUDA, before the EMA and the optimizer copy the layout.
        prepare_var_store(&vs);
        let ema = Ema::new(&vs, ctx.param_f64("ema_decay")?, true);
        let lr = ctx.param_f64("lr")?;
        let opt = Adam::from_params(trainable(&vs), AdamConfig::adamw(lr, 0.01));
        let scale_factor = scale_factor(
            &ae,
            &images,
            ctx.param_i64("scale_images")? as usize,
            seed,
            dev,
        )?;
        ctx.metric("scale_factor", None, scale_factor);
        let mut state = DmState {
            vs,
            unet,
            ae,
            ema,
            opt,
            mp: mixed_precision(ctx, dev)?,
            noise: NoiseSchedule::new(BetaSchedule::histodiffaug()).map_err(invalid)?,
            loss: if ctx.param_str("loss")? == "l1" {
                EpsLoss::L1
            } else {
                EpsLoss::L2
            },
            warm_up: LrSchedule::LambdaLinear {
                warm_up_steps: ctx.param_i64("warm_up_steps")? as u64,
                f_start: 1e-6,
                f_min: 1.0,
                f_max: 1.0,
                cycle_length: 1e13,
            },
            lr,
            scale_factor,
            device: dev,
        };
        train(ctx, &schedule, &mut state, Some(&mut images))?;
        write_unet(
            &state.vs,
            &state.ema,
            state.scale_factor,
            &ctx.output_path("unet"),
        )
    }
}

/// Writes the `unet` artifact: the UNet under its LDM names, the EMA copy under `ema.*`
/// (`ema.num_updates` included) and the 0-d `scale_factor`. Shared with `weights/import`,
/// so an imported UNet has exactly this layout.
pub fn write_unet(
    vs: &VarStore,
    ema: &Ema,
    scale_factor: f64,
    path: &std::path::Path,
) -> Result<(), StageError> {
    let mut out = vars_with_prefix(vs, "");
    out.extend(ema.state_tensors("ema."));
    out.push(("scale_factor".into(), Tensor::from(scale_factor as f32)));
    crate::weights::save_tensors(&out, path).map_err(StageError::other)
}

/// s = 1/std of E(x).sample() over the first `count` images of the seed's data order.
fn scale_factor(
    ae: &AutoencoderKL,
    images: &TrainingImages,
    count: usize,
    seed: u64,
    dev: Device,
) -> Result<f64, StageError> {
    let _guard = tch::no_grad_guard();
    seed_torch_for_step(seed, u64::MAX);
    let order = DataOrder::new(images.len(), images.len(), seed).batch(0);
    let mut latents = Vec::new();
    for chunk in order[..count.min(order.len())].chunks(16) {
        let z = ae
            .encode(&images.read(chunk)?.unit_range(dev), false)
            .map_err(invalid)?
            .sample();
        latents.push(z.flatten(0, -1));
    }
    let std = Tensor::cat(&latents, 0).std(true).double_value(&[]);
    if !(std.is_finite() && std > 0.0) {
        return Err(StageError::Invalid(format!(
            "latent std is {std}: cannot set the scale factor"
        )));
    }
    Ok(1.0 / std)
}

struct DmState {
    vs: VarStore,
    unet: UNetModel,
    ae: AutoencoderKL,
    ema: Ema,
    opt: Adam,
    mp: MixedPrecision,
    noise: NoiseSchedule,
    loss: EpsLoss,
    warm_up: LrSchedule,
    /// Base learning rate (the warm-up scales it per step).
    lr: f64,
    scale_factor: f64,
    device: Device,
}

impl Trainable for DmState {
    fn step(&mut self, step: u64, batch: Option<&Batch>) -> Result<StepReport, StageError> {
        let batch = require_batch(batch)?;
        let x = batch.unit_range(self.device);
        // The frozen encoder runs under autocast too; the latents go on in f32.
        let z0 = self
            .mp
            .forward(|| tch::no_grad(|| self.ae.encode(&x, false)))?
            .map_err(invalid)?
            .sample()
            .to_kind(Kind::Float)
            * self.scale_factor;
        let b = z0.size()[0];
        let t = Tensor::randint(
            self.noise.num_timesteps() as i64,
            [b],
            (Kind::Int64, self.device),
        );
        let eps = z0.randn_like();
        let z_t = self.noise.q_sample(&z0, &t, &eps).map_err(invalid)?;
        self.opt.zero_grad();
        let (unet, eps_loss) = (&self.unet, self.loss);
        let loss = self
            .mp
            .forward(|| eps_loss.batch_mean(&unet.forward_t(&z_t, &t, true), &eps))?;
        let lr = self.warm_up.lr_at(self.lr, step);
        self.opt.set_lr(lr);
        self.mp.backward_step(&loss, &mut self.opt);
        self.ema.update(&self.vs);
        Ok(StepReport {
            loss: loss.double_value(&[]),
            metrics: vec![("lr", lr)],
        })
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vars_with_prefix(&self.vs, "unet.");
        out.extend(self.ema.state_tensors("ema."));
        out.extend(self.opt.state_tensors("opt."));
        out.extend(self.mp.state());
        out
    }

    fn restore(&mut self, state: Vec<(String, Tensor)>) -> Result<(), StageError> {
        let bad = |e: String| StageError::Invalid(format!("checkpoint: {e}"));
        restore_into(&self.vs, &take_prefix(&state, "unet."), |_| true, "unet").map_err(bad)?;
        let by_name: BTreeMap<String, Tensor> = state.into_iter().collect();
        self.ema
            .load_state_tensors("ema.", &by_name)
            .map_err(|e| bad(e.to_string()))?;
        self.opt
            .load_state_tensors("opt.", &by_name)
            .map_err(|e| bad(e.to_string()))?;
        self.mp.restore(&by_name)
    }
}
