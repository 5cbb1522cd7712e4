//! Decoding one image file (TIFF, PNG, JPEG, … by content, not by extension) to RGB8, and
//! the preprocessing of SPEC §1: shortest side resized to the target size (bilinear, as
//! albumentations `SmallestMaxSize`), then a centre crop to a square.

use super::DataError;
use image::{imageops::FilterType, RgbImage};
use std::path::Path;

/// File extensions the folder scanners pick up (case-insensitive).
pub const IMAGE_EXTENSIONS: &[&str] = &["tif", "tiff", "png", "jpg", "jpeg", "bmp"];

/// Whether `path` has an image file extension.
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Decodes `path` to 8-bit RGB (grey, alpha and 16-bit inputs are converted).
pub fn load_rgb(path: &Path) -> Result<RgbImage, DataError> {
    let decode_err = |reason: String| DataError::Decode {
        file: path.display().to_string(),
        reason,
    };
    let reader = image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    if reader.format().is_none() {
        return Err(decode_err("unrecognised image format".into()));
    }
    let img = reader.decode().map_err(|e| decode_err(e.to_string()))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(decode_err("image has no pixels".into()));
    }
    Ok(img.to_rgb8())
}

/// Resizes so the shorter side equals `size` (bilinear; the longer side rounded as
/// albumentations does), then crops the centre `size`×`size` square (offset rounded down).
pub fn fit_square(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let scale = size as f64 / w.min(h) as f64;
    let resized = if scale == 1.0 {
        img.clone()
    } else {
        let nw = ((w as f64 * scale).round() as u32).max(size);
        let nh = ((h as f64 * scale).round() as u32).max(size);
        image::imageops::resize(img, nw, nh, FilterType::Triangle)
    };
    let (rw, rh) = resized.dimensions();
    let (x0, y0) = ((rw - size) / 2, (rh - size) / 2);
    image::imageops::crop_imm(&resized, x0, y0, size, size).to_image()
}

/// [`load_rgb`] then [`fit_square`]: HWC bytes of a `size`×`size` RGB image.
pub fn load_square(path: &Path, size: u32) -> Result<Vec<u8>, DataError> {
    Ok(fit_square(&load_rgb(path)?, size).into_raw())
}
