//! Mixed precision as the training kinds use it (parameter `precision`): forward passes
//! and losses under libtorch autocast (train::autocast), backward and the optimizer step
//! outside it, as PyTorch's AMP recipe does; fp16 adds dynamic loss scaling, whose state
//! goes into the checkpoint so a resumed run scales as an uninterrupted one.

use super::autocast::{self, AutocastGuard, LossScaler, Precision};
use super::optim::Adam;
use histodiff_engine::stage::StageError;
use std::collections::BTreeMap;
use tch::{Device, Tensor};

/// Prefix of the loss scaler's checkpoint tensors.
pub const MIXED_PREFIX: &str = "amp.";
const SCALE: &str = "amp.scale";
const GROWTH_TRACKER: &str = "amp.growth_tracker";

/// The precision of one training run on one device.
#[derive(Debug)]
pub struct MixedPrecision {
    precision: Precision,
    device: Device,
    /// fp16 only: one scaler for every optimizer of the run, updated after each step.
    scaler: Option<LossScaler>,
}

impl MixedPrecision {
    /// Checks that `precision` can run on `device` (fp16 autocast needs CUDA; the libtorch
    /// in use must export its autocast controls), so a bad choice fails before training.
    pub fn new(precision: Precision, device: Device) -> Result<Self, StageError> {
        let probe = AutocastGuard::enter(precision, device)
            .map_err(|e| StageError::Invalid(format!("precision {precision:?}: {e}")))?;
        drop(probe);
        Ok(Self {
            precision,
            device,
            scaler: precision.needs_loss_scaling().then(LossScaler::default),
        })
    }

    /// Runs a forward pass (and its loss) under autocast.
    pub fn forward<T>(&self, f: impl FnOnce() -> T) -> Result<T, StageError> {
        autocast::run(self.precision, self.device, f).map_err(StageError::other)
    }

    /// Backward of `loss` and one step of `opt`; with fp16, the loss is scaled and a step
    /// whose gradients overflowed is skipped (the scale then halves).
    pub fn backward_step(&mut self, loss: &Tensor, opt: &mut Adam) {
        match &mut self.scaler {
            None => {
                loss.backward();
                opt.step();
            }
            Some(scaler) => {
                scaler.scale_loss(loss).backward();
                let finite = scaler.unscale(opt.params());
                if finite {
                    opt.step();
                }
                scaler.update(finite);
            }
        }
    }

    /// The loss scaler's state (nothing unless fp16).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.scaler
            .as_ref()
            .map(|s| {
                vec![
                    (SCALE.to_string(), Tensor::from(s.scale)),
                    (
                        GROWTH_TRACKER.to_string(),
                        Tensor::from(s.growth_tracker as i64),
                    ),
                ]
            })
            .unwrap_or_default()
    }

    /// Restores [`MixedPrecision::state`] from a checkpoint's tensors.
    pub fn restore(&mut self, state: &BTreeMap<String, Tensor>) -> Result<(), StageError> {
        let Some(scaler) = &mut self.scaler else {
            return Ok(());
        };
        let get = |name: &str| {
            state
                .get(name)
                .ok_or_else(|| StageError::Invalid(format!("checkpoint lacks `{name}`")))
        };
        scaler.scale = get(SCALE)?.double_value(&[]);
        scaler.growth_tracker = get(GROWTH_TRACKER)?.int64_value(&[]) as u32;
        Ok(())
    }
}
