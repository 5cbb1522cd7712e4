//! Mixed precision on CUDA. tch 0.26 exposes only libtorch's on/off switch for autocast,
//! whose CUDA dtype is libtorch's default, float16; the bf16 autocast dtype cannot be
//! selected through tch, so bf16 runs cast the whole model instead (see [`Precision`]).
//! On CPU every mode runs in f32: tch's `autocast` is a no-op without CUDA.

use tch::{Device, Kind, Tensor};

/// Numeric precision of a training or inference run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// CUDA autocast (matmuls and convolutions in f16, reductions in f32); weights stay f32.
    /// fp16 training needs loss scaling against gradient underflow ([`LossScaler`]).
    F16Autocast,
    /// Weights and activations in bf16 (the caller converts the VarStore with `vs.bfloat16()`);
    /// no loss scaling needed (bf16 has f32's exponent range).
    Bf16,
}

impl Precision {
    /// Parses `f32`, `fp16`/`f16`, `bf16`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "f32" | "fp32" => Some(Self::F32),
            "f16" | "fp16" => Some(Self::F16Autocast),
            "bf16" => Some(Self::Bf16),
            _ => None,
        }
    }

    /// The dtype model weights are held in on `device`.
    pub fn weight_kind(&self, device: Device) -> Kind {
        match (self, device.is_cuda()) {
            (Self::Bf16, true) => Kind::BFloat16,
            _ => Kind::Float,
        }
    }
}

/// Runs `f` under autocast when `precision` asks for it and `device` is CUDA.
pub fn run<T>(precision: Precision, device: Device, f: impl FnOnce() -> T) -> T {
    let enabled = precision == Precision::F16Autocast && device.is_cuda();
    if enabled {
        tch::autocast(true, f)
    } else {
        f()
    }
}

/// Dynamic loss scaling for f16 training, as `torch.amp.GradScaler`: the loss is multiplied
/// by `scale` before backward; gradients are divided by it before clipping and the step; a
/// non-finite gradient skips the step and halves the scale; `growth_interval` finite steps
/// in a row double it.
#[derive(Debug, Clone, PartialEq)]
pub struct LossScaler {
    /// Current scale (torch's init_scale 2^16).
    pub scale: f64,
    pub growth_factor: f64,
    pub backoff_factor: f64,
    pub growth_interval: u32,
    /// Finite steps since the last change of scale (checkpoint it with the scale).
    pub growth_tracker: u32,
}

impl Default for LossScaler {
    fn default() -> Self {
        Self {
            scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            growth_tracker: 0,
        }
    }
}

impl LossScaler {
    /// The loss to call `backward` on.
    pub fn scale_loss(&self, loss: &Tensor) -> Tensor {
        loss * self.scale
    }

    /// Divides every gradient by the scale; returns false if any gradient is not finite
    /// (then the optimizer step must be skipped).
    pub fn unscale(&self, params: &[(String, Tensor)]) -> bool {
        let _guard = tch::no_grad_guard();
        let inv = 1.0 / self.scale;
        let mut finite = true;
        for (_, p) in params {
            let mut grad = p.grad();
            if grad.defined() {
                let _ = grad.g_mul_scalar_(inv);
                finite &= grad.isfinite().all().int64_value(&[]) != 0;
            }
        }
        finite
    }

    /// Adjusts the scale after a step attempt (`found_finite` from [`LossScaler::unscale`]).
    pub fn update(&mut self, found_finite: bool) {
        if !found_finite {
            self.scale *= self.backoff_factor;
            self.growth_tracker = 0;
        } else {
            self.growth_tracker += 1;
            if self.growth_tracker >= self.growth_interval {
                self.scale *= self.growth_factor;
                self.growth_tracker = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaler_backs_off_on_overflow_and_grows_after_the_interval() {
        let w = Tensor::ones([3], tch::kind::FLOAT_CPU).set_requires_grad(true);
        let params = vec![("w".to_string(), w.shallow_clone())];
        let mut scaler = LossScaler {
            growth_interval: 2,
            ..LossScaler::default()
        };
        scaler.scale_loss(&(&w * 3.0).sum(Kind::Float)).backward();
        assert!(scaler.unscale(&params));
        assert_eq!(
            Vec::<f32>::try_from(&w.grad()).unwrap(),
            vec![3.0, 3.0, 3.0]
        );
        scaler.update(true);
        scaler.update(true);
        assert_eq!((scaler.scale, scaler.growth_tracker), (131072.0, 0));
        let _ = w.grad().fill_(f64::INFINITY);
        assert!(!scaler.unscale(&params));
        scaler.update(false);
        assert_eq!(scaler.scale, 65536.0);
    }

    #[test]
    fn cpu_runs_stay_f32() {
        let x = tch::Tensor::ones([2, 2], tch::kind::FLOAT_CPU);
        let y = run(Precision::F16Autocast, Device::Cpu, || x.matmul(&x));
        assert_eq!(y.kind(), Kind::Float);
        assert_eq!(Precision::Bf16.weight_kind(Device::Cpu), Kind::Float);
        assert_eq!(Precision::parse("bf16"), Some(Precision::Bf16));
        assert_eq!(Precision::parse("f64"), None);
    }
}
