//! Image-set artifacts (the tensor format of stages/src/artifact: `manifest.json` plus
//! safetensors shards of uint8 NCHW images) read for previews: the set's description,
//! and one image at a time as a PNG. Only the requested image's bytes are read from its
//! shard (the header says where the tensor starts), so a preview of a 200 MB shard reads
//! a few kilobytes. Shards are found by their exact names in the directory's manifest,
//! never by joining a name onto a path.

use super::error::{ApiError, ApiResult};
use histodiff_engine::hash::{ArtifactHash, Manifest as DirManifest};
use histodiff_engine::store::Store;
use serde::Deserialize;
use std::io::{Read, Seek, SeekFrom};

/// The image set's own manifest file inside the directory.
const MANIFEST_FILE: &str = "manifest.json";
/// Its format tag.
const FORMAT: &str = "histodiff/images";
/// Larger image-set manifests (millions of items) are not previewed.
const MAX_MANIFEST_BYTES: u64 = 64 << 20;
/// A safetensors header larger than this is not believed.
const MAX_HEADER_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Deserialize)]
pub struct Item {
    #[serde(default)]
    pub label: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Shard {
    pub file: String,
    pub count: usize,
}

/// The fields of an image set's `manifest.json` a preview needs.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageSet {
    pub format: String,
    pub layout: String,
    pub channels: usize,
    pub image_size: usize,
    pub count: usize,
    pub classes: Vec<String>,
    pub shards: Vec<Shard>,
    pub items: Vec<Item>,
}

impl ImageSet {
    /// The image set a directory artifact holds, if it is one.
    pub fn of(store: &dyn Store, dir: &DirManifest) -> Option<ImageSet> {
        let entry = dir.entries.iter().find(|e| e.path == MANIFEST_FILE)?;
        if entry.size > MAX_MANIFEST_BYTES {
            return None;
        }
        let path = store.objects().path_of(entry.hash.as_ref()?).ok()?;
        let bytes = std::fs::read(path).ok()?;
        let set: ImageSet = serde_json::from_slice(&bytes).ok()?;
        let usable = set.format == FORMAT
            && set.layout == "NCHW"
            && matches!(set.channels, 1 | 3)
            && set.image_size > 0;
        usable.then_some(set)
    }

    /// Class name of image `n`, if labelled.
    pub fn label_of(&self, n: usize) -> Option<String> {
        let label = self.items.get(n)?.label?;
        let name = usize::try_from(label)
            .ok()
            .and_then(|l| self.classes.get(l));
        Some(name.cloned().unwrap_or_else(|| label.to_string()))
    }

    /// Image `n` as a PNG.
    pub fn png(&self, store: &dyn Store, dir: &DirManifest, n: usize) -> ApiResult<Vec<u8>> {
        if n >= self.count {
            return Err(ApiError::NotFound(format!(
                "image {n} of a set of {}",
                self.count
            )));
        }
        let (shard, index) = self.locate(n)?;
        let entry = dir
            .entries
            .iter()
            .find(|e| e.path == shard.file)
            .and_then(|e| e.hash.clone())
            .ok_or_else(|| ApiError::NotFound(format!("shard {} is not in the set", shard.file)))?;
        let pixels = self.read_pixels(store, &entry, index)?;
        encode_png(&pixels, self.channels, self.image_size)
    }

    /// The shard holding image `n`, and its index there.
    fn locate(&self, n: usize) -> ApiResult<(&Shard, usize)> {
        let mut first = 0;
        for shard in &self.shards {
            if n < first + shard.count {
                return Ok((shard, n - first));
            }
            first += shard.count;
        }
        Err(ApiError::NotFound(format!("image {n} is in no shard")))
    }

    fn image_len(&self) -> usize {
        self.channels * self.image_size * self.image_size
    }

    /// The CHW bytes of image `index` of a shard object.
    fn read_pixels(
        &self,
        store: &dyn Store,
        shard: &ArtifactHash,
        index: usize,
    ) -> ApiResult<Vec<u8>> {
        let path = store.objects().path_of(shard).map_err(ApiError::store)?;
        let mut file = std::fs::File::open(&path).map_err(ApiError::store)?;
        let (data_start, tensor) = read_header(&mut file)?;
        let len = self.image_len();
        let begin = tensor.data_offsets[0] + (index * len) as u64;
        let inside = tensor.dtype == "U8" && begin + len as u64 <= tensor.data_offsets[1];
        if !inside {
            return Err(ApiError::store(format!("shard {shard}: bad images tensor")));
        }
        let mut pixels = vec![0u8; len];
        file.seek(SeekFrom::Start(data_start + begin))
            .and_then(|_| file.read_exact(&mut pixels))
            .map_err(ApiError::store)?;
        Ok(pixels)
    }
}

#[derive(Debug, Deserialize)]
struct TensorInfo {
    dtype: String,
    data_offsets: [u64; 2],
}

/// The safetensors header: where the data starts, and the `images` tensor's entry.
fn read_header(file: &mut std::fs::File) -> ApiResult<(u64, TensorInfo)> {
    let bad = |why: &str| ApiError::store(format!("bad safetensors shard: {why}"));
    let mut size = [0u8; 8];
    file.read_exact(&mut size).map_err(ApiError::store)?;
    let header_len = u64::from_le_bytes(size);
    if header_len > MAX_HEADER_BYTES {
        return Err(bad("header too large"));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(ApiError::store)?;
    let mut tensors: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|_| bad("header is not JSON"))?;
    let images = tensors.remove("images").ok_or_else(|| bad("no images"))?;
    let info: TensorInfo = serde_json::from_value(images).map_err(|_| bad("images entry"))?;
    Ok((8 + header_len, info))
}

/// CHW bytes (1 or 3 channels) → PNG.
fn encode_png(chw: &[u8], channels: usize, size: usize) -> ApiResult<Vec<u8>> {
    let plane = size * size;
    let mut rgb = Vec::with_capacity(plane * 3);
    for p in 0..plane {
        for c in 0..3 {
            rgb.push(chw[(c % channels) * plane + p]);
        }
    }
    let side = u32::try_from(size).map_err(ApiError::store)?;
    let image = image::RgbImage::from_raw(side, side, rgb)
        .ok_or_else(|| ApiError::store("image buffer of the wrong size"))?;
    let mut png = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(ApiError::store)?;
    Ok(png.into_inner())
}
