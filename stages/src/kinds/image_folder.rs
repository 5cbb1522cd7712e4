//! `data/image-folder`: a labeled image set from class sub-folders
//! (`<root>/<CLASS>/<file>`, the NCT-CRC-HE-100K layout), labels in alphabetical class
//! order (ADI 0 … TUM 8) unless a class list is given. The root is either the `path`
//! parameter (external data, hashed by content) or an upstream folder bound to `folder`
//! (e.g. the output of `data/demo`).

use super::declare::kind;
use super::invalid;
use super::params::{optional, range, ExternalPath};
use crate::artifact::ingest::ingest_files;
use crate::data::folder::{class_names, scan_class_folders};
use histodiff_engine::stage::{StageContext, StageError};

kind! {
    /// labeled images in class sub-folders (NCT-CRC-HE-100K layout), TIFF/PNG/JPEG
    ImageFolder("data/image-folder", version: 1) -> [images] {
        /// root folder with one sub-folder per class (or bind input `folder`)
        path: Option<ExternalPath> = optional(),
        /// side of the square images after resize and centre crop (SPEC §1)
        image_size: usize = range(8..=4096).default(256),
        /// class folders to read, in label order (default: every sub-folder, sorted)
        classes: Option<Vec<String>> = optional(),
        /// at most this many images per class, first by file name (0 = all)
        limit: usize = range(0..).default(0),
    }
    inputs {
        /// an upstream class-folder directory, instead of `path`
        folder: Optional,
    }
}

fn run(ctx: &mut StageContext, p: Params) -> Result<(), StageError> {
    let bound = ctx.inputs("folder").first().map(|a| a.path.clone());
    let root = match (p.path, bound) {
        (Some(given), None) => given.path,
        (None, Some(bound)) => bound,
        (Some(_), Some(_)) => {
            return Err(StageError::Invalid(
                "give either parameter `path` or input `folder`, not both".into(),
            ))
        }
        (None, None) => {
            return Err(StageError::Invalid(
                "parameter `path` or input `folder` is required".into(),
            ))
        }
    };
    let classes = match p.classes {
        Some(c) if !c.is_empty() => c,
        _ => class_names(&root).map_err(invalid)?,
    };
    let found = scan_class_folders(&root, &classes, p.limit).map_err(invalid)?;
    ctx.log(format!(
        "{}: {} images in {} classes",
        root.display(),
        found.len(),
        classes.len()
    ));
    let found: Vec<_> = found.into_iter().map(|f| (f.relative.clone(), f)).collect();
    ingest_files(ctx, "images", &found, classes, p.image_size)?;
    Ok(())
}
