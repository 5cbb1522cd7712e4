//! The data kinds run as the worker runs them (Job + StageContext in a temp dir):
//! demo → image-folder → subset/complement, image-folder on TIFF files with a corrupt one,
//! images from several folders, npy, and the registry entries.

mod common;

use common::{run_stage, temp_dir};
use histodiff_engine::protocol::Event;
use histodiff_stages::artifact::ImageSet;
use histodiff_stages::kinds::{
    self, demo::Demo, image_folder::ImageFolder, images::Images, npy::Npy, subset::Subset,
};
use image::{Rgb, RgbImage};
use serde_json::json;
use std::collections::BTreeSet;

#[test]
fn registry_lists_each_data_kind_once_with_defaults_for_optional_params() {
    let names: Vec<String> = kinds::all().iter().map(|k| k.spec().name).collect();
    for name in [
        "data/demo",
        "data/image-folder",
        "data/images",
        "data/npy",
        "data/subset",
    ] {
        assert_eq!(names.iter().filter(|n| *n == name).count(), 1, "{name}");
    }
    for kind in kinds::all() {
        let spec = kind.spec();
        assert!(
            !spec.outputs.is_empty() && !spec.doc.is_empty(),
            "{}",
            spec.name
        );
        let unique: BTreeSet<_> = spec.params.iter().map(|p| &p.name).collect();
        assert_eq!(
            unique.len(),
            spec.params.len(),
            "{}: duplicate parameter",
            spec.name
        );
    }
}

#[test]
fn demo_folder_feeds_image_folder_and_subset_splits_it() {
    let tmp = temp_dir("kinds");
    let base = tmp.path();
    let demo = run_stage(
        &Demo,
        base,
        "demo",
        json!({"classes": ["ADI", "LYM", "TUM"], "per_class": 10, "image_size": 24, "seed": 3}),
        &[],
        base,
    );
    demo.result.as_ref().unwrap();
    let folder = demo.out("folder");
    assert!(folder.join("LYM/LYM-00009.png").is_file());

    let crc = run_stage(
        &ImageFolder,
        base,
        "crc",
        json!({"image_size": 16}),
        &[("folder", vec![folder.clone()])],
        base,
    );
    crc.result.as_ref().unwrap();
    assert!(
        crc.events.iter().any(|e| matches!(
            e,
            Event::Progress {
                step: 30,
                total: 30,
                ..
            }
        )),
        "progress reaches the end"
    );
    let set = ImageSet::open(&crc.out("images")).unwrap();
    assert_eq!(set.manifest().classes, vec!["ADI", "LYM", "TUM"]);
    assert_eq!(set.manifest().class_counts(), vec![10, 10, 10]);
    assert_eq!(set.manifest().items[10].source, "LYM/LYM-00000.png");
    assert_eq!(set.manifest().image_size, 16);

    let params = |complement: bool| json!({"fraction": 0.3, "seed": 1, "complement": complement});
    let train = run_stage(
        &Subset,
        base,
        "train",
        params(false),
        &[("images", vec![crc.out("images")])],
        base,
    );
    let test = run_stage(
        &Subset,
        base,
        "test",
        params(true),
        &[("images", vec![crc.out("images")])],
        base,
    );
    train.result.as_ref().unwrap();
    test.result.as_ref().unwrap();
    let train = ImageSet::open(&train.out("images")).unwrap();
    let test = ImageSet::open(&test.out("images")).unwrap();
    assert_eq!(train.manifest().class_counts(), vec![3, 3, 3]);
    assert_eq!(test.manifest().class_counts(), vec![7, 7, 7]);
    let sources = |s: &ImageSet| {
        s.manifest()
            .items
            .iter()
            .map(|i| i.source.clone())
            .collect::<BTreeSet<_>>()
    };
    assert!(sources(&train).is_disjoint(&sources(&test)));

    // The subset carries the very pixels of its sources.
    let all = set.load_all().unwrap();
    let sub = train.load_all().unwrap();
    let first = set
        .manifest()
        .items
        .iter()
        .position(|i| i.source == train.manifest().items[0].source)
        .unwrap();
    assert_eq!(sub.image(0), all.image(first));
}

#[test]
fn demo_images_are_deterministic_and_classes_differ() {
    let tmp = temp_dir("kinds");
    let base = tmp.path();
    let p = json!({"classes": ["ADI", "LYM"], "per_class": 2, "image_size": 32, "seed": 5});
    let a = run_stage(&Demo, base, "a", p.clone(), &[], base);
    let b = run_stage(&Demo, base, "b", p, &[], base);
    a.result.as_ref().unwrap();
    b.result.as_ref().unwrap();
    let bytes = |r: &common::Ran, f: &str| std::fs::read(r.out("folder").join(f)).unwrap();
    assert_eq!(
        bytes(&a, "ADI/ADI-00001.png"),
        bytes(&b, "ADI/ADI-00001.png")
    );
    let mean = |r: &common::Ran, f: &str| {
        let img = image::open(r.out("folder").join(f)).unwrap().to_rgb8();
        img.as_raw().iter().map(|&v| v as f64).sum::<f64>() / img.as_raw().len() as f64
    };
    // Fat is pale, lymphocyte sheets are dark.
    assert!(mean(&a, "ADI/ADI-00000.png") > mean(&a, "LYM/LYM-00000.png") + 20.0);
}

#[test]
fn image_folder_reads_tiff_and_names_a_corrupt_file() {
    let tmp = temp_dir("kinds");
    let root = tmp.path().join("NCT");
    for (class, colour) in [("TUM", [120, 60, 140]), ("ADI", [240, 230, 235])] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for k in 0..3 {
            RgbImage::from_pixel(224, 224, Rgb(colour))
                .save(root.join(class).join(format!("{class}-{k}.tif")))
                .unwrap();
        }
    }
    std::fs::write(root.join("ADI/.DS_Store"), b"x").unwrap();
    let ok = run_stage(
        &ImageFolder,
        tmp.path(),
        "crc",
        json!({"path": "NCT", "image_size": 32, "limit": 2}),
        &[],
        tmp.path(),
    );
    ok.result.as_ref().unwrap();
    let set = ImageSet::open(&ok.out("images")).unwrap();
    assert_eq!(
        set.manifest().classes,
        vec!["ADI", "TUM"],
        "alphabetical labels"
    );
    assert_eq!(set.len(), 4, "limit per class");
    let batch = set.load_all().unwrap();
    assert_eq!(batch.labels.unwrap(), vec![0, 0, 1, 1]);
    assert_eq!(
        &batch.images[..3],
        &[240, 240, 240],
        "CHW: first bytes are the red plane"
    );

    std::fs::write(root.join("TUM/TUM-1.tif"), b"II*\0broken").unwrap();
    let bad = run_stage(
        &ImageFolder,
        tmp.path(),
        "bad",
        json!({"path": "NCT", "image_size": 32}),
        &[],
        tmp.path(),
    );
    let err = bad.result.unwrap_err().to_string();
    assert!(err.contains("TUM-1.tif"), "{err}");

    let missing = run_stage(
        &ImageFolder,
        tmp.path(),
        "missing",
        json!({"path": "NCT", "classes": ["TUM", "LYM"]}),
        &[],
        tmp.path(),
    );
    let err = missing.result.unwrap_err().to_string();
    assert!(err.contains("LYM"), "{err}");
}

#[test]
fn images_concatenates_folders_recursively() {
    let tmp = temp_dir("kinds");
    for (dir, n) in [("vgh", 2), ("tcga/slide1", 3)] {
        std::fs::create_dir_all(tmp.path().join(dir)).unwrap();
        for k in 0..n {
            RgbImage::from_pixel(20, 30, Rgb([k as u8, 0, 0]))
                .save(tmp.path().join(dir).join(format!("t{k}.jpg")))
                .unwrap();
        }
    }
    let ran = run_stage(
        &Images,
        tmp.path(),
        "pre",
        json!({"paths": ["vgh", "tcga"], "image_size": 16}),
        &[],
        tmp.path(),
    );
    ran.result.as_ref().unwrap();
    let set = ImageSet::open(&ran.out("images")).unwrap();
    assert!(!set.manifest().labeled());
    let sources: Vec<&str> = set
        .manifest()
        .items
        .iter()
        .map(|i| i.source.as_str())
        .collect();
    assert_eq!(
        sources,
        vec![
            "vgh/t0.jpg",
            "vgh/t1.jpg",
            "tcga/slide1/t0.jpg",
            "tcga/slide1/t1.jpg",
            "tcga/slide1/t2.jpg"
        ]
    );
}

#[test]
fn npy_kind_reads_pannuke_layout() {
    let tmp = temp_dir("kinds");
    let path = tmp.path().join("images.npy");
    let n = 3 * 8 * 8 * 3;
    let data: Vec<u8> = (0..n)
        .flat_map(|i| ((i % 200) as f32).to_le_bytes())
        .collect();
    let mut header =
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 8, 8, 3), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    std::fs::write(&path, bytes).unwrap();
    let ran = run_stage(
        &Npy,
        tmp.path(),
        "pannuke",
        json!({"paths": ["images.npy"], "image_size": 8}),
        &[],
        tmp.path(),
    );
    ran.result.as_ref().unwrap();
    let set = ImageSet::open(&ran.out("images")).unwrap();
    assert_eq!(set.len(), 3);
    assert_eq!(set.manifest().items[2].source, "images.npy#2");
    let batch = set.load_all().unwrap();
    // Image 0, pixel 0: HWC values (0, 1, 2) → CHW positions 0, 64, 128.
    assert_eq!(
        [batch.images[0], batch.images[64], batch.images[128]],
        [0, 1, 2]
    );
}
