//! `data/images`: an unlabeled image set from several folders searched recursively and
//! concatenated in the order given (the pre-training sources of SPEC §9.4). Manifest
//! sources read `<path as written>/<relative file>`.

use super::declare::kind;
use super::invalid;
use super::params::{optional, range, ExternalPath};
use crate::artifact::ingest::ingest_files;
use crate::data::folder::scan_tree;
use histodiff_engine::stage::{StageContext, StageError};

kind! {
    /// unlabeled images from folders, several sources concatenated
    Images("data/images", version: 1) -> [images] {
        /// folders of images, searched recursively, concatenated in order
        paths: Option<Vec<ExternalPath>> = optional(),
        /// side of the square images after resize and centre crop (SPEC §1)
        image_size: usize = range(8..=4096).default(256),
        /// at most this many images per folder, first by path (0 = all)
        limit: usize = range(0..).default(0),
    }
    inputs {
        /// upstream image folders, read after `paths`
        folders: Any,
    }
}

fn run(ctx: &mut StageContext, p: Params) -> Result<(), StageError> {
    let mut roots: Vec<(String, _)> = (p.paths.unwrap_or_default().into_iter())
        .map(|e| (e.text, e.path))
        .collect();
    for (i, artifact) in ctx.inputs("folders").iter().enumerate() {
        roots.push((format!("folders.{i}"), artifact.path.clone()));
    }
    if roots.is_empty() {
        return Err(StageError::Invalid(
            "parameter `paths` or input `folders` must name at least one folder".into(),
        ));
    }
    let mut found = Vec::new();
    for (text, root) in &roots {
        let files = scan_tree(root, p.limit).map_err(invalid)?;
        ctx.log(format!("{}: {} images", root.display(), files.len()));
        let prefix = text.trim_end_matches('/');
        found.extend(
            files
                .into_iter()
                .map(|f| (format!("{prefix}/{}", f.relative), f)),
        );
    }
    ingest_files(ctx, "images", &found, Vec::new(), p.image_size)?;
    Ok(())
}
