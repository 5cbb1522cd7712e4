//! The content-addressed object directory: `objects/ab/cdef…`, one read-only file per
//! distinct content. A file artifact's object holds its bytes; a directory artifact's
//! object holds its canonical manifest (named by the manifest-domain hash, so the name
//! alone tells the two apart) and each member file is an object of its own.
//!
//! Objects are written to a temporary file inside the store (same filesystem), fsynced,
//! made read-only and renamed into place, so a reader never sees a partial object and a
//! crash leaves at most a stray temporary file. Writing an object that already exists is
//! a no-op (deduplication). The database refers to objects; an object without a row is
//! merely garbage for [`ObjectStore::gc`].

use crate::hash::{
    artifact_kind, hash_bytes, manifest_hash, walk_manifest, ArtifactHash, HashError, Manifest,
};
use crate::protocol::{ArtifactKind, OutputArtifact};
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Temporary files live here until renamed into place.
pub(crate) const TMP_DIR: &str = ".tmp";
/// Stray temporary files older than this are removed by gc (a writer crashed).
pub(crate) const TMP_MAX_AGE: Duration = Duration::from_secs(3600);
/// The canonical manifest encoding starts with these bytes.
pub(crate) const MANIFEST_PREFIX: &[u8] = b"{\"format\":";

/// Why an object operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("object store: {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("object {0} is not in the store")]
    Missing(ArtifactHash),
    #[error("{0:?} is not an artifact hash (64 lowercase hex digits)")]
    BadHash(String),
    #[error("cannot materialise into {0}: it already exists")]
    DestinationExists(PathBuf),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ObjectError + '_ {
    move |source| ObjectError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The `objects/` directory of a store.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    dir: PathBuf,
    /// The directory, held open: [`Self::contains`] looks objects up relative to it,
    /// which spares resolving the store's path again for each of a no-op run's 30,000
    /// cache hits.
    handle: std::sync::Arc<File>,
}

impl ObjectStore {
    /// Opens (creating if needed) the object directory.
    pub fn create(dir: &Path) -> Result<Self, ObjectError> {
        fs::create_dir_all(dir.join(TMP_DIR)).map_err(io_err(dir))?;
        let handle = File::open(dir).map_err(io_err(dir))?;
        Ok(ObjectStore {
            dir: dir.to_path_buf(),
            handle: std::sync::Arc::new(handle),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `objects/ab/cdef…` of a hash (which is validated: it comes from files and rows).
    pub fn path_of(&self, hash: &ArtifactHash) -> Result<PathBuf, ObjectError> {
        Ok(self.dir.join(relative_path(hash)?))
    }

    /// Whether the object is present. Asked once per output of every cache hit (30,000
    /// times in a no-op run of a 10,000-member sweep), so it asks the kernel only whether
    /// the name exists (`faccessat`), which costs a quarter less than reading its
    /// metadata; a damaged object (even one replaced by a directory) is `verify`'s to find.
    pub fn contains(&self, hash: &ArtifactHash) -> bool {
        self.contains_hex(&hash.0)
    }

    /// [`ObjectStore::contains`] for a hash as text (a store row being read).
    pub fn contains_hex(&self, hash: &str) -> bool {
        use std::os::fd::AsRawFd;
        let Some(relative) = relative_c_path(hash) else {
            return false;
        };
        // SAFETY: faccessat(2) reads a NUL-terminated relative path against a directory
        // descriptor this struct keeps open.
        let found = unsafe {
            libc::faccessat(
                self.handle.as_raw_fd(),
                relative.as_ptr().cast(),
                libc::F_OK,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        found == 0
    }

    /// Stores a file or a directory found at `src`.
    pub fn put(&self, src: &Path) -> Result<OutputArtifact, ObjectError> {
        let meta = fs::symlink_metadata(src).map_err(io_err(src))?;
        match artifact_kind(src, &meta)? {
            ArtifactKind::File => {
                let hash = self.put_file(src)?;
                Ok(OutputArtifact {
                    hash,
                    kind: ArtifactKind::File,
                    size: meta.len(),
                })
            }
            ArtifactKind::Dir => {
                let (hash, manifest) = self.put_dir(src)?;
                Ok(OutputArtifact {
                    hash,
                    kind: ArtifactKind::Dir,
                    size: manifest.size(),
                })
            }
        }
    }

    /// Stores a file's bytes (read once: hashed while copied).
    pub fn put_file(&self, src: &Path) -> Result<ArtifactHash, ObjectError> {
        let hash = self.put_file_no_sync_dir(src)?;
        self.sync_shard(&hash)?;
        Ok(hash)
    }

    /// Stores raw bytes as a file object.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<ArtifactHash, ObjectError> {
        let hash = hash_bytes(bytes);
        self.install(&hash, bytes)?;
        self.sync_shard(&hash)?;
        Ok(hash)
    }

    /// Stores every file of a directory, then its manifest under the directory's hash.
    pub fn put_dir(&self, src: &Path) -> Result<(ArtifactHash, Manifest), ObjectError> {
        let mut shards = BTreeSet::new();
        let manifest = walk_manifest::<ObjectError>(src, |path, _meta| {
            let hash = self.put_file_no_sync_dir(path)?;
            shards.insert(hash.0[..2].to_string());
            Ok(hash)
        })?;
        let bytes = manifest.canonical_bytes();
        let hash = manifest_hash(&bytes);
        self.install(&hash, &bytes)?;
        shards.insert(hash.0[..2].to_string());
        for shard in shards {
            sync_dir(&self.dir.join(shard))?;
        }
        Ok((hash, manifest))
    }

    fn put_file_no_sync_dir(&self, src: &Path) -> Result<ArtifactHash, ObjectError> {
        let mut input = File::open(src).map_err(io_err(src))?;
        let mut tmp = self.temp_file()?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = input.read(&mut buf).map_err(io_err(src))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n]).map_err(io_err(tmp.path()))?;
        }
        let hash = ArtifactHash(hasher.finalize().to_hex().to_string());
        self.persist(tmp, &hash)?;
        Ok(hash)
    }

    fn temp_file(&self) -> Result<tempfile::NamedTempFile, ObjectError> {
        let tmp_dir = self.dir.join(TMP_DIR);
        tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io_err(&tmp_dir))
    }

    /// Writes `bytes` as the object named `hash` (unless it is already there).
    fn install(&self, hash: &ArtifactHash, bytes: &[u8]) -> Result<(), ObjectError> {
        if self.contains(hash) {
            return Ok(());
        }
        let mut tmp = self.temp_file()?;
        tmp.write_all(bytes).map_err(io_err(tmp.path()))?;
        self.persist(tmp, hash)
    }

    /// fsync, read-only, rename into place; an existing object wins (same content).
    fn persist(
        &self,
        tmp: tempfile::NamedTempFile,
        hash: &ArtifactHash,
    ) -> Result<(), ObjectError> {
        let dest = self.path_of(hash)?;
        if dest.is_file() {
            return Ok(()); // dropping `tmp` deletes it
        }
        tmp.as_file().sync_all().map_err(io_err(tmp.path()))?;
        let perms = fs::Permissions::from_mode(0o444);
        fs::set_permissions(tmp.path(), perms).map_err(io_err(tmp.path()))?;
        let shard = dest.parent().expect("an object path has a shard directory");
        fs::create_dir_all(shard).map_err(io_err(shard))?;
        tmp.persist(&dest).map_err(|e| ObjectError::Io {
            path: dest.clone(),
            source: e.error,
        })?;
        Ok(())
    }

    fn sync_shard(&self, hash: &ArtifactHash) -> Result<(), ObjectError> {
        sync_dir(&self.dir.join(&hash.0[..2]))
    }

    /// Whether an object is a file's bytes or a directory manifest. Only objects that
    /// start like a manifest are re-hashed to decide, so this is cheap for large files.
    pub fn kind_of(&self, hash: &ArtifactHash) -> Result<ArtifactKind, ObjectError> {
        let path = self.path_of(hash)?;
        let mut file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ObjectError::Missing(hash.clone()),
            _ => ObjectError::Io {
                path: path.clone(),
                source: e,
            },
        })?;
        let mut head = [0u8; 10];
        let n = read_up_to(&mut file, &mut head).map_err(io_err(&path))?;
        if &head[..n] != MANIFEST_PREFIX {
            return Ok(ArtifactKind::File);
        }
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        Ok(if &manifest_hash(&bytes) == hash {
            ArtifactKind::Dir
        } else {
            ArtifactKind::File
        })
    }

    /// The manifest of a directory artifact.
    pub fn manifest(&self, hash: &ArtifactHash) -> Result<Manifest, ObjectError> {
        let path = self.path_of(hash)?;
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ObjectError::Missing(hash.clone()),
            _ => ObjectError::Io {
                path: path.clone(),
                source: e,
            },
        })?;
        Ok(Manifest::from_bytes(&bytes)?)
    }

    /// Recreates an artifact at `dest` (which must not exist): a file as a hard link to its
    /// object when possible, else a copy; a directory rebuilt from its manifest. Files are
    /// read-only; directories stay writable so work directories can be cleaned up.
    pub fn materialize(
        &self,
        hash: &ArtifactHash,
        dest: &Path,
    ) -> Result<ArtifactKind, ObjectError> {
        if fs::symlink_metadata(dest).is_ok() {
            return Err(ObjectError::DestinationExists(dest.to_path_buf()));
        }
        let kind = self.kind_of(hash)?;
        match kind {
            ArtifactKind::File => self.link_or_copy(hash, dest)?,
            ArtifactKind::Dir => {
                let manifest = self.manifest(hash)?;
                fs::create_dir_all(dest).map_err(io_err(dest))?;
                for entry in &manifest.entries {
                    let target = dest.join(&entry.path);
                    match &entry.hash {
                        None => fs::create_dir_all(&target).map_err(io_err(&target))?,
                        Some(h) => {
                            if let Some(parent) = target.parent() {
                                fs::create_dir_all(parent).map_err(io_err(parent))?;
                            }
                            self.link_or_copy(h, &target)?
                        }
                    }
                }
            }
        }
        Ok(kind)
    }

    fn link_or_copy(&self, hash: &ArtifactHash, dest: &Path) -> Result<(), ObjectError> {
        let src = self.path_of(hash)?;
        if !src.is_file() {
            return Err(ObjectError::Missing(hash.clone()));
        }
        if fs::hard_link(&src, dest).is_ok() {
            return Ok(());
        }
        // Another filesystem, or links not allowed: copy and make it read-only.
        fs::copy(&src, dest).map_err(io_err(dest))?;
        fs::set_permissions(dest, fs::Permissions::from_mode(0o444)).map_err(io_err(dest))
    }

    /// Every object file with the hash its name claims.
    pub(crate) fn objects(&self) -> Result<Vec<(ArtifactHash, PathBuf)>, ObjectError> {
        let mut out = Vec::new();
        for shard in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let shard = shard.map_err(io_err(&self.dir))?;
            let name = shard.file_name().to_string_lossy().into_owned();
            if name.len() != 2 || !shard.path().is_dir() {
                continue; // `.tmp` and anything that is not a shard
            }
            for obj in fs::read_dir(shard.path()).map_err(io_err(&shard.path()))? {
                let obj = obj.map_err(io_err(&shard.path()))?;
                let rest = obj.file_name().to_string_lossy().into_owned();
                out.push((ArtifactHash(format!("{name}{rest}")), obj.path()));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Makes a rename inside `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), ObjectError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// `ab/cdef…` of a hash, which is validated: it comes from files and rows.
fn relative_path(hash: &ArtifactHash) -> Result<String, ObjectError> {
    let h = &hash.0;
    if !is_hash(h) {
        return Err(ObjectError::BadHash(h.clone()));
    }
    Ok(format!("{}/{}", &h[..2], &h[2..]))
}

/// 64 lowercase hex digits.
fn is_hash(h: &str) -> bool {
    h.len() == 64
        && h.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// [`relative_path`] as a NUL-terminated C string on the stack (`contains` asks it
/// for every output of every cache hit).
fn relative_c_path(hash: &str) -> Option<[u8; 66]> {
    if !is_hash(hash) {
        return None;
    }
    let mut path = [0u8; 66];
    path[..2].copy_from_slice(&hash.as_bytes()[..2]);
    path[2] = b'/';
    path[3..65].copy_from_slice(&hash.as_bytes()[2..]);
    Some(path)
}
