//! The object directory: write-once read-only objects, deduplication, directories rebuilt
//! from manifests, verify finding a flipped byte, and gc keeping what is referenced.

use histodiff_engine::hash::{hash_dir, hash_file, ArtifactHash};
use histodiff_engine::protocol::ArtifactKind;
use histodiff_engine::store::ObjectStore;
use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, bytes).unwrap();
}

fn setup() -> (tempfile::TempDir, ObjectStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ObjectStore::create(&dir.path().join("objects")).unwrap();
    (dir, store)
}

/// Writes and stores two files and a directory `d` of `members` (paths under `d/`): the
/// mix of objects `verify` and `gc` work on. Returns the three hashes in that order.
fn put_two_files_and_a_dir(
    root: &Path,
    store: &ObjectStore,
    files: [(&str, &[u8]); 2],
    members: &[(&str, &[u8])],
) -> [ArtifactHash; 3] {
    let [first, second] = files.map(|(name, bytes)| {
        write(root, name, bytes);
        store.put_file(&root.join(name)).unwrap()
    });
    for (name, bytes) in members {
        write(&root.join("d"), name, bytes);
    }
    let (d, _) = store.put_dir(&root.join("d")).unwrap();
    [first, second, d]
}

fn object_count(store: &ObjectStore) -> usize {
    fs::read_dir(store.dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().len() == 2)
        .map(|e| fs::read_dir(e.path()).unwrap().count())
        .sum()
}

#[test]
fn put_file_names_by_hash_read_only_and_dedups() {
    let (dir, store) = setup();
    write(dir.path(), "a", b"payload");
    write(dir.path(), "b", b"payload");
    let h = store.put_file(&dir.path().join("a")).unwrap();
    assert_eq!(h, hash_file(&dir.path().join("a")).unwrap());
    let path = store.path_of(&h).unwrap();
    assert_eq!(path, store.dir().join(&h.0[..2]).join(&h.0[2..]));
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o444
    );
    assert_eq!(store.put_file(&dir.path().join("b")).unwrap(), h);
    assert_eq!(object_count(&store), 1);
    assert_eq!(store.kind_of(&h).unwrap(), ArtifactKind::File);
    // No temporary file is left behind.
    assert_eq!(fs::read_dir(store.dir().join(".tmp")).unwrap().count(), 0);
}

#[test]
fn directories_round_trip_through_their_manifest() {
    let (dir, store) = setup();
    let src = dir.path().join("src");
    write(&src, "x/1.png", b"one");
    write(&src, "x/2.png", b"two");
    write(&src, "dup.png", b"one");
    fs::create_dir_all(src.join("empty")).unwrap();
    let (h, manifest) = store.put_dir(&src).unwrap();
    assert_eq!(h, hash_dir(&src).unwrap().0);
    assert_eq!(store.kind_of(&h).unwrap(), ArtifactKind::Dir);
    assert_eq!(
        object_count(&store),
        3,
        "two distinct files plus the manifest"
    );
    let dest = dir.path().join("out");
    assert_eq!(store.materialize(&h, &dest).unwrap(), ArtifactKind::Dir);
    assert_eq!(hash_dir(&dest).unwrap().0, h);
    assert_eq!(fs::read(dest.join("x/2.png")).unwrap(), b"two");
    assert!(dest.join("empty").is_dir());
    assert_eq!(manifest.size(), 9);
    let meta = fs::metadata(dest.join("x/1.png")).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o222,
        0,
        "materialised files are read-only"
    );
}

#[test]
fn materialize_a_file_and_refuse_an_existing_destination() {
    let (dir, store) = setup();
    write(dir.path(), "f", b"bytes");
    let out = store.put(&dir.path().join("f")).unwrap();
    assert_eq!((out.kind, out.size), (ArtifactKind::File, 5));
    let dest = dir.path().join("g");
    store.materialize(&out.hash, &dest).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), b"bytes");
    assert!(store.materialize(&out.hash, &dest).is_err());
    let missing = histodiff_engine::hash::hash_bytes(b"never stored");
    assert!(store.materialize(&missing, &dir.path().join("h")).is_err());
}

#[test]
fn a_json_file_that_looks_like_a_manifest_stays_a_file() {
    let (dir, store) = setup();
    let src = dir.path().join("d");
    write(&src, "a", b"a");
    let (_, manifest) = store.put_dir(&src).unwrap();
    write(dir.path(), "m.json", &manifest.canonical_bytes());
    let h = store.put_file(&dir.path().join("m.json")).unwrap();
    assert_eq!(store.kind_of(&h).unwrap(), ArtifactKind::File);
}

#[test]
fn verify_finds_every_flipped_byte_and_missing_member() {
    let (dir, store) = setup();
    let files = [("a", b"aaaa".as_slice()), ("b", b"bbbb")];
    let [a, b, d] = put_two_files_and_a_dir(dir.path(), &store, files, &[("c", b"cccc")]);
    assert!(store.verify().unwrap().corrupt.is_empty());
    for h in [&a, &b] {
        let p = store.path_of(h).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let mut bytes = fs::read(&p).unwrap();
        bytes[1] ^= 0x01;
        fs::write(&p, bytes).unwrap();
    }
    let report = store.verify().unwrap();
    assert_eq!(report.checked, 4);
    let bad: Vec<_> = report.corrupt.iter().map(|c| c.hash.clone()).collect();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(bad, expected);
    // Removing a member makes the directory's manifest report it.
    let c = hash_file(&dir.path().join("d/c")).unwrap();
    fs::remove_file(store.path_of(&c).unwrap()).unwrap();
    let report = store.verify().unwrap();
    assert!(
        report
            .corrupt
            .iter()
            .any(|x| x.hash == d && x.reason.contains("c")),
        "{report:?}"
    );
}

#[test]
fn gc_keeps_referenced_objects_and_directory_members() {
    let (dir, store) = setup();
    let files = [("keep", b"keep".as_slice()), ("drop", b"drop")];
    let members: [(&str, &[u8]); 2] = [("m1", b"m1"), ("m2", b"m2")];
    let [keep, drop, d] = put_two_files_and_a_dir(dir.path(), &store, files, &members);
    let report = store.gc(&HashSet::from([keep.clone(), d.clone()])).unwrap();
    assert_eq!((report.removed, report.kept, report.freed_bytes), (1, 4, 4));
    assert!(store.contains(&keep) && !store.contains(&drop));
    store.materialize(&d, &dir.path().join("again")).unwrap();
    // A young object survives a gc with a grace period.
    let young = store.put_file(&dir.path().join("drop")).unwrap();
    let spare = std::time::Duration::from_secs(600);
    store.gc_older_than(&HashSet::new(), spare).unwrap();
    assert!(store.contains(&young));
}
