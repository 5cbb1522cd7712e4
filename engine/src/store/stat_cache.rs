//! Hashing external data (path parameters, command `deps`) through the stat cache, so a
//! second run over a 100,000-patch dataset reads directory entries and inodes, not bytes.
//!
//! A file whose (absolute path, size, mtime in ns, inode) matches its stat-cache row takes
//! the row's hash without being opened. A directory is walked (metadata only), looked up
//! in a few batched queries, and only new or changed files are read; its hash is the same
//! manifest hash [`crate::hash::hash_dir`] computes. A file modified within the last
//! [`RACY_WINDOW`] is hashed but not cached: a write in the same timestamp tick could
//! otherwise leave a stale row that matches (git's "racily clean" problem).

use super::types::StatEntry;
use super::{Store, StoreError, StoreResult};
use crate::hash::{self, walk_manifest, ArtifactHash, HashError, Manifest};
use crate::protocol::ArtifactKind;
use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Files modified more recently than this are not cached (see the module doc).
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Reads a file and hashes its bytes; injectable so tests can count reads.
pub type FileHasher = Arc<dyn Fn(&Path) -> Result<ArtifactHash, HashError> + Send + Sync>;

/// The hash of external data, and how many files had to be read for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalHash {
    pub hash: ArtifactHash,
    pub kind: ArtifactKind,
    pub size: u64,
    pub files_read: usize,
    /// Files read but too recently modified to enter the stat cache (see the module doc).
    pub files_racy: usize,
}

/// Hashes a file or directory, reading only files the stat cache does not vouch for.
pub async fn hash_external(store: &dyn Store, path: &Path) -> StoreResult<ExternalHash> {
    hash_external_with(store, path, Arc::new(|p: &Path| hash::hash_file(p))).await
}

/// [`hash_external`] with a chosen file hasher.
pub async fn hash_external_with(
    store: &dyn Store,
    path: &Path,
    hasher: FileHasher,
) -> StoreResult<ExternalHash> {
    let paths = [path.to_path_buf()];
    let mut hashes = hash_externals_with(store, &paths, hasher)
        .await
        .map_err(|(_, e)| e)?;
    Ok(hashes.remove(0))
}

/// [`hash_externals_with`] with the real file hasher.
pub async fn hash_externals(
    store: &dyn Store,
    paths: &[PathBuf],
) -> Result<Vec<ExternalHash>, (PathBuf, StoreError)> {
    hash_externals_with(store, paths, Arc::new(|p: &Path| hash::hash_file(p))).await
}

/// Hashes many files and directories with one scan pass, one batched lookup and one
/// write: a sweep with 10,000 `deps` costs a few queries, not 10,000 round trips. The
/// error names the path it concerns.
pub async fn hash_externals_with(
    store: &dyn Store,
    paths: &[PathBuf],
    hasher: FileHasher,
) -> Result<Vec<ExternalHash>, (PathBuf, StoreError)> {
    let scans: Vec<Scan> = blocking_located({
        let paths = paths.to_vec();
        move || {
            let mut parents = Canonical::default();
            paths.iter().map(|p| scan_path(p, &mut parents)).collect()
        }
    })
    .await?;
    let files: Vec<String> = scans
        .iter()
        .flat_map(|s| s.files.iter().map(|f| f.path.clone()))
        .collect();
    let first = || paths.first().cloned().unwrap_or_default();
    let known = store
        .stat_get_many(&files)
        .await
        .map_err(|e| (first(), e))?;
    let hashed: Vec<Hashed> = blocking_located({
        let paths = paths.to_vec();
        move || {
            let racy_after = now_ns() - RACY_WINDOW.as_nanos() as i64;
            scans
                .into_iter()
                .zip(paths)
                .map(|(scan, path)| {
                    hash_missing(scan, &known, &hasher, racy_after).map_err(|e| (path, e))
                })
                .collect()
        }
    })
    .await?;
    let mut fresh = Vec::new();
    let results = hashed
        .into_iter()
        .map(|h| {
            fresh.extend(h.fresh);
            h.result
        })
        .collect();
    store
        .stat_put_many(&fresh)
        .await
        .map_err(|e| (first(), e))?;
    Ok(results)
}

/// The metadata scan of one top-level path. The path may be a link (a dataset linked
/// into the project); inside a directory, links are refused by the manifest walk.
fn scan_path(path: &Path, parents: &mut Canonical) -> Result<Scan, (PathBuf, HashError)> {
    let located = |e| (path.to_path_buf(), e);
    let (root, meta) = parents
        .resolve(path)
        .map_err(|e| located(HashError::io(path, e)))?;
    scan(&root, meta).map_err(located)
}

/// `canonicalize`, with each parent directory resolved once: 10,000 `deps` in one
/// folder cost one walk of its components and 10,000 `lstat`s, not 50,000 `readlink`s.
#[derive(Default)]
struct Canonical {
    parents: HashMap<PathBuf, PathBuf>,
}

impl Canonical {
    /// The canonical path, and its `lstat` when that was read on the way (the scan
    /// needs it next: one `lstat` per file, not two).
    fn resolve(&mut self, path: &Path) -> std::io::Result<(PathBuf, Option<Metadata>)> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Ok((std::fs::canonicalize(path)?, None));
        };
        if name == ".." || parent.as_os_str().is_empty() {
            return Ok((std::fs::canonicalize(path)?, None));
        }
        let parent = match self.parents.get(parent) {
            Some(resolved) => resolved.clone(),
            None => {
                let resolved = std::fs::canonicalize(parent)?;
                self.parents.insert(parent.to_path_buf(), resolved.clone());
                resolved
            }
        };
        let joined = parent.join(name);
        // The last component may itself be a link; only then resolve it fully.
        let meta = std::fs::symlink_metadata(&joined)?;
        if meta.file_type().is_symlink() {
            Ok((std::fs::canonicalize(&joined)?, None))
        } else {
            Ok((joined, Some(meta)))
        }
    }
}

/// A file found by the scan, identified as the stat cache keys it.
struct ScannedFile {
    path: String,
    size: u64,
    mtime_ns: i64,
    inode: u64,
}

struct Scan {
    kind: ArtifactKind,
    /// For a directory: the manifest with placeholder file hashes, in canonical order.
    manifest: Option<Manifest>,
    files: Vec<ScannedFile>,
}

struct Hashed {
    result: ExternalHash,
    fresh: Vec<StatEntry>,
}

/// Runs metadata and hashing work off the async threads; errors keep their path.
async fn blocking_located<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, (PathBuf, HashError)> + Send + 'static,
) -> Result<T, (PathBuf, StoreError)> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|(path, e)| (path, StoreError::from(e))),
        Err(e) => Err((
            PathBuf::new(),
            StoreError::Unsupported(format!("hashing task failed: {e}")),
        )),
    }
}

fn scanned(path: &Path, meta: &Metadata) -> Result<ScannedFile, HashError> {
    let path = path
        .to_str()
        .ok_or_else(|| HashError::NonUtf8 { path: path.into() })?;
    Ok(ScannedFile {
        path: path.to_string(),
        size: meta.len(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        inode: meta.ino(),
    })
}

/// Metadata only: no file is opened. `meta` is the root's `lstat`, if already read.
fn scan(root: &Path, meta: Option<Metadata>) -> Result<Scan, HashError> {
    let meta = match meta {
        Some(meta) => meta,
        None => std::fs::symlink_metadata(root).map_err(|e| HashError::io(root, e))?,
    };
    let kind = hash::artifact_kind(root, &meta)?;
    if kind == ArtifactKind::File {
        let files = vec![scanned(root, &meta)?];
        return Ok(Scan {
            kind,
            manifest: None,
            files,
        });
    }
    let mut files = Vec::new();
    // Until the hashes are known, each file entry holds its index into `files` (see
    // `fill_hashes`), which spares a 100,000-entry path map.
    let manifest = walk_manifest::<HashError>(root, |p, m| {
        files.push(scanned(p, m)?);
        Ok(ArtifactHash((files.len() - 1).to_string()))
    })?;
    Ok(Scan {
        kind,
        manifest: Some(manifest),
        files,
    })
}

/// Hash of each scanned file: from the cache when its identity matches, else read.
fn hash_missing(
    scan: Scan,
    known: &HashMap<String, StatEntry>,
    hasher: &FileHasher,
    racy_after: i64,
) -> Result<Hashed, HashError> {
    let mut hashes: Vec<ArtifactHash> = Vec::with_capacity(scan.files.len());
    let mut fresh = Vec::new();
    let (mut files_read, mut files_racy) = (0, 0);
    for f in &scan.files {
        let cached = known
            .get(&f.path)
            .filter(|e| e.size == f.size && e.mtime_ns == f.mtime_ns && e.inode == f.inode);
        let hash = match cached {
            Some(entry) => entry.hash.clone(),
            None => {
                files_read += 1;
                let hash = hasher(Path::new(&f.path))?;
                if f.mtime_ns >= racy_after {
                    files_racy += 1;
                } else {
                    fresh.push(StatEntry {
                        path: f.path.clone(),
                        size: f.size,
                        mtime_ns: f.mtime_ns,
                        inode: f.inode,
                        hash: hash.clone(),
                    });
                }
                hash
            }
        };
        hashes.push(hash);
    }
    let result = match scan.manifest {
        None => {
            let f = &scan.files[0];
            ExternalHash {
                hash: hashes.swap_remove(0),
                kind: scan.kind,
                size: f.size,
                files_read,
                files_racy,
            }
        }
        Some(manifest) => {
            let manifest = fill_hashes(manifest, &hashes)?;
            ExternalHash {
                hash: manifest.hash(),
                kind: scan.kind,
                size: manifest.size(),
                files_read,
                files_racy,
            }
        }
    };
    Ok(Hashed { result, fresh })
}

/// Replaces each file entry's index placeholder with the file's hash.
fn fill_hashes(mut manifest: Manifest, hashes: &[ArtifactHash]) -> Result<Manifest, HashError> {
    for entry in &mut manifest.entries {
        if let Some(index) = &entry.hash {
            let hash = index.0.parse::<usize>().ok().and_then(|i| hashes.get(i));
            let hash =
                hash.ok_or_else(|| HashError::BadManifest(format!("lost {}", entry.path)))?;
            entry.hash = Some(hash.clone());
        }
    }
    Ok(manifest)
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
