//! `weights/import`: for every artifact type, weights made here from the tiny preset's
//! model are imported, and the downstream loader of that artifact accepts the result with
//! identical tensors; a file with a wrong shape, a missing or an extra tensor fails with
//! the tensor named and writes nothing.

mod common;

use common::{run_stage, Ran};
use histodiff_engine::protocol::Event;
use histodiff_stages::artifact::unet::read_scale_factor;
use histodiff_stages::artifact::ImageSetWriter;
use histodiff_stages::artifact::{autoencoder, classifier, unet_classifier};
use histodiff_stages::kinds::weights_import::WeightsImport;
use histodiff_stages::models::autoencoder::AutoencoderKL;
use histodiff_stages::models::unet::presets::tiny_unet;
use histodiff_stages::models::unet::UNetModel;
use histodiff_stages::models::vit::{VisionTransformer, VitConfig};
use histodiff_stages::presets::Preset;
use histodiff_stages::train::named::restore_into;
use histodiff_stages::weights;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Tensor};

const CLASSES: [&str; 3] = ["ADI", "BACK", "TUM"];
const IMAGE_SIZE: i64 = 32;

fn classes() -> Vec<String> {
    CLASSES.iter().map(|c| c.to_string()).collect()
}

fn tiny_ae() -> VarStore {
    let vs = VarStore::new(Device::Cpu);
    let config = Preset::Tiny.autoencoder().unwrap().0;
    AutoencoderKL::new(&vs.root(), config).unwrap();
    vs
}

fn tiny_unet_store() -> VarStore {
    let vs = VarStore::new(Device::Cpu);
    UNetModel::new(&vs.root(), &tiny_unet()).unwrap();
    vs
}

fn tiny_image_classifier() -> VarStore {
    let vs = VarStore::new(Device::Cpu);
    let config = Preset::Tiny
        .unet_classifier(CLASSES.len() as i64, IMAGE_SIZE)
        .unwrap();
    unet_classifier::build(&vs, &config).unwrap();
    vs
}

/// ϕ as sample builds it for IMAGE_SIZE images.
fn tiny_latent_classifier() -> VarStore {
    let vs = VarStore::new(Device::Cpu);
    let factor = Preset::Tiny.autoencoder().unwrap().0.downsampling_factor();
    let config = Preset::Tiny
        .unet_classifier(CLASSES.len() as i64, IMAGE_SIZE / factor)
        .unwrap();
    unet_classifier::build(&vs, &config).unwrap();
    vs
}

fn tiny_vit() -> VarStore {
    let vs = VarStore::new(Device::Cpu);
    VisionTransformer::new(&vs.root(), VitConfig::tiny(CLASSES.len() as i64)).unwrap();
    vs
}

/// Saves `vs` as `dir/name.safetensors`.
fn save(vs: &VarStore, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.safetensors"));
    weights::save(vs, &path).unwrap();
    path
}

/// Runs the kind on `file` with `params` added.
fn import(dir: &Path, name: &str, file: &Path, mut params: Value) -> Ran {
    params["path"] = json!(file.display().to_string());
    run_stage(&WeightsImport, dir, name, params, &[], dir)
}

/// Every variable of `expected` equals the same-named variable of `got`, and no more.
fn assert_same(expected: &VarStore, got: &VarStore) {
    let (a, b) = (expected.variables(), got.variables());
    assert_eq!(
        a.keys().collect::<std::collections::BTreeSet<_>>(),
        b.keys().collect()
    );
    for (k, t) in &a {
        assert!(t.equal(&b[k]), "`{k}` differs after import");
    }
}

fn logs(ran: &Ran) -> Vec<String> {
    ran.events
        .iter()
        .filter_map(|e| match e {
            Event::Log { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn error(ran: &Ran) -> String {
    match &ran.result {
        Ok(()) => panic!("the import succeeded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn autoencoder_loads_as_train_autoencoder_output() {
    let dir = tempfile::tempdir().unwrap();
    let source = tiny_ae();
    let file = save(&source, dir.path(), "ae");
    let ran = import(
        dir.path(),
        "ae",
        &file,
        json!({ "artifact": "autoencoder", "preset": "tiny" }),
    );
    ran.result.as_ref().unwrap();
    // The loader of train-diffusion, train-latent-classifier and sample.
    let (vs, _ae) = autoencoder::load(&ran.out("weights"), Preset::Tiny, Device::Cpu).unwrap();
    assert_same(&source, &vs);
}

#[test]
fn unet_with_one_weight_set_uses_it_as_ema_too() {
    let dir = tempfile::tempdir().unwrap();
    let source = tiny_unet_store();
    let file = save(&source, dir.path(), "unet");
    let ran = import(
        dir.path(),
        "unet",
        &file,
        json!({ "artifact": "unet", "preset": "tiny", "scale_factor": 0.25 }),
    );
    ran.result.as_ref().unwrap();
    let out = ran.out("weights");
    assert_eq!(read_scale_factor(&out).unwrap(), 0.25);
    assert_unet_artifact(&out, &source, &source);
    assert!(
        logs(&ran)
            .iter()
            .any(|l| l.contains("as both the raw and the EMA")),
        "{:?}",
        logs(&ran)
    );
}

#[test]
fn unet_ema_comes_from_ema_path() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, ema) = (tiny_unet_store(), tiny_unet_store());
    let raw_file = save(&raw, dir.path(), "unet");
    let ema_file = save(&ema, dir.path(), "unet_ema");
    let ran = import(
        dir.path(),
        "unet",
        &raw_file,
        json!({ "artifact": "unet", "preset": "tiny", "scale_factor": 0.5,
                "ema_path": ema_file.display().to_string() }),
    );
    ran.result.as_ref().unwrap();
    assert_unet_artifact(&ran.out("weights"), &raw, &ema);
}

/// A histodiff `unet` artifact (e.g. exported from another store) imports as itself:
/// weights, `ema.*` and `scale_factor` are kept.
#[test]
fn unet_artifact_reimports_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, ema) = (tiny_unet_store(), tiny_unet_store());
    let first = import(
        dir.path(),
        "first",
        &save(&raw, dir.path(), "unet"),
        json!({ "artifact": "unet", "preset": "tiny", "scale_factor": 0.125,
                "ema_path": save(&ema, dir.path(), "ema").display().to_string() }),
    );
    first.result.as_ref().unwrap();
    let again = import(
        dir.path(),
        "again",
        &first.out("weights"),
        json!({ "artifact": "unet", "preset": "tiny" }),
    );
    again.result.as_ref().unwrap();
    assert_eq!(read_scale_factor(&again.out("weights")).unwrap(), 0.125);
    assert_unet_artifact(&again.out("weights"), &raw, &ema);
}

#[test]
fn unet_scale_factor_comes_from_metadata_and_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let source = tiny_unet_store();
    let named: Vec<(String, Tensor)> = source.variables().into_iter().collect();
    // As convert_checkpoint.py ldm writes it: s in the header's metadata.
    let with_meta = dir.path().join("converted.safetensors");
    write_with_metadata(&named, &with_meta, "0.18215");
    let ran = import(
        dir.path(),
        "meta",
        &with_meta,
        json!({ "artifact": "unet", "preset": "tiny" }),
    );
    ran.result.as_ref().unwrap();
    assert_eq!(
        read_scale_factor(&ran.out("weights")).unwrap(),
        0.18215f32 as f64
    );
    let clash = import(
        dir.path(),
        "clash",
        &with_meta,
        json!({ "artifact": "unet", "preset": "tiny", "scale_factor": 0.2 }),
    );
    assert!(error(&clash).contains("differs"), "{}", error(&clash));
    let bare = save(&source, dir.path(), "bare");
    let missing = import(
        dir.path(),
        "missing",
        &bare,
        json!({ "artifact": "unet", "preset": "tiny" }),
    );
    assert!(
        error(&missing).contains("scale_factor"),
        "{}",
        error(&missing)
    );
    assert!(!missing.out("weights").exists());
}

/// Writes `tensors` with `{"scale_factor": value}` metadata through the safetensors crate.
fn write_with_metadata(tensors: &[(String, Tensor)], path: &Path, value: &str) {
    let data: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(k, t)| {
            let t = t.contiguous();
            let v = Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
            let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            let shape = t.size().iter().map(|&d| d as usize).collect();
            (k.clone(), bytes, shape)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(k, b, s)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .unwrap();
            (k.clone(), view)
        })
        .collect();
    let meta = Some(std::collections::HashMap::from([(
        "scale_factor".to_string(),
        value.to_string(),
    )]));
    safetensors::serialize_to_file(views, meta, path).unwrap();
}

/// The artifact is what train-diffusion writes, and sample's two ways of loading it
/// (`use_ema` true / false) get `raw` and `ema`.
fn assert_unet_artifact(path: &Path, raw: &VarStore, ema: &VarStore) {
    let tensors = weights::read_tensors(path).unwrap();
    let names: Vec<&str> = tensors.iter().map(|(k, _)| k.as_str()).collect();
    let vars = raw.variables();
    assert_eq!(
        names.len(),
        2 * vars.len() + 2,
        "weights, ema.*, counter, s"
    );
    assert!(names.contains(&"ema.num_updates") && names.contains(&"scale_factor"));
    for (use_ema, expected) in [(false, raw), (true, ema)] {
        let chosen: Vec<(String, Tensor)> = tensors
            .iter()
            .filter_map(|(k, t)| match (use_ema, k.strip_prefix("ema.")) {
                (true, Some(rest)) if rest != "num_updates" => {
                    Some((rest.to_string(), t.shallow_clone()))
                }
                (false, None) if k != "scale_factor" => Some((k.clone(), t.shallow_clone())),
                _ => None,
            })
            .collect();
        let loaded = tiny_unet_store();
        restore_into(&loaded, &chosen, |_| true, "unet").unwrap();
        assert_same(expected, &loaded);
    }
}

#[test]
fn latent_classifier_loads_as_sample_builds_it() {
    let dir = tempfile::tempdir().unwrap();
    let source = tiny_latent_classifier();
    let file = save(&source, dir.path(), "phi");
    let ran = import(
        dir.path(),
        "phi",
        &file,
        json!({ "artifact": "latent-classifier", "preset": "tiny",
                "classes": CLASSES, "image_size": IMAGE_SIZE }),
    );
    ran.result.as_ref().unwrap();
    let mut loaded = tiny_latent_classifier();
    weights::load_strict(&mut loaded, &ran.out("weights"), |_| false).unwrap();
    assert_same(&source, &loaded);
}

/// Class names and size come from a bound image set too.
#[test]
fn image_classifier_takes_classes_from_images_input() {
    let dir = tempfile::tempdir().unwrap();
    let source = tiny_image_classifier();
    let file = save(&source, dir.path(), "aux");
    let set = labeled_set(&dir.path().join("set"));
    let mut params = json!({ "artifact": "image-classifier", "preset": "tiny" });
    params["path"] = json!(file.display().to_string());
    let ran = run_stage(
        &WeightsImport,
        dir.path(),
        "aux",
        params,
        &[("images", vec![set])],
        dir.path(),
    );
    ran.result.as_ref().unwrap();
    // finetune-decoder's loader.
    let mut loaded = tiny_image_classifier();
    weights::load_strict(&mut loaded, &ran.out("weights"), |_| false).unwrap();
    assert_same(&source, &loaded);
}

fn labeled_set(dir: &Path) -> PathBuf {
    let size = IMAGE_SIZE as usize;
    let mut w = ImageSetWriter::create(dir, classes(), size, 4).unwrap();
    for label in 0..CLASSES.len() as i64 {
        w.push_chw(
            &vec![100u8; 3 * size * size],
            Some(label),
            format!("{label}.png"),
        )
        .unwrap();
    }
    w.finish().unwrap();
    dir.to_path_buf()
}

#[test]
fn vit_loads_as_train_classifier_model() {
    let dir = tempfile::tempdir().unwrap();
    let source = tiny_vit();
    let file = save(&source, dir.path(), "vit");
    let ran = import(
        dir.path(),
        "vit",
        &file,
        json!({ "artifact": "vit", "preset": "tiny", "classes": CLASSES }),
    );
    ran.result.as_ref().unwrap();
    let out = ran.out("weights");
    // select's and the report's loaders.
    let loaded = classifier::load(&out, Device::Cpu).unwrap();
    assert_eq!(loaded.config.classes, classes());
    assert_eq!(loaded.config.arch, "vit-tiny");
    assert_same(&source, &loaded.vs);
    let history = std::fs::read_to_string(out.join("history.csv")).unwrap();
    assert!(histodiff_stages::report::curves::read_history(&out.join("history.csv")).is_ok());
    assert_eq!(history, "step,loss\n");
    assert!(out.join("training.json").is_file());
}

#[test]
fn classifier_without_class_names_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = save(&tiny_vit(), dir.path(), "vit");
    let ran = import(
        dir.path(),
        "vit",
        &file,
        json!({ "artifact": "vit", "preset": "tiny" }),
    );
    assert!(error(&ran).contains("class names"), "{}", error(&ran));
}

#[test]
fn official_preset_is_only_for_vit() {
    let dir = tempfile::tempdir().unwrap();
    let file = save(&tiny_ae(), dir.path(), "ae");
    let ran = import(
        dir.path(),
        "ae",
        &file,
        json!({ "artifact": "autoencoder", "preset": "official" }),
    );
    assert!(error(&ran).contains("preset `official`"), "{}", error(&ran));
}

/// The tensors of a tiny image classifier, changed by `edit`, saved as `name`.
fn edited_file(
    dir: &Path,
    name: &str,
    edit: impl FnOnce(&mut BTreeMap<String, Tensor>),
) -> PathBuf {
    let mut tensors: BTreeMap<String, Tensor> =
        tiny_image_classifier().variables().into_iter().collect();
    edit(&mut tensors);
    let named: Vec<(String, Tensor)> = tensors.into_iter().collect();
    let path = dir.join(format!("{name}.safetensors"));
    weights::save_tensors(&named, &path).unwrap();
    path
}

fn import_aux(dir: &Path, name: &str, file: &Path) -> Ran {
    import(
        dir,
        name,
        file,
        json!({ "artifact": "image-classifier", "preset": "tiny",
                "classes": CLASSES, "image_size": IMAGE_SIZE }),
    )
}

/// The first tensor name of the tiny image classifier.
fn some_key() -> String {
    let vars = tiny_image_classifier().variables();
    vars.keys().min().unwrap().clone()
}

#[test]
fn wrong_shape_names_the_tensor_and_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let key = some_key();
    let expected = tiny_image_classifier().variables()[&key].size();
    let file = edited_file(dir.path(), "bad", |t| {
        t.insert(key.clone(), Tensor::zeros([7, 5], tch::kind::FLOAT_CPU));
    });
    let ran = import_aux(dir.path(), "bad", &file);
    let e = error(&ran);
    assert!(e.contains(&format!("`{key}`")), "{e}");
    assert!(
        e.contains("[7, 5]") && e.contains(&format!("{expected:?}")),
        "{e}"
    );
    assert!(e.contains("bad.safetensors"), "{e}");
    assert!(!ran.out("weights").exists(), "no partial artifact");
}

#[test]
fn missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let key = some_key();
    let file = edited_file(dir.path(), "short", |t| {
        t.remove(&key);
    });
    let ran = import_aux(dir.path(), "short", &file);
    let e = error(&ran);
    assert!(e.contains("missing keys [") && e.contains(&key), "{e}");
    assert!(e.contains("short.safetensors"), "{e}");
    assert!(!ran.out("weights").exists());
}

#[test]
fn extra_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = edited_file(dir.path(), "long", |t| {
        t.insert(
            "loss.logvar".into(),
            Tensor::zeros([1], tch::kind::FLOAT_CPU),
        );
    });
    let ran = import_aux(dir.path(), "long", &file);
    let e = error(&ran);
    assert!(e.contains("unexpected keys [loss.logvar]"), "{e}");
    assert!(!ran.out("weights").exists());
}

/// A file of another preset (or another model) is refused, not half loaded.
#[test]
fn unet_weights_are_not_an_autoencoder() {
    let dir = tempfile::tempdir().unwrap();
    let file = save(&tiny_unet_store(), dir.path(), "unet");
    let ran = import(
        dir.path(),
        "wrong",
        &file,
        json!({ "artifact": "autoencoder", "preset": "tiny" }),
    );
    let e = error(&ran);
    assert!(
        e.contains("missing keys") && e.contains("unet.safetensors"),
        "{e}"
    );
    assert!(!ran.out("weights").exists());
}
