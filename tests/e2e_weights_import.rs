//! Bring your own weights, through the binary: a first pipeline trains a tiny autoencoder
//! and diffusion model and `histodiff export` takes their weights out of its store (as a
//! user would bring converted official checkpoints); a second pipeline, in another store,
//! starts from those files with `weights/import` and never trains either model:
//! data/demo → image-folder → weights/import ×2 → train-latent-classifier → sample.

mod common;

use common::Project;
use std::path::Path;

const PRETRAIN: &str = r#"
version: 1
settings: { device: cpu, jobs: 1 }
stages:
  demo:
    uses: data/demo
    with: { classes: [ADI, TUM], per_class: 4, image_size: 32, seed: 0 }
  crc:
    uses: data/image-folder
    inputs: { folder: demo }
    with: { image_size: 32 }
  autoencoder:
    uses: histodiffusion/train-autoencoder
    inputs: { images: crc }
    with: { preset: tiny, steps: 3, batch_size: 4, perceptual_weight: 0.0, seed: 0 }
  diffusion:
    uses: histodiffusion/train-diffusion
    inputs: { images: crc, autoencoder: autoencoder }
    with: { preset: tiny, steps: 3, batch_size: 4, warm_up_steps: 1, scale_images: 8, seed: 0 }
"#;

const IMPORTED: &str = r#"
version: 1
settings: { device: cpu, jobs: 1 }
stages:
  demo:
    uses: data/demo
    with: { classes: [ADI, TUM], per_class: 4, image_size: 32, seed: 0 }
  crc:
    uses: data/image-folder
    inputs: { folder: demo }
    with: { image_size: 32 }
  ae:
    uses: weights/import
    with: { path: weights/ae.safetensors, artifact: autoencoder, preset: tiny }
  unet:
    uses: weights/import
    with: { path: weights/unet.safetensors, artifact: unet, preset: tiny }
  latent_cls:
    uses: histodiffusion/train-latent-classifier
    inputs: { images: crc, autoencoder: ae, unet: unet }
    with: { preset: tiny, steps: 2, batch_size: 4, seed: 0 }
  pool:
    uses: histodiffusion/sample
    inputs: { unet: unet, classifier: latent_cls, autoencoder: ae, images: crc }
    with: { preset: tiny, steps: 2, per_class: 2, batch_size: 4, seed: 0 }
"#;

/// Runs `histodiff --store STORE ARGS…` and requires success.
fn run_in_store(p: &Project, store: &Path, args: &[&str]) -> String {
    let mut all = vec!["--store", store.to_str().unwrap()];
    all.extend_from_slice(args);
    p.run(&all).expect_code(0).stdout
}

/// Trains the tiny AE and UNet in their own store and exports them to `weights/`.
fn pretrained_weights(p: &Project) {
    let dir = p.path().join("pretrain");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pipeline.yaml");
    std::fs::write(&file, PRETRAIN).unwrap();
    let store = dir.join(".histodiff");
    run_in_store(p, &store, &["run", file.to_str().unwrap()]);
    std::fs::create_dir_all(p.path().join("weights")).unwrap();
    for (target, name) in [
        ("autoencoder.autoencoder", "ae.safetensors"),
        ("diffusion.unet", "unet.safetensors"),
    ] {
        let dest = p.path().join("weights").join(name);
        run_in_store(p, &store, &["export", target, dest.to_str().unwrap()]);
    }
}

#[test]
fn imported_ae_and_unet_replace_their_training() {
    let p = Project::new();
    pretrained_weights(&p);
    let file = p.pipeline(IMPORTED);
    let store = p.path().join(".histodiff");
    run_in_store(&p, &store, &["run", file.to_str().unwrap()]);

    let pool = p.path().join("pool");
    run_in_store(
        &p,
        &store,
        &["export", "pool.images", pool.to_str().unwrap()],
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pool.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["count"], 4, "2 classes × 2 per class: {manifest}");
    assert_eq!(manifest["classes"], serde_json::json!(["ADI", "TUM"]));

    // No training stage of the AE or the UNet ran in this store.
    let ls = run_in_store(&p, &store, &["ls"]);
    assert!(
        ls.contains("ae.weights") && ls.contains("unet.weights"),
        "{ls}"
    );
    assert!(!ls.contains("autoencoder.autoencoder"), "{ls}");

    // A second run is fully cached, the imports included; a changed weight file
    // (its content, not its path) re-runs its import and everything downstream.
    let plan = |p: &Project| run_in_store(p, &store, &["plan", file.to_str().unwrap()]);
    let cached = plan(&p);
    assert!(cached.contains("0 to run, 6 cached"), "{cached}");
    let unet = p.path().join("weights/unet.safetensors");
    let mut bytes = std::fs::read(&unet).unwrap();
    bytes.push(b' ');
    std::fs::write(&unet, bytes).unwrap();
    let changed = plan(&p);
    assert!(changed.contains("3 to run, 3 cached"), "{changed}");
}
