//! Streaming writer of image sets: images are buffered up to one shard, then written as a
//! safetensors file; `finish` writes the last shard and `manifest.json`.

use super::{
    hwc_to_chw, ArtifactError, ImageBatch, Item, Manifest, ShardEntry, FORMAT, FORMAT_VERSION,
    MANIFEST_FILE,
};
use safetensors::tensor::{Dtype, TensorView};
use std::path::{Path, PathBuf};

fn shard_name(index: usize) -> String {
    format!("images-{index:05}.safetensors")
}

/// Streams images into a new image set, one shard at a time.
pub struct ImageSetWriter {
    dir: PathBuf,
    classes: Vec<String>,
    image_size: usize,
    shard_size: usize,
    pending: ImageBatch,
    shards: Vec<ShardEntry>,
    items: Vec<Item>,
}

impl ImageSetWriter {
    /// Creates `dir` (which must not hold a manifest yet). `classes` empty ⇒ unlabeled.
    pub fn create(
        dir: &Path,
        classes: Vec<String>,
        image_size: usize,
        shard_size: usize,
    ) -> Result<Self, ArtifactError> {
        std::fs::create_dir_all(dir).map_err(|e| ArtifactError::io(dir, e))?;
        if image_size == 0 || shard_size == 0 {
            return Err(ArtifactError::Write {
                dir: dir.display().to_string(),
                reason: "image size and shard size must be positive".into(),
            });
        }
        let labels = (!classes.is_empty()).then(Vec::new);
        Ok(ImageSetWriter {
            dir: dir.to_path_buf(),
            classes,
            image_size,
            shard_size,
            pending: ImageBatch {
                image_size,
                images: Vec::new(),
                labels,
            },
            shards: Vec::new(),
            items: Vec::new(),
        })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Appends one CHW image; `label` is required for a labeled set and refused otherwise.
    pub fn push_chw(
        &mut self,
        chw: &[u8],
        label: Option<i64>,
        source: String,
    ) -> Result<(), ArtifactError> {
        let expected = 3 * self.image_size * self.image_size;
        if chw.len() != expected {
            return Err(self.write_error(format!(
                "image from {source} has {} bytes, expected {expected} (3×{s}×{s})",
                chw.len(),
                s = self.image_size
            )));
        }
        match (&mut self.pending.labels, label) {
            (Some(labels), Some(l)) if (0..self.classes.len() as i64).contains(&l) => {
                labels.push(l)
            }
            (None, None) => {}
            (_, l) => {
                return Err(self.write_error(format!(
                    "image from {source}: label {l:?} does not fit a set with {} classes",
                    self.classes.len()
                )))
            }
        }
        self.pending.images.extend_from_slice(chw);
        self.items.push(Item { source, label });
        if self.pending.len() == self.shard_size {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends one HWC RGB image (as decoded by the image crate).
    pub fn push_hwc(
        &mut self,
        hwc: &[u8],
        label: Option<i64>,
        source: String,
    ) -> Result<(), ArtifactError> {
        self.push_chw(&hwc_to_chw(hwc, self.image_size), label, source)
    }

    fn write_error(&self, reason: String) -> ArtifactError {
        ArtifactError::Write {
            dir: self.dir.display().to_string(),
            reason,
        }
    }

    fn flush(&mut self) -> Result<(), ArtifactError> {
        let count = self.pending.len();
        if count == 0 {
            return Ok(());
        }
        let name = shard_name(self.shards.len());
        let path = self.dir.join(&name);
        let s = self.image_size;
        let label_bytes: Option<Vec<u8>> = self
            .pending
            .labels
            .as_ref()
            .map(|l| l.iter().flat_map(|v| v.to_le_bytes()).collect());
        let shard_err = |reason: String| ArtifactError::Shard {
            file: path.display().to_string(),
            reason,
        };
        let mut views = vec![(
            "images",
            TensorView::new(Dtype::U8, vec![count, 3, s, s], &self.pending.images)
                .map_err(|e| shard_err(e.to_string()))?,
        )];
        if let Some(bytes) = &label_bytes {
            views.push((
                "labels",
                TensorView::new(Dtype::I64, vec![count], bytes)
                    .map_err(|e| shard_err(e.to_string()))?,
            ));
        }
        safetensors::serialize_to_file(views, None, &path).map_err(|e| shard_err(e.to_string()))?;
        self.shards.push(ShardEntry { file: name, count });
        self.pending.images.clear();
        if let Some(l) = &mut self.pending.labels {
            l.clear();
        }
        Ok(())
    }

    /// Writes the last shard and the manifest.
    pub fn finish(mut self) -> Result<Manifest, ArtifactError> {
        self.flush()?;
        let manifest = Manifest {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            layout: "NCHW".into(),
            channels: 3,
            image_size: self.image_size,
            count: self.items.len(),
            classes: self.classes,
            shards: self.shards,
            items: self.items,
        };
        let path = self.dir.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
        std::fs::write(&path, text).map_err(|e| ArtifactError::io(&path, e))?;
        Ok(manifest)
    }
}
