//! Sample grids: a PNG with one row per class and the first few images of that class,
//! from any labeled image set (selected synthetic images, candidate pools, real sets).

use crate::artifact::{chw_to_hwc, ArtifactError, ImageSet};
use image::RgbImage;
use std::path::Path;

/// Draws up to `per_row` images of each class of `set`, `pad` pixels apart, and writes
/// the PNG to `out`. Returns (rows, columns).
pub fn write_class_grid(
    set: &ImageSet,
    per_row: usize,
    pad: u32,
    out: &Path,
) -> Result<(usize, usize), ArtifactError> {
    let m = set.manifest();
    let rows = m.classes.len().max(1);
    let s = m.image_size as u32;
    let cell = s + pad;
    let mut canvas = RgbImage::from_pixel(
        per_row as u32 * cell + pad,
        rows as u32 * cell + pad,
        image::Rgb([255, 255, 255]),
    );
    let mut filled = vec![0usize; rows];
    set.for_each(|_, chw, label| {
        let r = label.unwrap_or(0) as usize;
        if r < rows && filled[r] < per_row {
            let img = RgbImage::from_raw(s, s, chw_to_hwc(chw, s as usize))
                .expect("image size from manifest");
            image::imageops::replace(
                &mut canvas,
                &img,
                (pad + filled[r] as u32 * cell) as i64,
                (pad + r as u32 * cell) as i64,
            );
            filled[r] += 1;
        }
        Ok::<(), ArtifactError>(())
    })?;
    canvas.save(out).map_err(|e| ArtifactError::Write {
        dir: out.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok((rows, per_row))
}
