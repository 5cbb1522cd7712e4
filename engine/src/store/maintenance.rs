//! Keeping the object directory honest: [`ObjectStore::verify`] re-hashes every object,
//! [`ObjectStore::gc`] removes the ones no row refers to.

use super::objects::{io_err, ObjectError, ObjectStore, MANIFEST_PREFIX, TMP_DIR, TMP_MAX_AGE};
use crate::hash::{manifest_hash, ArtifactHash, Manifest};
use crate::protocol::ArtifactKind;
use std::collections::HashSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// An object whose content no longer matches its name, or that a manifest misses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptObject {
    pub hash: ArtifactHash,
    pub path: PathBuf,
    pub reason: String,
}

/// Result of [`ObjectStore::verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub checked: usize,
    pub corrupt: Vec<CorruptObject>,
}

/// Result of [`ObjectStore::gc`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub kept: usize,
    pub removed: usize,
    pub freed_bytes: u64,
}

impl ObjectStore {
    /// The hashes (e.g. every artifact the database records) with no object on disk,
    /// sorted: what `verify` reports besides corrupt objects.
    pub fn missing<'a>(
        &self,
        hashes: impl IntoIterator<Item = &'a ArtifactHash>,
    ) -> Vec<ArtifactHash> {
        let mut gone: Vec<ArtifactHash> = hashes
            .into_iter()
            .filter(|h| !self.contains(h))
            .cloned()
            .collect();
        gone.sort();
        gone
    }

    /// Re-hashes every object; returns each one whose content does not match its name,
    /// and each directory manifest whose member objects are missing.
    pub fn verify(&self) -> Result<VerifyReport, ObjectError> {
        let mut report = VerifyReport::default();
        for (hash, path) in self.objects()? {
            report.checked += 1;
            if let Some(reason) = self.check_object(&hash, &path)? {
                report.corrupt.push(CorruptObject { hash, path, reason });
            }
        }
        Ok(report)
    }

    fn check_object(
        &self,
        hash: &ArtifactHash,
        path: &Path,
    ) -> Result<Option<String>, ObjectError> {
        let file = File::open(path).map_err(io_err(path))?;
        let plain = crate::hash::hash_reader(file).map_err(io_err(path))?;
        if &plain == hash {
            return Ok(None);
        }
        let bytes = fs::read(path).map_err(io_err(path))?;
        if !bytes.starts_with(MANIFEST_PREFIX) || &manifest_hash(&bytes) != hash {
            return Ok(Some(format!("content hashes to {plain}")));
        }
        let manifest = match Manifest::from_bytes(&bytes) {
            Ok(m) => m,
            Err(e) => return Ok(Some(e.to_string())),
        };
        let missing: Vec<&str> = manifest
            .entries
            .iter()
            .filter(|e| e.hash.as_ref().is_some_and(|h| !self.contains(h)))
            .map(|e| e.path.as_str())
            .collect();
        Ok(
            (!missing.is_empty())
                .then(|| format!("member objects missing: {}", missing.join(", "))),
        )
    }

    /// Removes every object not in `keep` (members of kept directories are kept too).
    pub fn gc(&self, keep: &HashSet<ArtifactHash>) -> Result<GcReport, ObjectError> {
        self.gc_older_than(keep, Duration::ZERO)
    }

    /// Like [`gc`](Self::gc), but spares objects younger than `min_age`, which a running
    /// execution may have written and not yet recorded.
    pub fn gc_older_than(
        &self,
        keep: &HashSet<ArtifactHash>,
        min_age: Duration,
    ) -> Result<GcReport, ObjectError> {
        let keep = self.with_members(keep)?;
        let mut report = GcReport::default();
        for (hash, path) in self.objects()? {
            if keep.contains(&hash) {
                report.kept += 1;
                continue;
            }
            let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            if age(&meta) < min_age {
                report.kept += 1;
                continue;
            }
            fs::remove_file(&path).map_err(io_err(&path))?;
            report.removed += 1;
            report.freed_bytes += meta.len();
        }
        self.remove_stray_temps()?;
        Ok(report)
    }

    fn with_members(
        &self,
        keep: &HashSet<ArtifactHash>,
    ) -> Result<HashSet<ArtifactHash>, ObjectError> {
        let mut all = keep.clone();
        for hash in keep {
            if self.contains(hash) && self.kind_of(hash)? == ArtifactKind::Dir {
                let manifest = self.manifest(hash)?;
                all.extend(manifest.entries.into_iter().filter_map(|e| e.hash));
            }
        }
        Ok(all)
    }

    fn remove_stray_temps(&self) -> Result<(), ObjectError> {
        let tmp_dir = self.dir().join(TMP_DIR);
        for entry in fs::read_dir(&tmp_dir).map_err(io_err(&tmp_dir))? {
            let entry = entry.map_err(io_err(&tmp_dir))?;
            let meta = entry.metadata().map_err(io_err(&entry.path()))?;
            if age(&meta) > TMP_MAX_AGE {
                fs::remove_file(entry.path()).map_err(io_err(&entry.path()))?;
            }
        }
        Ok(())
    }
}

fn age(meta: &fs::Metadata) -> Duration {
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    SystemTime::now()
        .duration_since(modified)
        .unwrap_or(Duration::ZERO)
}
