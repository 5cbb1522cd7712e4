//! Mixed precision on CUDA. tch 0.26 exposes only libtorch's on/off switch for autocast,
//! whose CUDA dtype is libtorch's default, float16; the bf16 autocast dtype cannot be
//! selected through tch, so bf16 runs cast the whole model instead (see [`Precision`]).
//! On CPU every mode runs in f32: tch's `autocast` is a no-op without CUDA.

use tch::{Device, Kind};

/// Numeric precision of a training or inference run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// CUDA autocast (matmuls and convolutions in f16, reductions in f32); weights stay f32.
    /// fp16 training needs loss scaling against gradient underflow.
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

#[cfg(test)]
mod tests {
    use super::*;

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
