//! train-diffusion at tiny scale on a tiny AE: the output holds the UNet, its EMA copy
//! and a positive scale factor, and an interrupted run resumes to byte-identical output;
//! then train-latent-classifier on those latents (noised and official t = 0), resumed too.

mod resume_harness;

use histodiff_engine::stage::StageError;
use histodiff_stages::kinds::sample::Sample;
use histodiff_stages::kinds::train_autoencoder::TrainAutoencoder;
use histodiff_stages::kinds::train_diffusion::TrainDiffusion;
use histodiff_stages::kinds::train_latent_classifier::TrainLatentClassifier;
use histodiff_stages::train::checkpoint;
use resume_harness::{demo_image_set, run_kind, serial};
use serde_json::json;

fn dm_params(steps: u64) -> serde_json::Value {
    json!({"preset": "tiny", "batch_size": 2, "lr": 1e-3, "warm_up_steps": 2, "scale_images": 8,
           "steps": steps, "checkpoint_every": 2, "seed": 9, "metric_every": 1})
}

#[test]
fn trains_unet_with_ema_and_scale_factor_and_resumes_identically() {
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let images = demo_image_set(tmp.path(), 3, 16, true);
    let ae = run_kind(
        &TrainAutoencoder,
        tmp.path(),
        "ae",
        json!({"preset": "tiny", "batch_size": 3, "perceptual_weight": 0.0, "steps": 2}),
        &[("images", images.clone())],
        None,
    );
    ae.result.as_ref().expect("AE trains");
    let inputs = [("images", images), ("autoencoder", ae.out("autoencoder"))];
    let total = 5;
    let straight = run_kind(
        &TrainDiffusion,
        tmp.path(),
        "dm",
        dm_params(total),
        &inputs,
        None,
    );
    straight.result.as_ref().expect("diffusion trains");
    let out: std::collections::BTreeMap<String, tch::Tensor> =
        tch::Tensor::read_safetensors(straight.out("unet"))
            .unwrap()
            .into_iter()
            .collect();
    let s = out["scale_factor"].double_value(&[]);
    assert!(s.is_finite() && s > 0.0, "scale factor {s}");
    assert_eq!(out["ema.num_updates"].int64_value(&[]), total as i64);
    let w = "input_blocks.0.0.weight";
    assert!(out.contains_key(w) && out.contains_key(&format!("ema.{w}")));
    assert!(
        !out[w].equal(&out[&format!("ema.{w}")]),
        "EMA lags the weights"
    );

    let stop = 1 + rand::random::<u64>() % (total - 1);
    eprintln!("interrupting diffusion training after step {stop} of {total}");
    let cut = run_kind(
        &TrainDiffusion,
        tmp.path(),
        "dm-resumed",
        dm_params(total),
        &inputs,
        Some(stop),
    );
    assert!(
        matches!(cut.result, Err(StageError::Interrupted { step }) if step == stop),
        "{:?}",
        cut.result
    );
    let resumed = run_kind(
        &TrainDiffusion,
        tmp.path(),
        "dm-resumed",
        dm_params(total),
        &inputs,
        None,
    );
    resumed.result.as_ref().expect("resumed training finishes");
    let a = std::fs::read(straight.out("unet")).unwrap();
    let b = std::fs::read(resumed.out("unet")).unwrap();
    assert!(
        a == b,
        "resumed diffusion training differs from the uninterrupted one"
    );

    // ϕ on the same latents (the labeled demo set), with the diffusion model's scale factor.
    let lc_inputs = [
        ("images", inputs[0].1.clone()),
        ("autoencoder", ae.out("autoencoder")),
        ("unet", straight.out("unet")),
    ];
    let lc = |steps: u64, t0: bool| {
        json!({"preset": "tiny", "batch_size": 3, "lr": 1e-3, "steps": steps,
        "official_t0": t0, "checkpoint_every": 0, "seed": 4, "metric_every": 1})
    };
    let t0 = run_kind(
        &TrainLatentClassifier,
        tmp.path(),
        "lc-t0",
        lc(2, true),
        &lc_inputs,
        None,
    );
    t0.result.as_ref().expect("official t = 0 variant trains");
    let noised = run_kind(
        &TrainLatentClassifier,
        tmp.path(),
        "lc",
        lc(4, false),
        &lc_inputs,
        None,
    );
    noised.result.as_ref().expect("latent classifier trains");
    let cut = run_kind(
        &TrainLatentClassifier,
        tmp.path(),
        "lc-resumed",
        lc(4, false),
        &lc_inputs,
        Some(2),
    );
    assert!(
        matches!(cut.result, Err(StageError::Interrupted { step: 2 })),
        "{:?}",
        cut.result
    );
    let resumed = run_kind(
        &TrainLatentClassifier,
        tmp.path(),
        "lc-resumed",
        lc(4, false),
        &lc_inputs,
        None,
    );
    resumed
        .result
        .as_ref()
        .expect("resumed latent classifier finishes");
    let a = std::fs::read(noised.out("classifier")).unwrap();
    let b = std::fs::read(resumed.out("classifier")).unwrap();
    assert!(
        a == b,
        "resumed latent classifier differs from the uninterrupted one"
    );

    // Guided DDIM per class with the EMA UNet, ϕ and the AE; resumed after one batch.
    let sample_inputs = [
        ("unet", straight.out("unet")),
        ("classifier", noised.out("classifier")),
        ("autoencoder", ae.out("autoencoder")),
        ("images", inputs[0].1.clone()),
    ];
    let sp = json!({"preset": "tiny", "steps": 5, "per_class": 2, "batch_size": 2, "seed": 1});
    let pool = run_kind(
        &Sample,
        tmp.path(),
        "pool",
        sp.clone(),
        &sample_inputs,
        None,
    );
    pool.result.as_ref().expect("sampling succeeds");
    let set = histodiff_stages::artifact::ImageSet::open(&pool.out("images")).unwrap();
    let labels: Vec<Option<i64>> = set.manifest().items.iter().map(|i| i.label).collect();
    assert_eq!(
        labels,
        [0, 0, 1, 1, 2, 2].map(Some).to_vec(),
        "per-class conditioning labels"
    );
    let cut = run_kind(
        &Sample,
        tmp.path(),
        "pool-resumed",
        sp.clone(),
        &sample_inputs,
        Some(1),
    );
    assert!(
        matches!(cut.result, Err(StageError::Interrupted { step: 1 })),
        "{:?}",
        cut.result
    );
    let resumed = run_kind(
        &Sample,
        tmp.path(),
        "pool-resumed",
        sp,
        &sample_inputs,
        None,
    );
    resumed.result.as_ref().expect("resumed sampling finishes");
    let files = |dir: std::path::PathBuf| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let written = files(pool.out("images"));
    assert_eq!(
        written,
        [
            "images-00000.safetensors",
            "images-00001.safetensors",
            "images-00002.safetensors",
            "manifest.json"
        ],
        "one shard per sampling batch"
    );
    assert_eq!(files(resumed.out("images")), written);
    for file in &written {
        let a = std::fs::read(pool.out("images").join(file)).unwrap();
        let b = std::fs::read(resumed.out("images").join(file)).unwrap();
        assert!(a == b, "resumed sampling differs in {file}");
    }
    // A sampling checkpoint is the count of finished batches, not the images so far.
    let ckpts = tmp.path().join("pool-resumed/checkpoints");
    for (step, path) in checkpoint::list(&ckpts).unwrap() {
        let saved = checkpoint::load(&path).unwrap();
        assert!(saved.tensors.is_empty(), "checkpoint {step} holds tensors");
        assert_eq!(saved.meta.step, step);
    }
}
