//! The tensor-artifact format for image sets, shared by every data kind and every kind
//! that reads or writes images.
//!
//! An image set is a directory:
//! - `manifest.json`: format tag and version, layout, image size, count, class names in
//!   label order (empty when unlabeled), the shards with their image counts, and one item
//!   per image (its source file, relative to its data root, and its label).
//! - `images-00000.safetensors`, `images-00001.safetensors`, …: tensor `images`, uint8,
//!   **NCHW** (N, 3, H, W) — the layout the models consume, so a shard becomes a batch
//!   without a transpose — and, when labeled, tensor `labels`, int64 (N,).
//!
//! Sources are relative paths so that the artifact's content hash (and every downstream
//! stage key) does not depend on where the data lives on a given machine.

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Tag written into every manifest.
pub const FORMAT: &str = "histodiff/images";
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
/// Images per shard unless told otherwise (about 200 MB at 256² px).
pub const DEFAULT_SHARD_SIZE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: not a histodiff image set manifest: {reason}")]
    Manifest { file: String, reason: String },
    #[error("{file}: bad shard: {reason}")]
    Shard { file: String, reason: String },
    #[error("image set being written to {dir}: {reason}")]
    Write { dir: String, reason: String },
}

impl ArtifactError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ArtifactError::Io {
            file: path.display().to_string(),
            source,
        }
    }
}

/// One image of a set: where it came from and its label (absent when unlabeled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardEntry {
    pub file: String,
    pub count: usize,
}

/// The content of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// Always `NCHW`; stored so a reader can refuse anything else.
    pub layout: String,
    pub channels: usize,
    /// Images are square, `image_size`×`image_size`.
    pub image_size: usize,
    pub count: usize,
    /// Class names in label order; empty for an unlabeled set.
    pub classes: Vec<String>,
    pub shards: Vec<ShardEntry>,
    pub items: Vec<Item>,
}

impl Manifest {
    pub fn labeled(&self) -> bool {
        !self.classes.is_empty()
    }

    /// Bytes of one image (3·H·W).
    pub fn image_len(&self) -> usize {
        self.channels * self.image_size * self.image_size
    }

    /// Number of images per label (index = label).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for item in &self.items {
            if let Some(c) = item.label.and_then(|l| counts.get_mut(l as usize)) {
                *c += 1;
            }
        }
        counts
    }
}

/// Images (NCHW uint8) and labels of one shard or a whole set, in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageBatch {
    pub image_size: usize,
    pub images: Vec<u8>,
    pub labels: Option<Vec<i64>>,
}

impl ImageBatch {
    pub fn len(&self) -> usize {
        self.images.len() / (3 * self.image_size * self.image_size)
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The CHW bytes of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = 3 * self.image_size * self.image_size;
        &self.images[i * n..(i + 1) * n]
    }

    /// A uint8 tensor (N, 3, H, W) on the CPU.
    pub fn to_tensor(&self) -> tch::Tensor {
        let s = self.image_size as i64;
        tch::Tensor::from_slice(&self.images).view([self.len() as i64, 3, s, s])
    }

    /// Labels as an int64 tensor (N,), if labeled.
    pub fn labels_tensor(&self) -> Option<tch::Tensor> {
        self.labels.as_ref().map(|l| tch::Tensor::from_slice(l))
    }
}

/// Converts one RGB image from HWC (the image crate's layout) to CHW.
pub fn hwc_to_chw(hwc: &[u8], size: usize) -> Vec<u8> {
    let plane = size * size;
    let mut chw = vec![0u8; 3 * plane];
    for (p, px) in hwc.chunks_exact(3).enumerate() {
        chw[p] = px[0];
        chw[plane + p] = px[1];
        chw[2 * plane + p] = px[2];
    }
    chw
}

/// Converts one RGB image from CHW to HWC (for writing PNG files).
pub fn chw_to_hwc(chw: &[u8], size: usize) -> Vec<u8> {
    let plane = size * size;
    let mut hwc = vec![0u8; 3 * plane];
    for p in 0..plane {
        hwc[3 * p] = chw[p];
        hwc[3 * p + 1] = chw[plane + p];
        hwc[3 * p + 2] = chw[2 * plane + p];
    }
    hwc
}

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
}

/// Artifact errors reach a stage's caller as invalid input, naming the file.
impl From<ArtifactError> for histodiff_engine::stage::StageError {
    fn from(e: ArtifactError) -> Self {
        histodiff_engine::stage::StageError::Invalid(e.to_string())
    }
}
