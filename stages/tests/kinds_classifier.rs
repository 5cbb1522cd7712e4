//! `histodiffusion/train-classifier` (tiny preset) on demo data: it learns the demo
//! classes, writes test predictions that `evaluate` reads, and a run interrupted after a
//! checkpoint resumes to byte-identical weights and predictions on CPU. Also the
//! centroid selection of `histodiffusion/select` with the trained classifier's features.

mod common;

use common::{run_stage, run_with_options, temp_dir, Options};
use histodiff_engine::stage::StageError;
use histodiff_stages::artifact::ImageSet;
use histodiff_stages::kinds::{
    demo::Demo, image_folder::ImageFolder, select::Select, subset::Subset,
    train_classifier::TrainClassifier,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// libtorch's random generator is process-wide and the training kinds reseed it every
/// step: a test that draws from it in parallel (a random-init Inception, say) would break
/// the byte-identical resume. The tests of this file therefore run one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// demo (4 classes × 24 at 32 px) → image-folder → 50 % train / 50 % test.
fn demo_split(dir: &Path) -> (PathBuf, PathBuf) {
    let demo = run_stage(
        &Demo,
        dir,
        "demo",
        json!({"classes": ["ADI", "BACK", "LYM", "TUM"], "per_class": 24, "image_size": 32}),
        &[],
        dir,
    );
    demo.result.as_ref().unwrap();
    let crc = run_stage(
        &ImageFolder,
        dir,
        "crc",
        json!({"image_size": 32}),
        &[("folder", vec![demo.out("folder")])],
        dir,
    );
    crc.result.as_ref().unwrap();
    let split = |name: &str, complement: bool| {
        let r = run_stage(
            &Subset,
            dir,
            name,
            json!({"fraction": 0.5, "complement": complement}),
            &[("images", vec![crc.out("images")])],
            dir,
        );
        r.result.as_ref().unwrap();
        r.out("images")
    };
    (split("train", false), split("test", true))
}

fn params() -> serde_json::Value {
    json!({"preset": "tiny", "epochs": 6, "batch_size": 8, "lr": 1e-3, "checkpoint_every": 5, "checkpoint_minutes": 0.0})
}

#[test]
fn tiny_vit_learns_demo_classes_and_resumes_byte_identically() {
    let _serial = serial();
    let tmp = temp_dir("classifier");
    let dir = tmp.path();
    let (train, test) = demo_split(dir);
    let inputs = [("train", vec![train.clone()]), ("test", vec![test.clone()])];

    let full = run_stage(&TrainClassifier, dir, "full", params(), &inputs, dir);
    full.result.as_ref().unwrap();
    let preds: histodiff_stages::report::results::Predictions =
        histodiff_stages::report::results::read(&full.out("predictions"), "histodiff/predictions")
            .unwrap();
    let right = preds
        .truth
        .iter()
        .zip(&preds.predicted)
        .filter(|(a, b)| a == b)
        .count();
    let accuracy = right as f64 / preds.truth.len() as f64;
    eprintln!("tiny ViT test accuracy on 4 demo classes after 6 epochs: {accuracy:.3} (chance 0.25, required ≥ 0.5)");
    assert!(accuracy >= 0.5);
    assert_eq!(
        (preds.train_real, preds.train_synthetic),
        (Some(48), Some(0))
    );

    let ckpt = dir.join("resume-ckpt");
    let opts = |interrupt_at| Options {
        checkpoint_dir: Some(ckpt.clone()),
        interrupt_at,
    };
    let first = run_with_options(
        &TrainClassifier,
        dir,
        "first",
        params(),
        &inputs,
        opts(Some(7)),
    );
    match first.result {
        Err(StageError::Interrupted { step: 7 }) => {}
        other => panic!("expected an interrupt at step 7, got {other:?}"),
    }
    let second = run_with_options(
        &TrainClassifier,
        dir,
        "second",
        params(),
        &inputs,
        opts(None),
    );
    second.result.as_ref().unwrap();
    let bytes = |p: PathBuf| std::fs::read(p).unwrap();
    assert!(
        bytes(second.out("model").join("model.safetensors"))
            == bytes(full.out("model").join("model.safetensors")),
        "resumed weights differ from an uninterrupted run"
    );
    assert_eq!(
        bytes(second.out("predictions")),
        bytes(full.out("predictions"))
    );
}

#[test]
fn selection_by_random_and_by_centroid_fills_the_quotas() {
    let _serial = serial();
    let tmp = temp_dir("select");
    let dir = tmp.path();
    let (train, test) = demo_split(dir);
    let model = run_stage(
        &TrainClassifier,
        dir,
        "base",
        params(),
        &[("train", vec![train.clone()]), ("test", vec![test.clone()])],
        dir,
    );
    model.result.as_ref().unwrap();
    // The held-out half stands in for a synthetic pool (12 candidates per class).
    for (method, ratio) in [("random", 0.5), ("centroid", 0.5)] {
        let ran = run_stage(
            &Select,
            dir,
            &format!("select-{method}"),
            json!({"method": method, "ratio": ratio, "shortfall": "fill"}),
            &[
                ("pool", vec![test.clone()]),
                ("real", vec![train.clone()]),
                ("features", vec![model.out("model")]),
            ],
            dir,
        );
        ran.result.as_ref().unwrap();
        let set = ImageSet::open(&ran.out("images")).unwrap();
        assert_eq!(set.manifest().class_counts(), vec![6, 6, 6, 6], "{method}");
    }
    let err = run_stage(
        &Select,
        dir,
        "too-many",
        json!({"method": "random", "ratio": 2.0}),
        &[("pool", vec![test.clone()]), ("real", vec![train])],
        dir,
    )
    .result
    .unwrap_err()
    .to_string();
    assert!(err.contains("larger pool"), "{err}");
}

#[test]
fn fid_without_inception_weights_says_not_computed() {
    let _serial = serial();
    use histodiff_stages::kinds::fid::Fid;
    use histodiff_stages::report::results::{read, FidResult};
    let tmp = temp_dir("fid");
    let dir = tmp.path();
    let (train, test) = demo_split(dir);
    let ran = run_stage(
        &Fid,
        dir,
        "fid",
        json!({}),
        &[("synthetic", vec![test]), ("real", vec![train])],
        dir,
    );
    ran.result.as_ref().unwrap();
    let fid: FidResult = read(&ran.out("fid"), "histodiff/fid").unwrap();
    assert_eq!(fid.fid, None);
    assert!(
        fid.status.starts_with("not computed") && fid.status.contains("inception"),
        "{}",
        fid.status
    );
}

/// The computed path with a randomly initialised Inception saved as safetensors: the
/// distance of a set to itself is ~0 and to a different set is positive.
#[test]
fn fid_with_inception_weights_is_computed() {
    let _serial = serial();
    use histodiff_stages::kinds::fid::Fid;
    use histodiff_stages::models::inception::{FidInceptionV3, InceptionConfig};
    use histodiff_stages::report::results::{read, FidResult};
    let tmp = temp_dir("fid");
    let dir = tmp.path();
    let (train, test) = demo_split(dir);
    tch::manual_seed(0);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _model = FidInceptionV3::new(&vs.root(), InceptionConfig::default());
    vs.save(dir.join("inception.safetensors")).unwrap();
    let fid_of = |name: &str, synthetic: &PathBuf| {
        let ran = run_stage(
            &Fid,
            dir,
            name,
            json!({"inception": "inception.safetensors"}),
            &[
                ("synthetic", vec![synthetic.clone()]),
                ("real", vec![train.clone()]),
            ],
            dir,
        );
        ran.result.as_ref().unwrap();
        let r: FidResult = read(&ran.out("fid"), "histodiff/fid").unwrap();
        assert_eq!((r.n_real, r.n_synthetic), (48, 48));
        r.fid.unwrap()
    };
    let same = fid_of("same", &train);
    let other = fid_of("other", &test);
    eprintln!("FID(train, train) = {same:.3e} (tolerance 1e-3), FID(test, train) = {other:.3e}");
    assert!(same.abs() < 1e-3);
    assert!(other > same);
}
