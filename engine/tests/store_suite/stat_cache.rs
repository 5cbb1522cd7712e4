//! The stat cache: hashing external data a second time reads no file contents (reads are
//! counted through an injected hasher), changed and recent files are read again, the
//! directory hash equals the one computed from scratch, and entries are upserted.

use crate::store_support::*;
use histodiff_engine::hash::{hash_dir, hash_file, ArtifactHash, HashError};
use histodiff_engine::protocol::ArtifactKind;
use histodiff_engine::store::stat_cache::{hash_external, hash_external_with, FileHasher};
use histodiff_engine::store::{StatEntry, Store};
use std::fs::{self, File};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Counts every file read.
fn counting() -> (FileHasher, Arc<AtomicUsize>) {
    let reads = Arc::new(AtomicUsize::new(0));
    let r = reads.clone();
    let hasher: FileHasher = Arc::new(move |p: &Path| -> Result<ArtifactHash, HashError> {
        r.fetch_add(1, Ordering::SeqCst);
        hash_file(p)
    });
    (hasher, reads)
}

/// Writes a file and dates it a minute back (out of the racy window).
fn write_old(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
    let past = SystemTime::now() - Duration::from_secs(60);
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(past)
        .unwrap();
}

/// An unchanged file is read once; a rewritten one is read again and hashes anew.
pub async fn a_file_is_read_once(backend: &impl Backend) {
    let store = backend.store().await;
    let data = backend.dir().join("weights.safetensors");
    write_old(&data, b"tensor bytes");
    let (hasher, reads) = counting();
    let first = hash_external_with(&store, &data, hasher.clone())
        .await
        .unwrap();
    let second = hash_external_with(&store, &data, hasher.clone())
        .await
        .unwrap();
    assert_eq!(
        (first.hash.clone(), first.kind),
        (hash_file(&data).unwrap(), ArtifactKind::File)
    );
    assert_eq!(second.hash, first.hash);
    assert_eq!((reads.load(Ordering::SeqCst), second.files_read), (1, 0));
    write_old(&data, b"other tensor bytes");
    let third = hash_external_with(&store, &data, hasher).await.unwrap();
    assert_ne!(third.hash, first.hash);
    assert_eq!(third.files_read, 1);
}

/// A file modified just now could change again within the mtime's resolution: it is read.
pub async fn a_recent_file_is_not_trusted_to_the_cache(backend: &impl Backend) {
    let store = backend.store().await;
    let data = backend.dir().join("fresh.txt");
    fs::write(&data, b"just written").unwrap();
    hash_external(&store, &data).await.unwrap();
    assert_eq!(hash_external(&store, &data).await.unwrap().files_read, 1);
}

/// 3,000 unchanged files are re-hashed from the cache alone; one edit reads one file.
pub async fn a_large_directory_is_rehashed_without_reading_files(backend: &impl Backend) {
    let store = backend.store().await;
    let data = backend.dir().join("NCT-CRC-HE");
    let n = 3_000;
    for i in 0..n {
        write_old(
            &data.join(format!("class{}/patch{i:05}.tif", i % 9)),
            format!("patch {i}").as_bytes(),
        );
    }
    let (hasher, reads) = counting();
    let first = hash_external_with(&store, &data, hasher.clone())
        .await
        .unwrap();
    assert_eq!((first.kind, first.files_read), (ArtifactKind::Dir, n));
    assert_eq!(first.hash, hash_dir(&data).unwrap().0);
    let started = Instant::now();
    let second = hash_external_with(&store, &data, hasher.clone())
        .await
        .unwrap();
    eprintln!("re-hash of {n} unchanged files: {:?}", started.elapsed());
    assert_eq!(second.hash, first.hash);
    assert_eq!(
        reads.load(Ordering::SeqCst),
        n,
        "the second pass read no file"
    );
    write_old(&data.join("class0/patch00000.tif"), b"edited");
    let third = hash_external_with(&store, &data, hasher).await.unwrap();
    assert_eq!(third.files_read, 1);
    assert_ne!(third.hash, first.hash);
    assert_eq!(third.hash, hash_dir(&data).unwrap().0);
}

/// Writing the same entry twice is an upsert, not a conflict, and it reads back field for
/// field (a nanosecond mtime beyond 2^53 included).
pub async fn stat_entries_are_upserted_and_read_back(backend: &impl Backend) {
    let store = backend.store().await;
    let entry = StatEntry {
        path: "/data/a.png".into(),
        size: 7,
        mtime_ns: 1_700_000_000_123_456_789,
        inode: 99,
        hash: output(&store, backend.dir(), b"a.png").hash,
    };
    for _ in 0..2 {
        store
            .stat_put_many(std::slice::from_ref(&entry))
            .await
            .unwrap();
    }
    assert_eq!(store.stat_get("/data/a.png").await.unwrap(), Some(entry));
}
