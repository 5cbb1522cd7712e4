//! Random access to the images of an image set without loading it, for training on sets
//! far larger than memory (803k images at 256² px are 158 GB).
//!
//! Opening reads only each shard's safetensors header (8-byte length, then JSON), checks
//! it against the manifest and keeps the byte offset of the `images` data; an image is
//! then one positioned read of 3·H·W bytes. What stays in memory is O(N) small numbers:
//! the labels (taken from the manifest, not from the shards) and one entry per shard.

use super::{ArtifactError, ImageBatch, ImageSet, Manifest, ShardEntry, MANIFEST_FILE};
use serde::Deserialize;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Larger headers are refused rather than allocated (the safetensors crate's own limit).
const MAX_HEADER_LEN: u64 = 100_000_000;

#[derive(Debug, thiserror::Error)]
pub enum RandomAccessError {
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("image set {dir}: image index {index} is out of range (the set holds {len})")]
    OutOfRange {
        dir: String,
        index: usize,
        len: usize,
    },
}

/// Read errors reach a stage's caller as invalid input, naming the file or the index.
impl From<RandomAccessError> for histodiff_engine::stage::StageError {
    fn from(e: RandomAccessError) -> Self {
        histodiff_engine::stage::StageError::Invalid(e.to_string())
    }
}

/// Where one image lives: shard number and position within that shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImageLocation {
    pub shard: usize,
    pub offset: usize,
}

/// One shard file and where its image bytes start.
#[derive(Debug, Clone)]
struct ShardLayout {
    path: PathBuf,
    images_start: u64,
}

/// Reads any images of an opened [`ImageSet`], in any order, without loading the set.
/// Holds no open files: each read opens the shards it needs once, so a reader costs no
/// file handles between reads and can move to another thread.
#[derive(Debug, Clone)]
pub struct RandomAccess {
    dir: PathBuf,
    image_size: usize,
    shards: Vec<ShardLayout>,
    /// `starts[k]` is the global index of shard k's first image; the last entry is the
    /// set's length, so a lookup is one binary search.
    starts: Vec<usize>,
    labels: Option<Vec<i64>>,
}

impl RandomAccess {
    /// Reads and checks the header of every shard of `set` (not their data).
    pub fn open(set: &ImageSet) -> Result<Self, RandomAccessError> {
        let manifest = set.manifest();
        let labels = manifest_labels(set.dir(), manifest)?;
        let shards = manifest
            .shards
            .iter()
            .map(|entry| ShardLayout::read(set.dir(), entry, manifest))
            .collect::<Result<Vec<_>, _>>()?;
        let starts = std::iter::once(0)
            .chain(manifest.shards.iter().scan(0, |end, s| {
                *end += s.count;
                Some(*end)
            }))
            .collect();
        Ok(Self {
            dir: set.dir().to_path_buf(),
            image_size: manifest.image_size,
            shards,
            starts,
            labels,
        })
    }

    pub fn len(&self) -> usize {
        *self.starts.last().expect("starts holds at least 0")
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Images are `image_size`×`image_size`, 3 channels.
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// Bytes of one image (3·H·W).
    pub fn image_len(&self) -> usize {
        3 * self.image_size * self.image_size
    }

    /// The label of every image in set order, or `None` for an unlabeled set.
    pub fn labels(&self) -> Option<&[i64]> {
        self.labels.as_deref()
    }

    /// The shard and position of global image `index`, or `None` past the end.
    pub fn locate(&self, index: usize) -> Option<ImageLocation> {
        if index >= self.len() {
            return None;
        }
        // starts[0] = 0 ≤ index < len = starts[last]: the point is within 1..=shards.
        let shard = self.starts.partition_point(|&start| start <= index) - 1;
        Some(ImageLocation {
            shard,
            offset: index - self.starts[shard],
        })
    }

    /// The images (and labels) at `indices`, in that order; repeats are allowed.
    pub fn read(&self, indices: &[usize]) -> Result<ImageBatch, RandomAccessError> {
        let locations = indices
            .iter()
            .map(|&index| self.locate(index).ok_or_else(|| self.out_of_range(index)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut images = vec![0u8; indices.len() * self.image_len()];
        // Visit by location so each shard is opened once and read front to back.
        let mut visit: Vec<usize> = (0..indices.len()).collect();
        visit.sort_unstable_by_key(|&p| locations[p]);
        for group in visit.chunk_by(|&a, &b| locations[a].shard == locations[b].shard) {
            self.read_from_shard(&locations, group, &mut images)?;
        }
        let labels = self
            .labels
            .as_ref()
            .map(|all| indices.iter().map(|&i| all[i]).collect());
        Ok(ImageBatch {
            image_size: self.image_size,
            images,
            labels,
        })
    }

    /// Fills the batch positions `group` (all in one shard) of `images`.
    fn read_from_shard(
        &self,
        locations: &[ImageLocation],
        group: &[usize],
        images: &mut [u8],
    ) -> Result<(), ArtifactError> {
        let shard = &self.shards[locations[group[0]].shard];
        let file = File::open(&shard.path).map_err(|e| ArtifactError::io(&shard.path, e))?;
        let n = self.image_len();
        for &p in group {
            let at = shard.images_start + (locations[p].offset * n) as u64;
            file.read_exact_at(&mut images[p * n..(p + 1) * n], at)
                .map_err(|e| ArtifactError::io(&shard.path, e))?;
        }
        Ok(())
    }

    fn out_of_range(&self, index: usize) -> RandomAccessError {
        RandomAccessError::OutOfRange {
            dir: self.dir.display().to_string(),
            index,
            len: self.len(),
        }
    }
}

/// The manifest's labels as plain numbers, checked against its classes, so a read never
/// meets an unlabeled item of a labeled set.
fn manifest_labels(dir: &Path, manifest: &Manifest) -> Result<Option<Vec<i64>>, ArtifactError> {
    if !manifest.labeled() {
        return Ok(None);
    }
    let classes = manifest.classes.len() as i64;
    let labels = manifest
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| match item.label {
            Some(l) if (0..classes).contains(&l) => Ok(l),
            l => Err(ArtifactError::Manifest {
                file: dir.join(MANIFEST_FILE).display().to_string(),
                reason: format!(
                    "item {i} ({}) has label {l:?}, expected one of 0..{classes}",
                    item.source
                ),
            }),
        });
    labels.collect::<Result<Vec<_>, _>>().map(Some)
}

/// One tensor's entry in a safetensors header.
#[derive(Debug, Deserialize)]
struct TensorEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// The two tensors of a shard; other entries (`__metadata__`) are ignored.
#[derive(Debug, Deserialize)]
struct ShardHeader {
    images: TensorEntry,
    labels: Option<TensorEntry>,
}

impl ShardLayout {
    /// Reads the header of `entry`'s file and checks it as `ImageSet::read_shard` does.
    fn read(dir: &Path, entry: &ShardEntry, manifest: &Manifest) -> Result<Self, ArtifactError> {
        let path = dir.join(&entry.file);
        let bad = |reason: String| ArtifactError::Shard {
            file: path.display().to_string(),
            reason,
        };
        let (header, data_start, file_len) = read_header(&path).map_err(|e| match e {
            HeaderError::Io(e) => ArtifactError::io(&path, e),
            HeaderError::Bad(reason) => bad(reason),
        })?;
        let (count, s) = (entry.count, manifest.image_size);
        let data_len = file_len - data_start;
        check_tensor(
            "images",
            &header.images,
            "U8",
            &[count, 3, s, s],
            1,
            data_len,
        )
        .map_err(bad)?;
        if manifest.labeled() {
            let labels = header
                .labels
                .as_ref()
                .ok_or_else(|| bad("no tensor `labels` in a labeled set".into()))?;
            check_tensor("labels", labels, "I64", &[count], 8, data_len).map_err(bad)?;
        }
        Ok(Self {
            images_start: data_start + header.images.data_offsets[0],
            path,
        })
    }
}

/// Checks a tensor's dtype, shape and byte extent, and that its bytes lie within the
/// `data_len` bytes of the file's data section (a truncated shard fails here, on open).
fn check_tensor(
    name: &str,
    t: &TensorEntry,
    dtype: &str,
    shape: &[usize],
    item_bytes: u64,
    data_len: u64,
) -> Result<(), String> {
    if t.dtype != dtype || t.shape != shape {
        return Err(format!(
            "`{name}` is {} {:?}, expected {dtype} {shape:?}",
            t.dtype, t.shape
        ));
    }
    let [start, end] = t.data_offsets;
    // An overflowing size matches no real extent, so saturating is enough.
    let bytes = shape
        .iter()
        .fold(item_bytes, |acc, &d| acc.saturating_mul(d as u64));
    if end < start || end - start != bytes {
        return Err(format!(
            "`{name}` spans bytes {start}..{end} of the data, expected {bytes} bytes"
        ));
    }
    if end > data_len {
        return Err(format!(
            "`{name}` ends at byte {end} of the data but the file holds {data_len} (truncated?)"
        ));
    }
    Ok(())
}

enum HeaderError {
    Io(std::io::Error),
    Bad(String),
}

/// The parsed header, the file offset of the data section, and the file's length.
fn read_header(path: &Path) -> Result<(ShardHeader, u64, u64), HeaderError> {
    let file = File::open(path).map_err(HeaderError::Io)?;
    let file_len = file.metadata().map_err(HeaderError::Io)?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact_at(&mut len_bytes, 0)
        .map_err(|_| HeaderError::Bad(format!("{file_len} bytes, too short for a header")))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_LEN || 8 + header_len > file_len {
        return Err(HeaderError::Bad(format!(
            "header of {header_len} bytes does not fit a file of {file_len} bytes"
        )));
    }
    let mut json = vec![0u8; header_len as usize];
    file.read_exact_at(&mut json, 8).map_err(HeaderError::Io)?;
    let header =
        serde_json::from_slice(&json).map_err(|e| HeaderError::Bad(format!("header: {e}")))?;
    Ok((header, 8 + header_len, file_len))
}

impl RandomAccess {
    /// Several sets read as one, in the order given (e.g. the real few-shot set followed
    /// by selected synthetic sets). Their image sizes must agree, and either all are
    /// labeled or none is.
    pub fn concat(parts: Vec<RandomAccess>) -> Result<Self, RandomAccessError> {
        let mut parts = parts.into_iter();
        let mut all = parts.next().ok_or_else(|| ArtifactError::Write {
            dir: String::new(),
            reason: "no image set to read".into(),
        })?;
        for part in parts {
            let mismatch = |reason: String| ArtifactError::Manifest {
                file: part.dir.display().to_string(),
                reason,
            };
            if part.image_size != all.image_size {
                return Err(mismatch(format!(
                    "{} px images, the first set has {} px",
                    part.image_size, all.image_size
                ))
                .into());
            }
            if part.labels.is_some() != all.labels.is_some() {
                return Err(mismatch("labeled and unlabeled sets cannot be mixed".into()).into());
            }
            let offset = all.len();
            all.starts.pop();
            all.starts.extend(part.starts.iter().map(|s| s + offset));
            all.shards.extend(part.shards);
            if let (Some(a), Some(b)) = (&mut all.labels, part.labels) {
                a.extend(b);
            }
        }
        Ok(all)
    }
}
