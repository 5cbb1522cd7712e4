//! `data/demo`: writes the procedural CRC-like demo dataset (crate::data::demo) as PNG
//! files in class folders, to feed `data/image-folder` through its `folder` input, so
//! the quickstart exercises the real decoders on real files.

use super::declare::kind;
use super::invalid;
use super::params::{default, range};
use crate::data::demo::{write_image_folder, CRC_CLASSES};
use histodiff_engine::stage::{StageContext, StageError};

kind! {
    /// procedural tissue-like demo images for the 9 CRC classes, as PNG class folders
    Demo("data/demo", version: 1) -> [folder] {
        /// tissue classes to draw (names of NCT-CRC-HE-100K)
        classes: Vec<String> = default(CRC_CLASSES),
        /// images per class
        per_class: usize = range(1..=100_000).default(50),
        /// side of the square PNG images
        image_size: u32 = range(8..=1024).default(64),
        /// seed; every image is a function of (seed, class, index)
        seed: u64 = range(0..).default(0),
    }
}

fn run(ctx: &mut StageContext, p: Params) -> Result<(), StageError> {
    let root = ctx.output_path("folder");
    let per_class = p.per_class;
    let written = write_image_folder(
        &root,
        &p.classes,
        per_class,
        p.image_size,
        p.seed,
        |done, total| {
            if done % per_class == 0 {
                ctx.progress(done as u64, total as u64, None);
            }
        },
    )
    .map_err(invalid)?;
    ctx.log(format!(
        "{written} demo images written to {}",
        root.display()
    ));
    Ok(())
}
