//! `data/image-folder`: a labeled image set from class sub-folders
//! (`<root>/<CLASS>/<file>`, the NCT-CRC-HE-100K layout), labels in alphabetical class
//! order (ADI 0 … TUM 8) unless a class list is given. The root is either the `path`
//! parameter (external data, hashed by content) or an upstream folder bound to `folder`
//! (e.g. the output of `data/demo`).

use super::ingest::ingest_files;
use super::schema::{
    image_size_param, int, invalid, list, optional_path, param, slot, string_list, usize_param,
};
use crate::data::folder::{class_names, scan_class_folders};
use histodiff_engine::registry::{KindSpec, ParamType};
use histodiff_engine::stage::{Stage, StageContext, StageError};
use serde_json::Value;

pub struct ImageFolder;

impl Stage for ImageFolder {
    fn spec(&self) -> KindSpec {
        KindSpec {
            name: "data/image-folder".into(),
            version: 1,
            params: vec![
                param(
                    "path",
                    ParamType::Path,
                    Some(Value::Null),
                    "root folder with one sub-folder per class (or bind input `folder`)",
                ),
                image_size_param(256),
                param(
                    "classes",
                    list(ParamType::String),
                    Some(Value::Null),
                    "class folders to read, in label order (default: every sub-folder, sorted)",
                ),
                param(
                    "limit",
                    int(Some(0), None),
                    Some(0.into()),
                    "at most this many images per class, first by file name (0 = all)",
                ),
            ],
            inputs: vec![slot(
                "folder",
                false,
                false,
                "an upstream class-folder directory, instead of `path`",
            )],
            outputs: vec!["images".into()],
            resumable: false,
            doc: "labeled images in class sub-folders (NCT-CRC-HE-100K layout), TIFF/PNG/JPEG"
                .into(),
        }
    }

    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let path = optional_path(ctx, "path")?;
        let bound = ctx.inputs("folder").first().map(|a| a.path.clone());
        let root = match (path, bound) {
            (Some((_, p)), None) => p,
            (None, Some(p)) => p,
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
        let size = usize_param(ctx, "image_size")?;
        let classes = match string_list(ctx, "classes")? {
            Some(c) if !c.is_empty() => c,
            _ => class_names(&root).map_err(invalid)?,
        };
        let found =
            scan_class_folders(&root, &classes, usize_param(ctx, "limit")?).map_err(invalid)?;
        ctx.log(format!(
            "{}: {} images in {} classes",
            root.display(),
            found.len(),
            classes.len()
        ));
        let found: Vec<_> = found.into_iter().map(|f| (f.relative.clone(), f)).collect();
        ingest_files(ctx, "images", &found, classes, size)?;
        Ok(())
    }
}
