//! `data/demo`: writes the procedural CRC-like demo dataset (crate::data::demo) as PNG
//! files in class folders, to feed `data/image-folder` through its `folder` input, so
//! the quickstart exercises the real decoders on real files.

use super::schema::{int, invalid, list, param, string_list, usize_param};
use crate::data::demo::{write_image_folder, CRC_CLASSES};
use histodiff_engine::registry::{KindSpec, ParamType};
use histodiff_engine::stage::{Stage, StageContext, StageError};

pub struct Demo;

impl Stage for Demo {
    fn spec(&self) -> KindSpec {
        KindSpec {
            name: "data/demo".into(),
            version: 1,
            params: vec![
                param(
                    "classes",
                    list(ParamType::String),
                    Some(CRC_CLASSES.to_vec().into()),
                    "tissue classes to draw (names of NCT-CRC-HE-100K)",
                ),
                param(
                    "per_class",
                    int(Some(1), Some(100_000)),
                    Some(50.into()),
                    "images per class",
                ),
                param(
                    "image_size",
                    int(Some(8), Some(1024)),
                    Some(64.into()),
                    "side of the square PNG images",
                ),
                param(
                    "seed",
                    int(Some(0), None),
                    Some(0.into()),
                    "seed; every image is a function of (seed, class, index)",
                ),
            ],
            inputs: vec![],
            outputs: vec!["folder".into()],
            resumable: false,
            doc: "procedural tissue-like demo images for the 9 CRC classes, as PNG class folders"
                .into(),
        }
    }

    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let classes = string_list(ctx, "classes")?
            .unwrap_or_else(|| CRC_CLASSES.iter().map(|c| c.to_string()).collect());
        let per_class = usize_param(ctx, "per_class")?;
        let size = usize_param(ctx, "image_size")? as u32;
        let seed = ctx.param_i64("seed")? as u64;
        let root = ctx.output_path("folder");
        let written = write_image_folder(&root, &classes, per_class, size, seed, |done, total| {
            if done % per_class.max(1) == 0 {
                ctx.progress(done as u64, total as u64, None);
            }
        })
        .map_err(invalid)?;
        ctx.log(format!(
            "{written} demo images written to {}",
            root.display()
        ));
        Ok(())
    }
}
