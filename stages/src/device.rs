//! Opens the device a worker was given (`cpu`, `cuda`, `cuda:N`), parsed by the engine's
//! one grammar of device names ([`DeviceName`]), so a stage accepts exactly what the
//! settings and the scheduler accept.

use histodiff_engine::device::DeviceName;
use histodiff_engine::stage::StageError;
use tch::Device;

/// `cpu` → CPU; `cuda` → the first visible GPU; `cuda:N` → GPU N. `auto` is a setting the
/// scheduler resolves before a job starts, so a job never carries it.
pub fn parse(name: &str) -> Result<Device, StageError> {
    let parsed = name
        .parse::<DeviceName>()
        .map_err(|e| StageError::Invalid(e.to_string()))?;
    match parsed {
        DeviceName::Cpu => Ok(Device::Cpu),
        DeviceName::Cuda => Ok(Device::Cuda(0)),
        DeviceName::CudaIndex(n) => Ok(Device::Cuda(n as usize)),
        DeviceName::Auto => Err(StageError::Invalid(
            "device `auto` reached a worker: the scheduler gives each job cpu or cuda:N".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_name_and_refusals() {
        assert_eq!(parse("cpu").unwrap(), Device::Cpu);
        assert_eq!(parse("cuda").unwrap(), Device::Cuda(0));
        assert_eq!(parse("cuda:3").unwrap(), Device::Cuda(3));
        assert!(parse("gpu").unwrap_err().to_string().contains("`gpu`"));
        assert!(parse("auto").unwrap_err().to_string().contains("auto"));
    }
}
