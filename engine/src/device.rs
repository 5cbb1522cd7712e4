//! The one grammar of device names, shared by the pipeline's `settings.device`, the
//! `--device` flag, the scheduler's GPU allocation and the worker that opens the device:
//! `auto | cpu | cuda | cuda:N`.

use std::fmt;
use std::str::FromStr;

/// A device as a user or the scheduler names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceName {
    /// Every visible GPU, else the CPU (a setting only; a worker is given a concrete one).
    Auto,
    Cpu,
    /// Every visible GPU as a setting; to a worker, the first visible one.
    Cuda,
    /// One GPU by its id.
    CudaIndex(u32),
}

/// A name outside the grammar, quoted in the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device `{0}` (expected auto, cpu, cuda or cuda:N)")]
pub struct UnknownDevice(pub String);

impl FromStr for DeviceName {
    type Err = UnknownDevice;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "auto" => Ok(DeviceName::Auto),
            "cpu" => Ok(DeviceName::Cpu),
            "cuda" => Ok(DeviceName::Cuda),
            other => other
                .strip_prefix("cuda:")
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse().ok())
                .map(DeviceName::CudaIndex)
                .ok_or_else(|| UnknownDevice(other.to_string())),
        }
    }
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceName::Auto => f.write_str("auto"),
            DeviceName::Cpu => f.write_str("cpu"),
            DeviceName::Cuda => f.write_str("cuda"),
            DeviceName::CudaIndex(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceName {
    /// The GPU ids this setting lets the scheduler hand out, among the visible ones.
    pub fn gpus(self, visible: &[u32]) -> Vec<u32> {
        match self {
            DeviceName::Cpu => vec![],
            DeviceName::Auto | DeviceName::Cuda => visible.to_vec(),
            DeviceName::CudaIndex(id) => vec![id],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_and_bad_ones_are_quoted() {
        for name in ["auto", "cpu", "cuda", "cuda:0", "cuda:12"] {
            assert_eq!(name.parse::<DeviceName>().unwrap().to_string(), name);
        }
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:1 ", "CPU", ""] {
            let e = bad.parse::<DeviceName>().unwrap_err();
            assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
        }
    }

    #[test]
    fn the_setting_selects_gpus() {
        assert_eq!(DeviceName::Cpu.gpus(&[0, 1]), Vec::<u32>::new());
        assert_eq!(DeviceName::Auto.gpus(&[0, 1]), vec![0, 1]);
        assert_eq!(DeviceName::Cuda.gpus(&[0, 1]), vec![0, 1]);
        assert_eq!(DeviceName::CudaIndex(1).gpus(&[0, 1]), vec![1]);
    }
}
