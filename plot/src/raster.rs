//! PNG encoding and figure files shared by every figure kind: plotters draws into an RGB
//! buffer, the workspace's `image` encodes it (plotters' own encoder is not compiled in).

use crate::PlotError;
use std::path::{Path, PathBuf};

/// Encodes a `width`×`height` RGB buffer (row-major, 3 bytes a pixel) as PNG bytes.
pub(crate) fn encode_png(rgb: Vec<u8>, width: u32, height: u32) -> Result<Vec<u8>, PlotError> {
    let image = image::RgbImage::from_raw(width, height, rgb).ok_or_else(|| {
        PlotError::Encode(format!(
            "the RGB buffer does not hold {width}×{height} pixels"
        ))
    })?;
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|e| PlotError::Encode(e.to_string()))?;
    Ok(bytes.into_inner())
}

/// `<stem>.<extension>`: the extension is appended, so a stem with a dot keeps it.
pub(crate) fn with_extension(stem: &Path, extension: &str) -> PathBuf {
    let mut name = stem.as_os_str().to_owned();
    name.push(".");
    name.push(extension);
    PathBuf::from(name)
}

/// Writes `bytes` to `<stem>.<extension>`.
pub(crate) fn write_file(stem: &Path, extension: &str, bytes: &[u8]) -> Result<(), PlotError> {
    let path = with_extension(stem, extension);
    std::fs::write(&path, bytes).map_err(|source| PlotError::Write { path, source })
}
