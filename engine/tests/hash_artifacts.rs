//! Artifact hashing: file bytes, directory manifests (canonical order, `/` separators,
//! links refused), pinned golden values, and properties of the manifest hash.

use histodiff_engine::hash::{hash_bytes, hash_dir, hash_file, hash_path, HashError, Manifest};
use histodiff_engine::protocol::ArtifactKind;
use proptest::prelude::*;
use std::fs;
use std::path::Path;

/// The manifest of the pinned directory, byte for byte.
const MANIFEST_JSON: &str = concat!(
    r#"{"format":1,"entries":[{"path":"a.txt","kind":"file","#,
    r#""hash":"ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f","size":5},"#,
    r#"{"path":"b","kind":"dir","size":0},{"path":"b/c.txt","kind":"file","#,
    r#""hash":"ea7aa1fc9efdbe106dbb70369a75e9671fa29d52bd55536711bf197477b8f021","size":1},"#,
    r#"{"path":"empty","kind":"dir","size":0}]}"#
);

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, bytes).unwrap();
}

#[test]
fn file_hash_is_blake3_of_bytes() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.txt", b"hello");
    let h = hash_file(&dir.path().join("a.txt")).unwrap();
    // blake3("hello"), from the reference implementation.
    assert_eq!(
        h.0,
        "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
    );
    assert_eq!(h, hash_bytes(b"hello"));
}

#[test]
fn directory_hash_is_pinned() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "b/c.txt", b"c");
    write(dir.path(), "a.txt", b"hello");
    fs::create_dir(dir.path().join("empty")).unwrap();
    let (h, manifest) = hash_dir(dir.path()).unwrap();
    let paths: Vec<&str> = manifest.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["a.txt", "b", "b/c.txt", "empty"]);
    assert_eq!(manifest.entries[1].kind, ArtifactKind::Dir);
    assert_eq!(manifest.size(), 6);
    assert_eq!(
        String::from_utf8(manifest.canonical_bytes()).unwrap(),
        MANIFEST_JSON
    );
    assert_eq!(
        h.0,
        "ec82e394faada170ae7a9eb12e9275464fdce8d2ee46c1fc74e342b7fc8bb452"
    );
    // The stored manifest round-trips and rehashes to the same value.
    let back = Manifest::from_bytes(&manifest.canonical_bytes()).unwrap();
    assert_eq!(back.hash(), h);
}

#[test]
fn a_file_holding_manifest_bytes_differs_from_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "d/x", b"x");
    let (h, manifest) = hash_dir(&dir.path().join("d")).unwrap();
    assert_ne!(hash_bytes(&manifest.canonical_bytes()), h);
}

#[test]
fn empty_directory_is_an_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let (h, manifest) = hash_dir(dir.path()).unwrap();
    assert!(manifest.entries.is_empty());
    let (h2, kind, size) = hash_path(dir.path()).unwrap();
    assert_eq!((h2, kind, size), (h, ArtifactKind::Dir, 0));
}

#[test]
fn symlinks_are_refused_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "real.txt", b"r");
    std::os::unix::fs::symlink(dir.path().join("real.txt"), dir.path().join("link")).unwrap();
    let err = hash_dir(dir.path()).unwrap_err();
    assert!(
        matches!(err, HashError::Symlink { ref path } if path.ends_with("link")),
        "{err}"
    );
}

#[test]
fn hash_dir_of_a_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "f", b"f");
    assert!(hash_dir(&dir.path().join("f")).is_err());
    assert!(hash_file(&dir.path().join("missing")).is_err());
}

#[test]
fn unsafe_manifest_paths_are_rejected() {
    for bad in [
        r#"{"format":1,"entries":[{"path":"../x","kind":"file","hash":"00","size":1}]}"#,
        r#"{"format":1,"entries":[{"path":"/x","kind":"file","hash":"00","size":1}]}"#,
        r#"{"format":1,"entries":[{"path":"b","kind":"dir","size":0},{"path":"a","kind":"dir","size":0}]}"#,
    ] {
        assert!(Manifest::from_bytes(bad.as_bytes()).is_err(), "{bad}");
    }
}

/// File sets: distinct relative paths (one level of sub-directory) with contents.
fn file_sets() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    prop::collection::btree_map(
        "[a-c]{1,2}(/[a-c]{1,2})?",
        prop::collection::vec(any::<u8>(), 0..16),
        1..6,
    )
    .prop_map(|m| m.into_iter().collect::<Vec<_>>())
    .prop_filter("a path may not be both file and directory", |files| {
        !files
            .iter()
            .any(|(a, _)| files.iter().any(|(b, _)| b.starts_with(&format!("{a}/"))))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn creation_order_is_irrelevant(files in file_sets(), seed in any::<u64>()) {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for (p, c) in &files { write(a.path(), p, c); }
        let mut shuffled = files.clone();
        let n = shuffled.len();
        for i in 0..n { shuffled.swap(i, (seed as usize).wrapping_add(i * 7) % n); }
        for (p, c) in shuffled.iter().rev() { write(b.path(), p, c); }
        prop_assert_eq!(hash_dir(a.path()).unwrap().0, hash_dir(b.path()).unwrap().0);
    }

    #[test]
    fn renaming_a_file_changes_the_hash(files in file_sets()) {
        let dir = tempfile::tempdir().unwrap();
        for (p, c) in &files { write(dir.path(), p, c); }
        let before = hash_dir(dir.path()).unwrap().0;
        let (first, _) = &files[0];
        fs::rename(dir.path().join(first), dir.path().join(format!("{first}_renamed"))).unwrap();
        prop_assert_ne!(before, hash_dir(dir.path()).unwrap().0);
    }

    #[test]
    fn changing_a_byte_changes_the_hash(files in file_sets(), byte in any::<u8>()) {
        let dir = tempfile::tempdir().unwrap();
        for (p, c) in &files { write(dir.path(), p, c); }
        let before = hash_dir(dir.path()).unwrap().0;
        let (first, content) = &files[0];
        let mut changed = content.clone();
        changed.push(byte);
        write(dir.path(), first, &changed);
        prop_assert_ne!(before, hash_dir(dir.path()).unwrap().0);
    }
}
