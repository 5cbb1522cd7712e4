//! Typed parameters (kinds/params.rs, kinds/declare.rs): a kind reads its job's
//! parameters into its `Params`, refusing an unknown parameter, an unknown preset, a
//! preset the kind does not have and a value out of range, each with the parameter named;
//! serde itself refuses unknown fields, flattened groups included; defaults fill what a
//! job leaves out, and `path` values resolve as the engine resolved them.

use histodiff_engine::hash::StageKey;
use histodiff_engine::protocol::Job;
use histodiff_stages::kinds::params::{from_job, ExternalPath};
use histodiff_stages::kinds::{
    demo, image_folder, sample, stylegan2_train, train_autoencoder, train_classifier,
};
use histodiff_stages::presets::Preset;
use histodiff_stages::train::autocast::Precision;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn job(kind: &str, params: Value) -> Job {
    Job {
        execution_id: 1,
        key: StageKey("0".repeat(64)),
        instance: "x".into(),
        kind: kind.into(),
        kind_version: 1,
        params: params.as_object().cloned().unwrap(),
        external_paths: BTreeMap::new(),
        inputs: BTreeMap::new(),
        command: None,
        base_dir: PathBuf::from("/pipelines"),
        work_dir: PathBuf::from("/work"),
        checkpoint_dir: PathBuf::from("/work/checkpoints"),
        objects_dir: PathBuf::from("/objects"),
        device: "cpu".into(),
        threads: 1,
    }
}

fn autoencoder_params(params: Value) -> Result<train_autoencoder::Params, String> {
    let job = job("histodiffusion/train-autoencoder", params);
    from_job(&job, &train_autoencoder::Params::specs()).map_err(|e| e.to_string())
}

#[test]
fn an_unknown_parameter_is_refused_by_name() {
    let err = autoencoder_params(json!({ "bach_size": 4 })).unwrap_err();
    assert!(
        err.contains("histodiffusion/train-autoencoder")
            && err.contains("unknown parameter `bach_size`")
            && err.contains("batch_size"),
        "{err}"
    );
}

#[test]
fn an_unknown_preset_is_refused_by_name() {
    let err = autoencoder_params(json!({ "preset": "huge" })).unwrap_err();
    assert!(
        err.contains("parameter `preset`") && err.contains("`huge` is not one of tiny, paper"),
        "{err}"
    );
}

#[test]
fn official_is_a_preset_only_where_the_kind_declares_it() {
    let err = autoencoder_params(json!({ "preset": "official" })).unwrap_err();
    assert!(err.contains("parameter `preset`"), "{err}");
    let job = job(
        "histodiffusion/train-classifier",
        json!({ "preset": "official" }),
    );
    let p: train_classifier::Params = from_job(&job, &train_classifier::Params::specs()).unwrap();
    assert_eq!(p.preset, Preset::Official);
}

#[test]
fn a_value_out_of_range_or_of_the_wrong_type_is_refused_by_name() {
    let job_with = |params| job("histodiffusion/sample", params);
    let specs = sample::Params::specs();
    let err = from_job::<sample::Params>(&job_with(json!({ "steps": 0 })), &specs)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("parameter `steps`") && err.contains("between 1 and 999"),
        "{err}"
    );
    let err = from_job::<sample::Params>(&job_with(json!({ "use_ema": "yes" })), &specs)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("parameter `use_ema`") && err.contains("a boolean"),
        "{err}"
    );
}

#[test]
fn serde_refuses_unknown_fields_with_flattened_groups_too() {
    let mut complete = serde_json::to_value(defaults(&demo::Params::specs())).unwrap();
    complete["nope"] = json!(1);
    let err = serde_json::from_value::<demo::Params>(complete).unwrap_err();
    assert!(err.to_string().contains("unknown field `nope`"), "{err}");
    let mut complete = serde_json::to_value(defaults(&train_autoencoder::Params::specs())).unwrap();
    assert!(serde_json::from_value::<train_autoencoder::Params>(complete.clone()).is_ok());
    complete["nope"] = json!(1);
    let err = serde_json::from_value::<train_autoencoder::Params>(complete).unwrap_err();
    assert!(err.to_string().contains("`nope`"), "{err}");
}

fn defaults(specs: &[histodiff_engine::registry::ParamSpec]) -> BTreeMap<String, Value> {
    specs
        .iter()
        .map(|s| (s.name.clone(), s.default.clone().expect("a default")))
        .collect()
}

#[test]
fn defaults_fill_what_the_job_leaves_out() {
    let p = autoencoder_params(json!({})).unwrap();
    assert_eq!(p.training.preset, Preset::Paper);
    assert_eq!((p.training.batch_size, p.training.lr), (6, 4.5e-6));
    assert_eq!((p.loss.disc_start, p.loss.lpips_weights), (50001, None));
    assert_eq!((p.run.epochs, p.run.precision), (10, Some(Precision::F32)));
    let job = job("stylegan2/train", json!({ "batch_size": 8 }));
    let p: stylegan2_train::Params = from_job(&job, &stylegan2_train::Params::specs()).unwrap();
    assert_eq!((p.training.batch_size, p.run.precision), (8, None));
}

#[test]
fn paths_resolve_as_the_engine_resolved_them() {
    let mut j = job("data/image-folder", json!({ "path": "data/crc" }));
    let specs = image_folder::Params::specs();
    let p: image_folder::Params = from_job(&j, &specs).unwrap();
    let expected = ExternalPath {
        text: "data/crc".into(),
        path: PathBuf::from("/pipelines/data/crc"),
    };
    assert_eq!(p.path, Some(expected));
    j.external_paths
        .insert("path".into(), PathBuf::from("/mnt/crc"));
    let p: image_folder::Params = from_job(&j, &specs).unwrap();
    assert_eq!(p.path.unwrap().path, PathBuf::from("/mnt/crc"));
}
