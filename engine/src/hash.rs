//! Content hashes: artifacts (file bytes or a directory's canonical manifest) and stage keys.
//!
//! A file's hash is blake3 of its bytes. A directory's hash is blake3 (in its own key
//! derivation domain, [`MANIFEST_CONTEXT`]) of its canonical [`Manifest`]: every member
//! sorted by `/`-separated relative path, each with its kind, size and file hash. Symbolic
//! links are refused rather than followed, so an artifact is always self-contained.

use crate::protocol::ArtifactKind;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// blake3 of an artifact's content (64 lowercase hex digits).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ArtifactHash(pub String);

/// blake3 of a stage's canonical fingerprint (64 lowercase hex digits).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StageKey(pub String);

impl fmt::Display for ArtifactHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for StageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StageKey {
    /// The first 12 hex digits, for humans.
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }
}

impl ArtifactHash {
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }
}

// ---------------------------------------------------------------------------------------
// Artifact hashing: files are hashed by their bytes, directories by a canonical manifest.
// ---------------------------------------------------------------------------------------

/// blake3 key-derivation context for directory manifests. Hashing a manifest in its own
/// domain keeps a directory's hash apart from the hash of a file that happens to hold the
/// same bytes as the manifest, so an object name alone says which kind it is.
pub const MANIFEST_CONTEXT: &str = "histodiff 2026-11-25 directory manifest v1";

/// Version of the manifest encoding; a change here changes every directory hash.
pub const MANIFEST_FORMAT: u32 = 1;

/// Why an artifact could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is a symbolic link: artifacts may not contain links")]
    Symlink { path: PathBuf },
    #[error("{path}: file name is not valid UTF-8")]
    NonUtf8 { path: PathBuf },
    #[error("{path} is neither a regular file nor a directory")]
    Special { path: PathBuf },
    #[error("invalid directory manifest: {0}")]
    BadManifest(String),
}

impl HashError {
    pub fn io(path: &Path, source: io::Error) -> Self {
        HashError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// One member of a directory artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Relative path with `/` separators.
    pub path: String,
    pub kind: ArtifactKind,
    /// Content hash of a file; absent for a sub-directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<ArtifactHash>,
    /// Bytes of a file; 0 for a sub-directory.
    pub size: u64,
}

/// The canonical description of a directory: every file and sub-directory, sorted by path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub entries: Vec<ManifestEntry>,
}

impl Manifest {
    /// Builds a manifest from entries in any order (they are sorted by path here).
    pub fn new(mut entries: Vec<ManifestEntry>) -> Self {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Manifest {
            format: MANIFEST_FORMAT,
            entries,
        }
    }

    /// The bytes that are hashed and stored: compact JSON of a struct with fixed field
    /// order and no maps, hence canonical whatever serde_json's map features are.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serialises")
    }

    /// The directory's artifact hash.
    pub fn hash(&self) -> ArtifactHash {
        manifest_hash(&self.canonical_bytes())
    }

    /// Total bytes of the member files.
    pub fn size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    /// Parses stored manifest bytes and checks that every path stays inside the directory
    /// and that entries are sorted and unique (so the bytes are canonical).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HashError> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| HashError::BadManifest(e.to_string()))?;
        if m.format != MANIFEST_FORMAT {
            return Err(HashError::BadManifest(format!(
                "unknown format {}",
                m.format
            )));
        }
        for pair in m.entries.windows(2) {
            if pair[0].path >= pair[1].path {
                return Err(HashError::BadManifest(format!(
                    "unsorted at {}",
                    pair[1].path
                )));
            }
        }
        for e in &m.entries {
            check_relative(&e.path)?;
            if (e.kind == ArtifactKind::File) != e.hash.is_some() {
                return Err(HashError::BadManifest(format!("bad entry {}", e.path)));
            }
        }
        Ok(m)
    }
}

/// Refuses absolute paths, `..`, `.` and empty components in a manifest path.
fn check_relative(path: &str) -> Result<(), HashError> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == ".." || c.contains('\\'));
    if bad {
        return Err(HashError::BadManifest(format!("unsafe path {path:?}")));
    }
    Ok(())
}

/// blake3 of bytes.
pub fn hash_bytes(bytes: &[u8]) -> ArtifactHash {
    ArtifactHash(blake3::hash(bytes).to_hex().to_string())
}

/// The hash of a manifest's canonical bytes, in the manifest domain.
pub fn manifest_hash(canonical: &[u8]) -> ArtifactHash {
    let mut h = blake3::Hasher::new_derive_key(MANIFEST_CONTEXT);
    h.update(canonical);
    ArtifactHash(h.finalize().to_hex().to_string())
}

/// blake3 of a file's bytes, streamed (never loads the file whole).
pub fn hash_file(path: &Path) -> Result<ArtifactHash, HashError> {
    let file = File::open(path).map_err(|e| HashError::io(path, e))?;
    hash_reader(file).map_err(|e| HashError::io(path, e))
}

/// blake3 of everything a reader yields.
pub fn hash_reader(reader: impl Read) -> io::Result<ArtifactHash> {
    let mut h = blake3::Hasher::new();
    h.update_reader(reader)?;
    Ok(ArtifactHash(h.finalize().to_hex().to_string()))
}

/// Hash of a directory: the manifest's hash, with the manifest itself.
pub fn hash_dir(path: &Path) -> Result<(ArtifactHash, Manifest), HashError> {
    let manifest = walk_manifest::<HashError>(path, |file, _meta| hash_file(file))?;
    Ok((manifest.hash(), manifest))
}

/// Hash of a file or a directory, with its kind and size in bytes.
pub fn hash_path(path: &Path) -> Result<(ArtifactHash, ArtifactKind, u64), HashError> {
    let meta = fs::symlink_metadata(path).map_err(|e| HashError::io(path, e))?;
    match artifact_kind(path, &meta)? {
        ArtifactKind::File => Ok((hash_file(path)?, ArtifactKind::File, meta.len())),
        ArtifactKind::Dir => {
            let (hash, manifest) = hash_dir(path)?;
            Ok((hash, ArtifactKind::Dir, manifest.size()))
        }
    }
}

/// File or directory; links and special files are refused.
pub fn artifact_kind(path: &Path, meta: &Metadata) -> Result<ArtifactKind, HashError> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        Err(HashError::Symlink {
            path: path.to_path_buf(),
        })
    } else if ft.is_dir() {
        Ok(ArtifactKind::Dir)
    } else if ft.is_file() {
        Ok(ArtifactKind::File)
    } else {
        Err(HashError::Special {
            path: path.to_path_buf(),
        })
    }
}

/// Walks a directory (links refused, never followed) and builds its manifest, asking
/// `file_hash` for each regular file's hash. The store passes a function that also copies
/// the file into the object store; the stat cache passes one that may skip reading.
pub fn walk_manifest<E: From<HashError>>(
    root: &Path,
    mut file_hash: impl FnMut(&Path, &Metadata) -> Result<ArtifactHash, E>,
) -> Result<Manifest, E> {
    let root_meta = fs::symlink_metadata(root).map_err(|e| HashError::io(root, e))?;
    if artifact_kind(root, &root_meta)? != ArtifactKind::Dir {
        return Err(HashError::io(root, io::Error::other("not a directory")).into());
    }
    let mut entries = Vec::new();
    for item in walkdir::WalkDir::new(root).follow_links(false).min_depth(1) {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            HashError::Io {
                path,
                source: e.into(),
            }
        })?;
        let path = item.path();
        let meta = item.metadata().map_err(|e| HashError::io(path, e.into()))?;
        let rel = relative_name(root, path)?;
        let entry = match artifact_kind(path, &meta)? {
            ArtifactKind::Dir => ManifestEntry {
                path: rel,
                kind: ArtifactKind::Dir,
                hash: None,
                size: 0,
            },
            ArtifactKind::File => {
                let hash = Some(file_hash(path, &meta)?);
                ManifestEntry {
                    path: rel,
                    kind: ArtifactKind::File,
                    hash,
                    size: meta.len(),
                }
            }
        };
        entries.push(entry);
    }
    Ok(Manifest::new(entries))
}

/// `a/b/c.png` for `root/a/b/c.png`, with `/` whatever the platform.
fn relative_name(root: &Path, path: &Path) -> Result<String, HashError> {
    let rel = path
        .strip_prefix(root)
        .expect("walkdir yields paths under its root");
    let mut parts = Vec::new();
    for c in rel.components() {
        let s = c
            .as_os_str()
            .to_str()
            .ok_or_else(|| HashError::NonUtf8 { path: path.into() })?;
        parts.push(s);
    }
    Ok(parts.join("/"))
}
