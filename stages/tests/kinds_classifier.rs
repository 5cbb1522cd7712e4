//! `histodiffusion/train-classifier` (tiny preset) on demo data: it learns the demo
//! classes, writes test predictions that `evaluate` reads, and a run interrupted after a
//! checkpoint resumes to byte-identical weights and predictions on CPU (with augmentation
//! and drop-path on, and with best-validation selection). `select` defaults to `last`;
//! `best_val` selects on a split of the training set and never on the test set;
//! `init_weights` loads a converted ViT strictly; the official recipe resolves to SPEC
//! §8.2's values; bf16 training runs. Also the centroid selection of
//! `histodiffusion/select` with the trained classifier's features.

mod common;

use common::{run_stage, run_with_options, temp_dir, Options};
use histodiff_engine::stage::StageError;
use histodiff_stages::artifact::classifier::TRAINING_FILE;
use histodiff_stages::artifact::ImageSet;
use histodiff_stages::kinds::{
    demo::Demo, image_folder::ImageFolder, select::Select, subset::Subset,
    train_classifier::TrainClassifier,
};
use histodiff_stages::models::vit::{VisionTransformer, VitConfig};
use histodiff_stages::weights::read_tensors;
use serde_json::{json, Value};
use std::collections::BTreeMap;
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
    json!({"preset": "tiny", "epochs": 6, "batch_size": 8, "lr": 1e-3, "warmup_epochs": 1, "checkpoint_every": 5, "checkpoint_minutes": 0.0})
}

/// `params()` with some keys replaced or added.
fn params_with(extra: Value) -> Value {
    let mut p = params();
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

fn training_json(ran: &common::Ran) -> Value {
    let text = std::fs::read_to_string(ran.out("model").join(TRAINING_FILE)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn bytes(p: PathBuf) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

fn logs(ran: &common::Ran) -> Vec<String> {
    ran.events
        .iter()
        .filter_map(|e| match e {
            histodiff_engine::protocol::Event::Log { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
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

/// The demo split's inputs: train and test slots.
fn inputs(train: &Path, test: &Path) -> [(&'static str, Vec<PathBuf>); 2] {
    [
        ("train", vec![train.to_path_buf()]),
        ("test", vec![test.to_path_buf()]),
    ]
}

#[test]
fn last_is_the_default_and_the_kept_model_is_recorded() {
    let _serial = serial();
    let spec = histodiff_engine::stage::Stage::spec(&TrainClassifier);
    let select = spec.params.iter().find(|p| p.name == "select").unwrap();
    assert_eq!(select.default, Some(json!("last")));
    let tmp = temp_dir("classifier-last");
    let dir = tmp.path();
    let (train, test) = demo_split(dir);
    let mut p = params_with(json!({"epochs": 2}));
    p.as_object_mut().unwrap().remove("warmup_epochs");
    let ran = run_stage(
        &TrainClassifier,
        dir,
        "last",
        p,
        &inputs(&train, &test),
        dir,
    );
    ran.result.as_ref().unwrap();
    let meta = training_json(&ran);
    assert_eq!(meta["select"], "last");
    // 48 images in batches of 8: 6 steps per epoch.
    assert_eq!(
        meta["chosen"],
        json!({"rule": "last", "epoch": 2, "step": 12})
    );
    assert_eq!(meta["val_images"], Value::Null);
    assert_eq!(meta["train_images"], json!({"real": 48, "synthetic": 0}));
    let r = &meta["recipe"];
    assert_eq!(r["recipe"], "paper");
    // The paper recipe warms up for 5 epochs but at most a tenth of the run.
    assert_eq!(
        (r["schedule"].as_str(), r["warmup_epochs"].as_f64()),
        (Some("cosine"), Some(0.2))
    );
    assert_eq!(
        (r["drop_path"].as_f64(), r["label_smoothing"].as_f64()),
        (Some(0.1), Some(0.0))
    );
    let augmentation =
        json!({"flips": "both", "rot90": true, "color_jitter": 0.0, "crop_scale": 0.6});
    assert_eq!(r["augmentation"], augmentation);
    assert!(!ran.out("model").join("validation.csv").exists());
}

/// best_val evaluates on a stratified split of the training input only: the same run with
/// another test set keeps exactly the same model, history and choice.
#[test]
fn best_val_selects_on_a_training_split_never_on_the_test_set() {
    let _serial = serial();
    let tmp = temp_dir("classifier-best-val");
    let dir = tmp.path();
    let (train, test) = demo_split(dir);
    let p = params_with(json!({"select": "best_val", "val_fraction": 0.25, "epochs": 4}));
    let a = run_stage(
        &TrainClassifier,
        dir,
        "val-a",
        p.clone(),
        &inputs(&train, &test),
        dir,
    );
    a.result.as_ref().unwrap();
    // Another test set: the training set itself.
    let b = run_stage(
        &TrainClassifier,
        dir,
        "val-b",
        p,
        &inputs(&train, &train),
        dir,
    );
    b.result.as_ref().unwrap();
    let model = |r: &common::Ran| bytes(r.out("model").join("model.safetensors"));
    assert!(
        model(&a) == model(&b),
        "the test set changed the kept model"
    );
    let validation =
        |r: &common::Ran| std::fs::read_to_string(r.out("model").join("validation.csv")).unwrap();
    assert_eq!(validation(&a), validation(&b));
    let meta = training_json(&a);
    assert_eq!(meta["chosen"], training_json(&b)["chosen"]);
    // 12 real images per class, 25 % held out: 3 per class.
    assert_eq!(
        (
            meta["val_images"].as_u64(),
            meta["train_images"]["real"].as_u64()
        ),
        (Some(12), Some(36))
    );
    assert_eq!(meta["chosen"]["rule"], "best_val");
    let rows: Vec<Vec<f64>> = validation(&a)
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 4, "one evaluation per epoch");
    let best = rows.iter().map(|r| r[2]).fold(0.0, f64::max);
    assert_eq!(meta["chosen"]["val_accuracy"].as_f64(), Some(best));
    eprintln!(
        "best_val kept epoch {} (val accuracy {best:.3})",
        meta["chosen"]["epoch"]
    );
}

#[test]
fn best_val_resumes_byte_identically() {
    let _serial = serial();
    let tmp = temp_dir("classifier-best-val-resume");
    let dir = tmp.path();
    let (train, test) = demo_split(dir);
    let p = params_with(json!({"select": "best_val", "val_fraction": 0.25, "epochs": 3}));
    let ins = inputs(&train, &test);
    let full = run_stage(&TrainClassifier, dir, "full", p.clone(), &ins, dir);
    full.result.as_ref().unwrap();
    // 36 training images in batches of 8: 5 steps per epoch; epoch 1 is evaluated at step 5.
    let ckpt = dir.join("resume-ckpt");
    let opts = |interrupt_at| Options {
        checkpoint_dir: Some(ckpt.clone()),
        interrupt_at,
    };
    let first = run_with_options(
        &TrainClassifier,
        dir,
        "first",
        p.clone(),
        &ins,
        opts(Some(7)),
    );
    assert!(
        matches!(first.result, Err(StageError::Interrupted { step: 7 })),
        "{:?}",
        first.result
    );
    let second = run_with_options(&TrainClassifier, dir, "second", p, &ins, opts(None));
    second.result.as_ref().unwrap();
    for file in ["model.safetensors", "validation.csv", TRAINING_FILE] {
        assert!(
            bytes(second.out("model").join(file)) == bytes(full.out("model").join(file)),
            "resumed {file} differs"
        );
    }
}

/// A tiny ViT saved under the converter's names, with `edit` applied to its tensors.
fn vit_file(
    dir: &Path,
    name: &str,
    config: VitConfig,
    edit: impl FnOnce(&mut Vec<(String, tch::Tensor)>),
) -> PathBuf {
    tch::manual_seed(1234);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _model = VisionTransformer::new(&vs.root(), config).unwrap();
    let mut tensors: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
    edit(&mut tensors);
    let path = dir.join(name);
    tch::Tensor::write_safetensors(&tensors, &path).unwrap();
    path
}

fn tensors_of(path: &Path) -> BTreeMap<String, tch::Tensor> {
    read_tensors(path).unwrap().into_iter().collect()
}

/// With lr 0 the output is the initial model: the file's tensors, and a fresh head when
/// the file's has another class count.
#[test]
fn init_weights_loads_a_converted_vit_and_reinitialises_a_foreign_head() {
    let _serial = serial();
    let tmp = temp_dir("classifier-init");
    let dir = tmp.path();
    let (train, test) = demo_split(dir);
    let frozen = |file: &str| {
        params_with(
            json!({"epochs": 1, "lr": 0.0, "schedule": "constant", "warmup_epochs": 0, "init_weights": file}),
        )
    };
    let same = vit_file(dir, "vit4.safetensors", VitConfig::tiny(4), |_| {});
    let ran = run_stage(
        &TrainClassifier,
        dir,
        "init4",
        frozen("vit4.safetensors"),
        &inputs(&train, &test),
        dir,
    );
    ran.result.as_ref().unwrap();
    let out = tensors_of(&ran.out("model").join("model.safetensors"));
    let given = tensors_of(&same);
    assert_eq!(
        out.keys().collect::<Vec<_>>(),
        given.keys().collect::<Vec<_>>()
    );
    assert!(
        given.iter().all(|(k, t)| out[k].equal(t)),
        "training did not start from the file"
    );
    assert!(
        logs(&ran).iter().any(|l| l.contains("head loaded")),
        "{:?}",
        logs(&ran)
    );
    assert_eq!(
        training_json(&ran)["init_weights"]["file"],
        "vit4.safetensors"
    );

    let imagenet = vit_file(dir, "vit9.safetensors", VitConfig::tiny(9), |_| {});
    let ran = run_stage(
        &TrainClassifier,
        dir,
        "init9",
        frozen("vit9.safetensors"),
        &inputs(&train, &test),
        dir,
    );
    ran.result.as_ref().unwrap();
    let out = tensors_of(&ran.out("model").join("model.safetensors"));
    let given = tensors_of(&imagenet);
    for (k, t) in &given {
        if k.starts_with("head.") {
            assert_eq!(
                out[k].size()[0],
                4,
                "{k}: the head has the training set's classes"
            );
        } else {
            assert!(out[k].equal(t), "{k} was not loaded");
        }
    }
    let line = "head re-initialised: the file's head has 9 classes, the training set 4";
    assert!(
        logs(&ran).iter().any(|l| l.contains(line)),
        "{:?}",
        logs(&ran)
    );
}

#[test]
fn init_weights_that_do_not_fit_fail_naming_file_and_tensor() {
    let _serial = serial();
    let tmp = temp_dir("classifier-init-bad");
    let dir = tmp.path();
    let (train, test) = demo_split(dir);
    vit_file(dir, "missing.safetensors", VitConfig::tiny(4), |t| {
        t.retain(|(k, _)| k != "blocks.1.norm2.weight")
    });
    vit_file(dir, "extra.safetensors", VitConfig::tiny(4), |t| {
        t.push((
            "mask_token".into(),
            tch::Tensor::zeros([1, 64], tch::kind::FLOAT_CPU),
        ))
    });
    let wide = VitConfig {
        image_size: 64,
        ..VitConfig::tiny(4)
    };
    vit_file(dir, "wide.safetensors", wide, |_| {});
    for (file, tensor) in [
        ("missing.safetensors", "blocks.1.norm2.weight"),
        ("extra.safetensors", "mask_token"),
        ("wide.safetensors", "pos_embed"),
    ] {
        let ran = run_stage(
            &TrainClassifier,
            dir,
            &format!("run-{file}"),
            params_with(json!({"epochs": 1, "init_weights": file})),
            &inputs(&train, &test),
            dir,
        );
        let err = ran.result.unwrap_err().to_string();
        eprintln!("{file}: {err}");
        assert!(err.contains(file) && err.contains(tensor), "{file}: {err}");
    }
}

/// `recipe: official` resolves to SPEC §8.2's values (lr scaled by batch/512) and names
/// what it does not reproduce.
#[test]
fn official_recipe_resolves_to_spec_8_2() {
    let _serial = serial();
    let tmp = temp_dir("classifier-official");
    let dir = tmp.path();
    let (train, test) = demo_split(dir);
    let p = json!({"preset": "tiny", "recipe": "official", "epochs": 1, "batch_size": 8, "checkpoint_minutes": 0.0});
    let ran = run_stage(
        &TrainClassifier,
        dir,
        "official",
        p,
        &inputs(&train, &test),
        dir,
    );
    ran.result.as_ref().unwrap();
    let meta = training_json(&ran);
    let r = &meta["recipe"];
    assert_eq!(r["lr"].as_f64(), Some(5e-4 * 8.0 / 512.0));
    assert_eq!(
        (
            r["weight_decay"].as_f64(),
            r["min_lr"].as_f64(),
            r["warmup_lr"].as_f64()
        ),
        (Some(0.05), Some(1e-5), Some(1e-6))
    );
    assert_eq!(
        (r["schedule"].as_str(), r["warmup_epochs"].as_f64()),
        (Some("cosine"), Some(5.0))
    );
    assert_eq!(
        (r["drop_path"].as_f64(), r["label_smoothing"].as_f64()),
        (Some(0.1), Some(0.1))
    );
    let augmentation =
        json!({"flips": "horizontal", "rot90": false, "color_jitter": 0.0, "crop_scale": 0.08});
    assert_eq!(r["augmentation"], augmentation);
    assert!(meta["not_reproduced"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    assert!(logs(&ran).iter().any(|l| l.contains("not reproduced")));
}

/// `precision: bf16` trains on CPU end to end and changes the result (autocast is on).
#[test]
fn bf16_training_runs_and_differs_from_f32() {
    let _serial = serial();
    let tmp = temp_dir("classifier-bf16");
    let dir = tmp.path();
    let (train, test) = demo_split(dir);
    let run = |precision: &str| {
        let p = params_with(json!({"epochs": 1, "precision": precision}));
        let ran = run_stage(
            &TrainClassifier,
            dir,
            precision,
            p,
            &inputs(&train, &test),
            dir,
        );
        ran.result.as_ref().unwrap();
        bytes(ran.out("model").join("model.safetensors"))
    };
    assert!(
        run("bf16") != run("f32"),
        "bf16 training gave the f32 weights"
    );
}
