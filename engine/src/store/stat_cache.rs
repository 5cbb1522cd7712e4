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
use std::path::Path;
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
    // The top-level path may be a link (a dataset linked into the project); inside a
    // directory, links are refused by the manifest walk.
    let root = std::fs::canonicalize(path).map_err(|e| HashError::io(path, e))?;
    let scan = blocking({
        let root = root.clone();
        move || scan(&root)
    })
    .await?;
    let paths: Vec<String> = scan.files.iter().map(|f| f.path.clone()).collect();
    let known = store.stat_get_many(&paths).await?;
    let hashed = blocking(move || hash_missing(scan, known, hasher)).await?;
    store.stat_put_many(&hashed.fresh).await?;
    Ok(hashed.result)
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

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HashError> + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unsupported(format!("hashing task failed: {e}")))?
        .map_err(StoreError::from)
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

/// Metadata only: no file is opened.
fn scan(root: &Path) -> Result<Scan, HashError> {
    let meta = std::fs::symlink_metadata(root).map_err(|e| HashError::io(root, e))?;
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
    known: HashMap<String, StatEntry>,
    hasher: FileHasher,
) -> Result<Hashed, HashError> {
    let racy_after = now_ns() - RACY_WINDOW.as_nanos() as i64;
    let mut hashes: Vec<ArtifactHash> = Vec::with_capacity(scan.files.len());
    let mut fresh = Vec::new();
    let mut files_read = 0;
    for f in &scan.files {
        let cached = known
            .get(&f.path)
            .filter(|e| e.size == f.size && e.mtime_ns == f.mtime_ns && e.inode == f.inode);
        let hash = match cached {
            Some(entry) => entry.hash.clone(),
            None => {
                files_read += 1;
                let hash = hasher(Path::new(&f.path))?;
                if f.mtime_ns < racy_after {
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
            }
        }
        Some(manifest) => {
            let manifest = fill_hashes(manifest, &hashes)?;
            ExternalHash {
                hash: manifest.hash(),
                kind: scan.kind,
                size: manifest.size(),
                files_read,
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
