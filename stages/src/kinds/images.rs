//! `data/images`: an unlabeled image set from several folders searched recursively and
//! concatenated in the order given (the pre-training sources of SPEC §9.4). Manifest
//! sources read `<path as written>/<relative file>`.

use super::ingest::ingest_files;
use super::schema::{image_size_param, int, invalid, list, param, path_list, slot, usize_param};
use crate::data::folder::scan_tree;
use histodiff_engine::registry::{KindSpec, ParamType};
use histodiff_engine::stage::{Stage, StageContext, StageError};
use serde_json::Value;

pub struct Images;

impl Stage for Images {
    fn spec(&self) -> KindSpec {
        KindSpec {
            name: "data/images".into(),
            version: 1,
            params: vec![
                param(
                    "paths",
                    list(ParamType::Path),
                    Some(Value::Null),
                    "folders of images, searched recursively, concatenated in order",
                ),
                image_size_param(256),
                param(
                    "limit",
                    int(Some(0), None),
                    Some(0.into()),
                    "at most this many images per folder, first by path (0 = all)",
                ),
            ],
            inputs: vec![slot(
                "folders",
                false,
                true,
                "upstream image folders, read after `paths`",
            )],
            outputs: vec!["images".into()],
            resumable: false,
            doc: "unlabeled images from folders, several sources concatenated".into(),
        }
    }

    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let mut roots = path_list(ctx, "paths")?;
        for (i, artifact) in ctx.inputs("folders").iter().enumerate() {
            roots.push((format!("folders.{i}"), artifact.path.clone()));
        }
        if roots.is_empty() {
            return Err(StageError::Invalid(
                "parameter `paths` or input `folders` must name at least one folder".into(),
            ));
        }
        let limit = usize_param(ctx, "limit")?;
        let mut found = Vec::new();
        for (text, root) in &roots {
            let files = scan_tree(root, limit).map_err(invalid)?;
            ctx.log(format!("{}: {} images", root.display(), files.len()));
            let prefix = text.trim_end_matches('/');
            found.extend(
                files
                    .into_iter()
                    .map(|f| (format!("{prefix}/{}", f.relative), f)),
            );
        }
        let size = usize_param(ctx, "image_size")?;
        ingest_files(ctx, "images", &found, Vec::new(), size)?;
        Ok(())
    }
}
