//! Reading image sets: the manifest is checked on open (format, layout, counts, shards
//! present); shards are read one at a time and checked against it.

use super::{ArtifactError, ImageBatch, Manifest, FORMAT, FORMAT_VERSION, MANIFEST_FILE};
use safetensors::tensor::{Dtype, SafeTensors};
use std::path::{Path, PathBuf};

/// Reads an image set written by [`ImageSetWriter`].
#[derive(Debug, Clone)]
pub struct ImageSet {
    dir: PathBuf,
    manifest: Manifest,
}

impl ImageSet {
    /// Opens `dir` and checks its manifest (format, layout, counts, shard files present).
    pub fn open(dir: &Path) -> Result<Self, ArtifactError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| ArtifactError::io(&path, e))?;
        let bad = |reason: String| ArtifactError::Manifest {
            file: path.display().to_string(),
            reason,
        };
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if manifest.format != FORMAT || manifest.version != FORMAT_VERSION {
            return Err(bad(format!(
                "format {} v{}, expected {FORMAT} v{FORMAT_VERSION}",
                manifest.format, manifest.version
            )));
        }
        if manifest.layout != "NCHW" || manifest.channels != 3 {
            return Err(bad(format!(
                "layout {} with {} channels, expected NCHW with 3",
                manifest.layout, manifest.channels
            )));
        }
        let shard_total: usize = manifest.shards.iter().map(|s| s.count).sum();
        if shard_total != manifest.count || manifest.items.len() != manifest.count {
            return Err(bad(format!(
                "count {} but shards hold {shard_total} and items list {}",
                manifest.count,
                manifest.items.len()
            )));
        }
        for shard in &manifest.shards {
            if !dir.join(&shard.file).is_file() {
                return Err(bad(format!("shard {} is missing", shard.file)));
            }
        }
        Ok(ImageSet {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn len(&self) -> usize {
        self.manifest.count
    }

    pub fn is_empty(&self) -> bool {
        self.manifest.count == 0
    }

    /// Reads shard `index`, checking dtypes and shapes against the manifest.
    pub fn read_shard(&self, index: usize) -> Result<ImageBatch, ArtifactError> {
        let entry = &self.manifest.shards[index];
        let path = self.dir.join(&entry.file);
        let bytes = std::fs::read(&path).map_err(|e| ArtifactError::io(&path, e))?;
        let bad = |reason: String| ArtifactError::Shard {
            file: path.display().to_string(),
            reason,
        };
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let s = self.manifest.image_size;
        let images = st
            .tensor("images")
            .map_err(|e| bad(format!("tensor `images`: {e}")))?;
        if images.dtype() != Dtype::U8 || images.shape() != [entry.count, 3, s, s] {
            return Err(bad(format!(
                "`images` is {:?} {:?}, expected U8 [{}, 3, {s}, {s}]",
                images.dtype(),
                images.shape(),
                entry.count
            )));
        }
        let labels = if self.manifest.labeled() {
            let t = st
                .tensor("labels")
                .map_err(|e| bad(format!("tensor `labels`: {e}")))?;
            if t.dtype() != Dtype::I64 || t.shape() != [entry.count] {
                return Err(bad(format!(
                    "`labels` is {:?} {:?}, expected I64 [{}]",
                    t.dtype(),
                    t.shape(),
                    entry.count
                )));
            }
            Some(
                t.data()
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect(),
            )
        } else {
            None
        };
        Ok(ImageBatch {
            image_size: s,
            images: images.data().to_vec(),
            labels,
        })
    }

    /// Every image in memory (fine for few-shot sets; stream shards for large ones).
    pub fn load_all(&self) -> Result<ImageBatch, ArtifactError> {
        let s = self.manifest.image_size;
        let mut all = ImageBatch {
            image_size: s,
            images: Vec::with_capacity(self.len() * 3 * s * s),
            labels: self.manifest.labeled().then(Vec::new),
        };
        for index in 0..self.manifest.shards.len() {
            let shard = self.read_shard(index)?;
            all.images.extend_from_slice(&shard.images);
            if let (Some(a), Some(b)) = (&mut all.labels, shard.labels) {
                a.extend(b);
            }
        }
        Ok(all)
    }

    /// Calls `f(global_index, chw, label)` for every image in order, one shard in memory.
    pub fn for_each<E: From<ArtifactError>>(
        &self,
        mut f: impl FnMut(usize, &[u8], Option<i64>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut index = 0;
        for shard_index in 0..self.manifest.shards.len() {
            let shard = self.read_shard(shard_index)?;
            for i in 0..shard.len() {
                f(index, shard.image(i), shard.labels.as_ref().map(|l| l[i]))?;
                index += 1;
            }
        }
        Ok(())
    }

    /// Calls `f` on every chunk of at most `batch` images (uint8 NCHW on the CPU), one
    /// shard in memory at a time, so memory does not grow with the set.
    pub fn for_each_chunk<E: From<ArtifactError>>(
        &self,
        batch: usize,
        mut f: impl FnMut(&tch::Tensor) -> Result<(), E>,
    ) -> Result<(), E> {
        for shard in 0..self.manifest.shards.len() {
            let images = self.read_shard(shard)?.to_tensor();
            for range in batches(images.size()[0] as usize, batch) {
                f(&images.narrow(0, range.start as i64, range.len() as i64))?;
            }
        }
        Ok(())
    }
}

/// Consecutive ranges of at most `batch` items covering `0..n`.
fn batches(n: usize, batch: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let batch = batch.max(1);
    (0..n).step_by(batch).map(move |s| s..(s + batch).min(n))
}
