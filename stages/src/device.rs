//! The one parser of a stage's device name (the worker's allocation: `cpu`, `cuda`,
//! `cuda:N`), so every kind accepts the same names.

use histodiff_engine::stage::StageError;
use tch::Device;

/// `cpu` → CPU; `cuda` → the first visible GPU; `cuda:N` → GPU N.
pub fn parse(name: &str) -> Result<Device, StageError> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(Device::Cuda)
            .ok_or_else(|| {
                StageError::Invalid(format!(
                    "unknown device `{other}` (expected cpu, cuda or cuda:N)"
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_name_and_a_refusal() {
        assert_eq!(parse("cpu").unwrap(), Device::Cpu);
        assert_eq!(parse("cuda").unwrap(), Device::Cuda(0));
        assert_eq!(parse("cuda:3").unwrap(), Device::Cuda(3));
        assert!(parse("gpu").unwrap_err().to_string().contains("`gpu`"));
    }
}
