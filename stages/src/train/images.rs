//! The training data of a kind: one or more image sets read lazily from their shards, in
//! the run's data order, by a background [`BatchLoader`]. Memory is a few batches plus
//! one label per image, whatever the size of the sets (803k patches at 256² are 158 GB).

use super::data_order::DataOrder;
use super::loader::{BatchLoader, LoadedBatch, DEFAULT_PREFETCH};
use super::memory_format::prepare_batch;
use crate::artifact::pixels::to_unit_range;
use crate::artifact::{ImageSet, RandomAccess};
use histodiff_engine::stage::StageError;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// How an epoch ends when the set is not a multiple of the batch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epochs {
    /// Drop the last partial batch (the generative models' loaders, `drop_last=True`).
    DropPartial,
    /// Keep it, shorter (the downstream classifier sees every image every epoch).
    KeepPartial,
}

/// The images a training kind draws its batches from.
pub struct TrainingImages {
    reader: RandomAccess,
    order: DataOrder,
    classes: Vec<String>,
    /// Length of each input set, in input order (the first is the real set).
    set_lens: Vec<usize>,
    loader: Option<BatchLoader>,
}

impl TrainingImages {
    /// One image set, epochs dropping their partial batch.
    pub fn open(dir: &Path, batch_size: usize, seed: u64) -> Result<Self, StageError> {
        Self::open_many(&[dir.to_path_buf()], batch_size, seed, Epochs::DropPartial)
    }

    /// Several image sets concatenated in the order given; their classes and image sizes
    /// must agree.
    pub fn open_many(
        dirs: &[PathBuf],
        batch_size: usize,
        seed: u64,
        epochs: Epochs,
    ) -> Result<Self, StageError> {
        let mut readers = Vec::with_capacity(dirs.len());
        let mut classes: Option<Vec<String>> = None;
        let mut set_lens = Vec::with_capacity(dirs.len());
        for dir in dirs {
            let set = ImageSet::open(dir)?;
            let these = &set.manifest().classes;
            match &classes {
                Some(first) if first != these => {
                    return Err(StageError::Invalid(format!(
                        "{}: classes {these:?} differ from the first set's {first:?}",
                        dir.display()
                    )))
                }
                Some(_) => {}
                None => classes = Some(these.clone()),
            }
            set_lens.push(set.len());
            readers.push(RandomAccess::open(&set)?);
        }
        let reader = RandomAccess::concat(readers)?;
        if reader.is_empty() {
            return Err(StageError::Invalid(format!(
                "the training images ({}) are empty",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let order = match epochs {
            Epochs::DropPartial => DataOrder::new(reader.len(), batch_size, seed),
            Epochs::KeepPartial => DataOrder::with_partial_last(reader.len(), batch_size, seed),
        };
        Ok(Self {
            reader,
            order,
            classes: classes.unwrap_or_default(),
            set_lens,
            loader: None,
        })
    }

    pub fn len(&self) -> usize {
        self.reader.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reader.is_empty()
    }

    /// Class names in label order (empty for unlabeled sets).
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    pub fn image_size(&self) -> usize {
        self.reader.image_size()
    }

    /// Images of each input set, in input order.
    pub fn set_lens(&self) -> &[usize] {
        &self.set_lens
    }

    pub fn steps_per_epoch(&self) -> u64 {
        self.order.steps_per_epoch()
    }

    /// Labels or an error naming the stage's need.
    pub fn require_labels(&self, what: &str) -> Result<(), StageError> {
        match self.reader.labels() {
            Some(_) if !self.classes.is_empty() => Ok(()),
            _ => Err(StageError::Invalid(format!(
                "{what} needs a labeled image set"
            ))),
        }
    }

    /// Starts the background loader at step `from` of a run of `total` steps.
    pub fn begin(&mut self, from: u64, total: u64) -> Result<(), StageError> {
        self.loader = None;
        if from < total {
            self.loader = Some(BatchLoader::start(
                self.reader.clone(),
                self.order.clone(),
                from..total,
                DEFAULT_PREFETCH,
            )?);
        }
        Ok(())
    }

    /// The batch of `step` (after [`TrainingImages::begin`]).
    pub fn next(&mut self, step: u64) -> Result<Batch, StageError> {
        let loader = self.loader.as_mut().ok_or_else(|| {
            StageError::msg(format!(
                "the batch loader was not started before step {step}"
            ))
        })?;
        Ok(Batch(loader.next(step)?))
    }

    /// The images at `indices` now, without the loader (e.g. to estimate a statistic).
    pub fn read(&self, indices: &[usize]) -> Result<Batch, StageError> {
        let batch = self.reader.read(indices)?;
        Ok(Batch(LoadedBatch {
            step: 0,
            images: batch.to_tensor(),
            labels: batch.labels_tensor(),
        }))
    }

    /// Images the loader prepared per second of its own work.
    pub fn data_rate(&self) -> Option<f64> {
        self.loader
            .as_ref()
            .and_then(BatchLoader::prepared_images_per_second)
    }
}

/// One batch as read from disk (uint8 on the CPU).
pub struct Batch(LoadedBatch);

impl Batch {
    pub fn len(&self) -> usize {
        self.0.images.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// uint8 (b, 3, H, W) on the CPU.
    pub fn images(&self) -> &Tensor {
        &self.0.images
    }

    /// Float in [-1, 1] on `device` (the AE's and the UNet's range), in the layout the
    /// conv models run in there (channels_last on CUDA).
    pub fn unit_range(&self, device: Device) -> Tensor {
        prepare_batch(&to_unit_range(&self.0.images.to_device(device)), device)
    }

    /// Labels on `device` (sets are checked to be labeled when opened by such kinds).
    pub fn labels(&self, device: Device) -> Result<Tensor, StageError> {
        self.0
            .labels
            .as_ref()
            .map(|l| l.to_device(device))
            .ok_or_else(|| StageError::Invalid("the training images are unlabeled".into()))
    }
}
