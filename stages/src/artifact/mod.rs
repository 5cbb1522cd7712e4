//! The artifacts kinds exchange, each read and written by one module: image sets here
//! (below); the autoencoder, the diffusion UNet, the guidance classifiers ϕ and φ, the
//! downstream ViT classifier and the StyleGAN2 generator in the submodules. A kind that
//! consumes another kind's output reads it with the module of its type, never with the
//! producing kind's code.
//!
//! The image-set format is shared by every data kind and every kind that reads or writes
//! images.
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

use serde::{Deserialize, Serialize};
use std::path::Path;

pub mod autoencoder;
pub mod classifier;
pub mod generator;
pub mod ingest;
pub mod pixels;
pub mod pool;
mod random_access;
mod reader;
pub mod unet;
pub mod unet_classifier;
mod writer;

pub use random_access::{ImageLocation, RandomAccess, RandomAccessError};
pub use reader::ImageSet;
pub use writer::{write_shard, ImageSetWriter};

/// A data or weights error as the stage error that carries its message (which names the
/// file and the place).
pub fn invalid(e: impl std::fmt::Display) -> histodiff_engine::stage::StageError {
    histodiff_engine::stage::StageError::Invalid(e.to_string())
}

/// Loads the weights file `path` into `vs` strictly (every tensor name and shape) and
/// freezes it: a model read to be used, not trained.
fn load_frozen(
    mut vs: tch::nn::VarStore,
    path: &Path,
) -> Result<tch::nn::VarStore, histodiff_engine::stage::StageError> {
    crate::weights::load_strict(&mut vs, path, |_| false).map_err(invalid)?;
    vs.freeze();
    Ok(vs)
}

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

/// Artifact errors reach a stage's caller as invalid input, naming the file.
impl From<ArtifactError> for histodiff_engine::stage::StageError {
    fn from(e: ArtifactError) -> Self {
        histodiff_engine::stage::StageError::Invalid(e.to_string())
    }
}
