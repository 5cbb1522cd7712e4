//! Image sets as model inputs: the whole set as one uint8 tensor, batches gathered by
//! index and mapped to [-1, 1] (x/127.5 − 1, SPEC §1), and the inverse for outputs.

use crate::artifact::ImageSet;
use histodiff_engine::stage::StageError;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// An image set in memory (uint8 NCHW on the CPU) with its labels, if any.
#[derive(Debug)]
pub struct Images {
    pub images: Tensor,
    pub labels: Option<Tensor>,
    pub classes: Vec<String>,
    pub image_size: usize,
}

impl Images {
    /// Loads every shard of the image set at `dir`.
    pub fn load(dir: &Path) -> Result<Self, StageError> {
        let set = ImageSet::open(dir)?;
        if set.is_empty() {
            return Err(StageError::Invalid(format!(
                "image set {} is empty",
                dir.display()
            )));
        }
        let batch = set.load_all()?;
        Ok(Self {
            images: batch.to_tensor(),
            labels: batch.labels_tensor(),
            classes: set.manifest().classes.clone(),
            image_size: set.manifest().image_size,
        })
    }

    pub fn len(&self) -> usize {
        self.images.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Labels or an error naming the stage's need.
    pub fn require_labels(&self, what: &str) -> Result<&Tensor, StageError> {
        self.labels
            .as_ref()
            .ok_or_else(|| StageError::Invalid(format!("{what} needs a labeled image set")))
    }

    /// Images at `indices` as float in [-1, 1] on `device`.
    pub fn batch(&self, indices: &[usize], device: Device) -> Tensor {
        let idx = index_tensor(indices);
        to_unit_range(&self.images.index_select(0, &idx)).to_device(device)
    }

    /// Labels at `indices` on `device`.
    pub fn batch_labels(&self, indices: &[usize], device: Device) -> Option<Tensor> {
        let idx = index_tensor(indices);
        self.labels
            .as_ref()
            .map(|l| l.index_select(0, &idx).to_device(device))
    }
}

fn index_tensor(indices: &[usize]) -> Tensor {
    let v: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    Tensor::from_slice(&v)
}

/// uint8 [0, 255] → float [-1, 1].
pub fn to_unit_range(images: &Tensor) -> Tensor {
    images.to_kind(Kind::Float) / 127.5 - 1.0
}

/// float [-1, 1] → uint8, clamped, ((x + 1)·127.5) truncated (SPEC §1 notes).
pub fn to_uint8(images: &Tensor) -> Tensor {
    ((images.clamp(-1.0, 1.0) + 1.0) * 127.5)
        .to_kind(Kind::Uint8)
        .to_device(Device::Cpu)
}

/// The device a stage asked for (`cpu`, `cuda:N`).
pub fn device(name: &str) -> Result<Device, StageError> {
    match name {
        "cpu" => Ok(Device::Cpu),
        _ => name
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(Device::Cuda)
            .ok_or_else(|| StageError::Invalid(format!("unknown device `{name}`"))),
    }
}
