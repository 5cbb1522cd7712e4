//! A labeled candidate pool made batch by batch (the samplers of both generators): image i
//! belongs to class ⌊i / per_class⌋, batch b holds images [b·B, (b + 1)·B). Each finished
//! batch is an image-set shard in the stage key's checkpoint directory, so an interrupted
//! sampler resumes after its last shard; at the end the shards are moved, not copied, into
//! the output image set.

use super::{write_shard, ImageBatch, ImageSetWriter, Item};
use crate::artifact::pixels::to_uint8;
use histodiff_engine::stage::StageError;
use std::ops::Range;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// How a pool is cut into batches and where the finished ones wait.
#[derive(Debug, Clone)]
pub struct PoolLayout {
    pub classes: Vec<String>,
    pub per_class: usize,
    pub batch_size: usize,
    pub image_size: usize,
    /// Directory of the finished batches' shards (inside the key's checkpoint dir).
    pub batches_dir: PathBuf,
}

impl PoolLayout {
    /// Creates the batches directory.
    pub fn new(
        classes: Vec<String>,
        (per_class, batch_size, image_size): (usize, usize, usize),
        checkpoint_dir: &Path,
    ) -> Result<Self, StageError> {
        let batches_dir = checkpoint_dir.join("batches");
        std::fs::create_dir_all(&batches_dir)
            .map_err(|e| StageError::Invalid(format!("{}: {e}", batches_dir.display())))?;
        Ok(Self {
            classes,
            per_class,
            batch_size,
            image_size,
            batches_dir,
        })
    }

    pub fn total(&self) -> usize {
        self.classes.len() * self.per_class
    }

    /// Number of batches.
    pub fn batches(&self) -> u64 {
        self.total().div_ceil(self.batch_size) as u64
    }

    /// Global image indices of batch `b`.
    pub fn range(&self, b: u64) -> Range<usize> {
        let start = b as usize * self.batch_size;
        start..(start + self.batch_size).min(self.total())
    }

    /// Class of each image of batch `b`.
    pub fn labels(&self, b: u64) -> Vec<i64> {
        self.range(b).map(|i| (i / self.per_class) as i64).collect()
    }

    fn shard(&self, b: u64) -> PathBuf {
        self.batches_dir.join(format!("batch-{b:08}.safetensors"))
    }

    /// Writes batch `b`'s images (float in [−1, 1], [n, 3, H, W]) as its shard.
    pub fn write_batch(&self, b: u64, images: &Tensor) -> Result<(), StageError> {
        let pixels = to_uint8(images).contiguous();
        let batch = ImageBatch {
            image_size: self.image_size,
            images: Vec::<u8>::try_from(pixels.flatten(0, -1))
                .map_err(|e| StageError::Invalid(e.to_string()))?,
            labels: Some(self.labels(b)),
        };
        write_shard(&self.shard(b), &batch)?;
        Ok(())
    }

    /// Moves every finished shard, in batch order, into the image set at `out`.
    pub fn finish(&self, out: &Path) -> Result<(), StageError> {
        let mut writer =
            ImageSetWriter::create(out, self.classes.clone(), self.image_size, self.batch_size)?;
        for b in 0..self.batches() {
            let items = self
                .range(b)
                .map(|i| {
                    let class = i / self.per_class;
                    Item {
                        source: format!(
                            "synthetic/{}/{:06}.png",
                            self.classes[class],
                            i % self.per_class
                        ),
                        label: Some(class as i64),
                    }
                })
                .collect();
            writer.append_shard(&self.shard(b), items)?;
        }
        writer.finish()?;
        Ok(())
    }
}
