//! `data/npy`: an unlabeled image set from PanNuke-style `images.npy` arrays
//! ((N, H, W, 3), float or integer, cast to uint8), several files concatenated in order,
//! each image resized and centre-cropped as in SPEC §1. Sources read `<path>#<index>`.

use super::declare::kind;
use super::invalid;
use super::params::{range, required, ExternalPath};
use crate::artifact::{ImageSetWriter, DEFAULT_SHARD_SIZE};
use crate::data::image_file::fit_square;
use crate::data::npy::NpyImages;
use histodiff_engine::stage::{StageContext, StageError};
use image::RgbImage;

kind! {
    /// unlabeled images from NumPy arrays (PanNuke layout), cast to uint8
    Npy("data/npy", version: 1) -> [images] {
        /// `.npy` files of shape (N, H, W, 3), e.g. PanNuke `Fold 1/images/fold1/images.npy`
        paths: Vec<ExternalPath> = required(),
        /// side of the square images after resize and centre crop (SPEC §1)
        image_size: usize = range(8..=4096).default(256),
        /// at most this many images per file (0 = all)
        limit: usize = range(0..).default(0),
    }
}

fn run(ctx: &mut StageContext, p: Params) -> Result<(), StageError> {
    let files = p.paths;
    if files.is_empty() {
        return Err(StageError::Invalid(
            "parameter `paths` must name at least one .npy file".into(),
        ));
    }
    let (size, limit) = (p.image_size, p.limit);
    let mut arrays = Vec::new();
    for ExternalPath { text, path } in &files {
        let array = NpyImages::open(path).map_err(invalid)?;
        let n = if limit > 0 {
            array.count.min(limit)
        } else {
            array.count
        };
        ctx.log(format!(
            "{}: {n} of {} images of {}×{} px",
            path.display(),
            array.count,
            array.height,
            array.width
        ));
        arrays.push((text.clone(), array, n));
    }
    let total: usize = arrays.iter().map(|a| a.2).sum();
    let mut writer = ImageSetWriter::create(
        &ctx.output_path("images"),
        Vec::new(),
        size,
        DEFAULT_SHARD_SIZE,
    )
    .map_err(invalid)?;
    let every = (total / 100).max(1);
    for (text, mut array, n) in arrays {
        for i in 0..n {
            let hwc = array.read_image(i).map_err(invalid)?;
            let img = RgbImage::from_raw(array.width as u32, array.height as u32, hwc).ok_or_else(
                || StageError::Invalid(format!("{text}: image {i} has the wrong byte count")),
            )?;
            writer
                .push_hwc(
                    &fit_square(&img, size as u32).into_raw(),
                    None,
                    format!("{text}#{i}"),
                )
                .map_err(invalid)?;
            if writer.len() % every == 0 || writer.len() == total {
                ctx.progress(writer.len() as u64, total as u64, None);
            }
        }
    }
    writer.finish().map_err(invalid)?;
    Ok(())
}
