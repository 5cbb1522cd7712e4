//! Listing image files in the two on-disk layouts the data kinds read:
//! class sub-folders (`<root>/<CLASS>/<file>`, NCT-CRC-HE-100K) and plain folders searched
//! recursively (pre-training sources). Listings are sorted so that an image set, and so
//! its content hash, never depends on directory order.

use super::image_file::is_image_file;
use super::DataError;
use std::path::{Path, PathBuf};

/// One image file found on disk with its path relative to the data root.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundImage {
    pub path: PathBuf,
    /// `/`-separated path below the root, recorded in the manifest.
    pub relative: String,
    pub label: Option<i64>,
}

/// Sorted entries of `dir`, skipping hidden names (`.DS_Store`, `._x.tif`).
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let read = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut entries = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            entries.push(entry.path());
        }
    }
    entries.sort();
    Ok(entries)
}

fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Class names of a class-folder root: its sub-folders, sorted (ADI, BACK, …, TUM).
pub fn class_names(root: &Path) -> Result<Vec<String>, DataError> {
    let mut names = Vec::new();
    for path in sorted_entries(root)? {
        if path.is_dir() {
            names.push(
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    if names.is_empty() {
        return Err(DataError::layout(
            root,
            "no class sub-folders (expected <root>/<CLASS>/<image>)",
        ));
    }
    Ok(names)
}

/// Image files of each class folder, labels by position in `classes`; at most `limit`
/// per class (first in name order) when `limit > 0`.
pub fn scan_class_folders(
    root: &Path,
    classes: &[String],
    limit: usize,
) -> Result<Vec<FoundImage>, DataError> {
    let mut found = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let dir = root.join(class);
        if !dir.is_dir() {
            return Err(DataError::layout(
                &dir,
                format!("class folder `{class}` is missing"),
            ));
        }
        let mut files: Vec<PathBuf> = sorted_entries(&dir)?
            .into_iter()
            .filter(|p| p.is_file() && is_image_file(p))
            .collect();
        if files.is_empty() {
            return Err(DataError::layout(
                &dir,
                format!("class folder `{class}` holds no image files"),
            ));
        }
        if limit > 0 {
            files.truncate(limit);
        }
        found.extend(files.into_iter().map(|path| FoundImage {
            relative: relative(root, &path),
            path,
            label: Some(label as i64),
        }));
    }
    Ok(found)
}

/// Every image file below `root`, recursively, in sorted path order; at most `limit`
/// when `limit > 0`.
pub fn scan_tree(root: &Path, limit: usize) -> Result<Vec<FoundImage>, DataError> {
    if !root.is_dir() {
        return Err(DataError::layout(root, "not a directory"));
    }
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = sorted_entries(&dir)?;
        // Depth-first in sorted order: push sub-folders reversed so the first pops first.
        let (dirs, files): (Vec<PathBuf>, Vec<PathBuf>) =
            entries.into_iter().partition(|p| p.is_dir());
        found.extend(
            files
                .into_iter()
                .filter(|p| is_image_file(p))
                .map(|path| FoundImage {
                    relative: relative(root, &path),
                    path,
                    label: None,
                }),
        );
        stack.extend(dirs.into_iter().rev());
    }
    found.sort_by(|a, b| a.relative.cmp(&b.relative));
    if limit > 0 {
        found.truncate(limit);
    }
    if found.is_empty() {
        return Err(DataError::layout(
            root,
            "holds no image files (tif, png, jpg, …)",
        ));
    }
    Ok(found)
}
