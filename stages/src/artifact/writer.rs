//! Streaming writer of image sets: images are buffered up to one shard, then written as a
//! safetensors file; `finish` writes the last shard and `manifest.json`.

use super::{
    hwc_to_chw, ArtifactError, ImageBatch, Item, Manifest, ShardEntry, DEFAULT_SHARD_SIZE, FORMAT,
    FORMAT_VERSION, MANIFEST_FILE,
};
use safetensors::tensor::{Dtype, TensorView};
use std::io::Write;
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
    /// A writer into `dir` for a set with the classes and image size of `like` (a part of
    /// it), in shards of the default size.
    pub fn like(dir: &Path, like: &Manifest) -> Result<Self, ArtifactError> {
        Self::create(
            dir,
            like.classes.clone(),
            like.image_size,
            DEFAULT_SHARD_SIZE,
        )
    }

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
        write_shard(&self.dir.join(&name), &self.pending)?;
        self.shards.push(ShardEntry { file: name, count });
        self.pending.images.clear();
        if let Some(l) = &mut self.pending.labels {
            l.clear();
        }
        Ok(())
    }

    /// Appends a shard written earlier by [`write_shard`], hard-linked into the set (a
    /// sampler's finished batches become the output without being written twice, and stay
    /// where they were, so a run killed after this point can do it again), with the items
    /// of its images. Images pushed before are flushed first.
    pub fn append_shard(&mut self, shard: &Path, items: Vec<Item>) -> Result<(), ArtifactError> {
        self.flush()?;
        let labeled = !self.classes.is_empty();
        if let Some(bad) = items.iter().find(|i| i.label.is_some() != labeled) {
            return Err(self.write_error(format!(
                "shard {}: item {} has label {:?} in a set {} labels",
                shard.display(),
                bad.source,
                bad.label,
                if labeled { "with" } else { "without" }
            )));
        }
        let name = shard_name(self.shards.len());
        link_or_copy(shard, &self.dir.join(&name))?;
        self.shards.push(ShardEntry {
            file: name,
            count: items.len(),
        });
        self.items.extend(items);
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

/// Writes `batch` as one shard file at `path`: a temporary file, fsynced, then renamed, so
/// a reader (or a resumed sampler) sees a whole shard or none.
pub fn write_shard(path: &Path, batch: &ImageBatch) -> Result<(), ArtifactError> {
    let count = batch.len();
    let s = batch.image_size;
    let shard_err = |reason: String| ArtifactError::Shard {
        file: path.display().to_string(),
        reason,
    };
    let label_bytes: Option<Vec<u8>> = batch
        .labels
        .as_ref()
        .map(|l| l.iter().flat_map(|v| v.to_le_bytes()).collect());
    let mut views = vec![(
        "images",
        TensorView::new(Dtype::U8, vec![count, 3, s, s], &batch.images)
            .map_err(|e| shard_err(e.to_string()))?,
    )];
    if let Some(bytes) = &label_bytes {
        views.push((
            "labels",
            TensorView::new(Dtype::I64, vec![count], bytes)
                .map_err(|e| shard_err(e.to_string()))?,
        ));
    }
    let bytes = safetensors::serialize(views, None).map_err(|e| shard_err(e.to_string()))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp).map_err(|e| ArtifactError::io(&tmp, e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| ArtifactError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ArtifactError::io(path, e))
}

/// Hard-links `from` as `to`, copying where the file system cannot link (another device,
/// or no hard links).
fn link_or_copy(from: &Path, to: &Path) -> Result<(), ArtifactError> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| ArtifactError::io(from, e))
}
