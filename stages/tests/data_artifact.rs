//! The image-set artifact format: round trips over several shards, labeled and not,
//! and errors that name the broken file.

mod common;

use histodiff_stages::artifact::{chw_to_hwc, hwc_to_chw, ImageSet, ImageSetWriter, MANIFEST_FILE};

fn image(seed: u8, size: usize) -> Vec<u8> {
    (0..3 * size * size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn labeled_set_round_trips_across_shards() {
    let dir = common::temp_dir("artifact");
    let classes = vec!["A".to_string(), "B".to_string()];
    let mut w = ImageSetWriter::create(dir.path(), classes.clone(), 4, 3).unwrap();
    for k in 0..7u8 {
        w.push_chw(&image(k, 4), Some((k % 2) as i64), format!("f{k}.png"))
            .unwrap();
    }
    let m = w.finish().unwrap();
    assert_eq!(
        m.shards.iter().map(|s| s.count).collect::<Vec<_>>(),
        vec![3, 3, 1]
    );
    assert!(dir.path().join("images-00002.safetensors").is_file());

    let set = ImageSet::open(dir.path()).unwrap();
    assert_eq!(set.manifest().classes, classes);
    assert_eq!(set.manifest().class_counts(), vec![4, 3]);
    let all = set.load_all().unwrap();
    assert_eq!(all.len(), 7);
    for k in 0..7usize {
        assert_eq!(all.image(k), image(k as u8, 4).as_slice());
        assert_eq!(all.labels.as_ref().unwrap()[k], (k % 2) as i64);
        assert_eq!(set.manifest().items[k].source, format!("f{k}.png"));
    }
    let t = all.to_tensor();
    assert_eq!(t.size(), vec![7, 3, 4, 4]);
    assert_eq!(t.kind(), tch::Kind::Uint8);
}

#[test]
fn unlabeled_set_has_no_labels_tensor() {
    let dir = common::temp_dir("artifact");
    let mut w = ImageSetWriter::create(dir.path(), vec![], 2, 10).unwrap();
    w.push_chw(&image(1, 2), None, "x".into()).unwrap();
    assert!(
        w.push_chw(&image(1, 2), Some(0), "y".into()).is_err(),
        "a label in an unlabeled set is refused"
    );
    w.finish().unwrap();
    let set = ImageSet::open(dir.path()).unwrap();
    assert!(!set.manifest().labeled());
    assert!(set.read_shard(0).unwrap().labels.is_none());
}

#[test]
fn wrong_sizes_and_labels_are_refused() {
    let dir = common::temp_dir("artifact");
    let mut w = ImageSetWriter::create(dir.path(), vec!["A".into()], 4, 10).unwrap();
    let err = w
        .push_chw(&[0u8; 5], Some(0), "bad.png".into())
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.png") && err.contains("48"), "{err}");
    let err = w
        .push_chw(&image(0, 4), Some(3), "c.png".into())
        .unwrap_err()
        .to_string();
    assert!(err.contains("label"), "{err}");
}

#[test]
fn layout_conversions_are_inverse() {
    let hwc = image(7, 5);
    assert_eq!(chw_to_hwc(&hwc_to_chw(&hwc, 5), 5), hwc);
    // Pixel 0 of HWC is (R, G, B) = bytes 0..3; in CHW they sit at 0, 25, 50.
    let chw = hwc_to_chw(&hwc, 5);
    assert_eq!([chw[0], chw[25], chw[50]], [hwc[0], hwc[1], hwc[2]]);
}

#[test]
fn missing_or_broken_files_are_named() {
    let dir = common::temp_dir("artifact");
    let err = ImageSet::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains(MANIFEST_FILE), "{err}");

    let mut w = ImageSetWriter::create(dir.path(), vec![], 2, 10).unwrap();
    w.push_chw(&image(1, 2), None, "x".into()).unwrap();
    w.finish().unwrap();
    let shard = dir.path().join("images-00000.safetensors");
    std::fs::write(&shard, b"garbage").unwrap();
    let err = ImageSet::open(dir.path())
        .unwrap()
        .read_shard(0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("images-00000.safetensors"), "{err}");

    std::fs::remove_file(&shard).unwrap();
    let err = ImageSet::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("images-00000.safetensors") && err.contains("missing"),
        "{err}"
    );

    std::fs::write(dir.path().join(MANIFEST_FILE), "{\"format\": 1}").unwrap();
    let err = ImageSet::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains(MANIFEST_FILE), "{err}");
}
