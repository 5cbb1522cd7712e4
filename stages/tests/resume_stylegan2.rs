//! stylegan2/train and stylegan2/sample at tiny scale on 16² demo images: the generator
//! artifact is G_ema under its official names with the architecture in its metadata; an
//! interrupted run resumes byte-identical on the CPU, also past a damaged newest
//! checkpoint; the sampler writes a labeled per-class pool, deterministic and resumable;
//! bad generator inputs are refused with the file named.

mod resume_harness;

use histodiff_engine::protocol::Event;
use histodiff_engine::stage::StageError;
use histodiff_stages::artifact::ImageSet;
use histodiff_stages::kinds::stylegan2_sample::Stylegan2Sample;
use histodiff_stages::kinds::stylegan2_train::Stylegan2Train;
use resume_harness::{demo_image_set, run_kind, serial, Ran};
use serde_json::json;
use std::path::{Path, PathBuf};

fn train_params(steps: u64) -> serde_json::Value {
    // 17 steps cover both lazy regularisers twice (G every 4, D every 16, from step 0).
    json!({"preset": "tiny", "batch_size": 4, "lr": 2e-3, "r1_gamma": 0.05, "mbstd_group_size": 2,
           "ema_kimg": 0.01, "steps": steps, "checkpoint_every": 3, "seed": 5, "metric_every": 1})
}

fn train(dir: &Path, name: &str, images: &Path, stop: Option<u64>) -> Ran {
    run_kind(
        &Stylegan2Train,
        dir,
        name,
        train_params(17),
        &[("images", images.to_path_buf())],
        stop,
    )
}

fn checkpoints(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    files
}

fn logs(ran: &Ran) -> String {
    ran.events
        .iter()
        .filter_map(|e| match e {
            Event::Log { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn trains_resumes_identically_and_samples_a_labeled_pool() {
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let images = demo_image_set(tmp.path(), 4, 16, true);
    let straight = train(tmp.path(), "gan", &images, None);
    straight.result.as_ref().expect("StyleGAN2 trains");
    let generator = straight.out("generator");
    let tensors: std::collections::BTreeMap<String, tch::Tensor> =
        tch::Tensor::read_safetensors(&generator)
            .unwrap()
            .into_iter()
            .collect();
    for name in [
        "G_ema.mapping.embed.weight",
        "G_ema.mapping.w_avg",
        "G_ema.synthesis.b4.const",
        "G_ema.synthesis.b16.conv0.weight",
        "G_ema.synthesis.b16.torgb.affine.bias",
    ] {
        assert!(
            tensors.contains_key(name),
            "{name} in {:?}",
            tensors.keys().take(5).collect::<Vec<_>>()
        );
    }
    assert!(tensors.keys().all(|k| k.starts_with("G_ema.")));
    let meta = histodiff_stages::weights::read_metadata(&generator).unwrap();
    assert!(
        meta["histodiff.stylegan2"].contains("\"img_resolution\":16"),
        "{meta:?}"
    );
    let metrics: Vec<&str> = straight
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Metric { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    for m in [
        "loss",
        "loss_D_real",
        "loss_D_fake",
        "pl_penalty",
        "r1_penalty",
    ] {
        assert!(metrics.contains(&m), "metric {m} recorded: {metrics:?}");
    }

    // Interrupted after step 13 (checkpoints at 12 and 13 kept), the newest torn: the run
    // resumes from 12 and still ends byte-identical.
    let cut = train(tmp.path(), "gan-resumed", &images, Some(13));
    assert!(
        matches!(cut.result, Err(StageError::Interrupted { step: 13 })),
        "{:?}",
        cut.result
    );
    let kept = checkpoints(&cut.work_dir.join("checkpoints"));
    assert_eq!(kept.len(), 2, "{kept:?}");
    let bytes = std::fs::read(&kept[1]).unwrap();
    std::fs::write(&kept[1], &bytes[..bytes.len() / 2]).unwrap();
    let resumed = train(tmp.path(), "gan-resumed", &images, None);
    resumed.result.as_ref().expect("resumed training finishes");
    let log = logs(&resumed);
    assert!(
        log.contains("set aside damaged checkpoint") && log.contains("at step 12"),
        "{log}"
    );
    assert!(
        std::fs::read(&generator).unwrap() == std::fs::read(resumed.out("generator")).unwrap(),
        "resumed StyleGAN2 training differs from the uninterrupted one"
    );

    // The pool: 3 classes × 5, batches of 4, resumable after batch 2.
    let sample_params = json!({"per_class": 5, "batch_size": 4, "truncation_psi": 0.7, "seed": 3});
    let inputs = [("generator", generator.clone()), ("images", images.clone())];
    let pool = run_kind(
        &Stylegan2Sample,
        tmp.path(),
        "pool",
        sample_params.clone(),
        &inputs,
        None,
    );
    pool.result.as_ref().expect("samples");
    let set = ImageSet::open(&pool.out("images")).unwrap();
    assert_eq!(set.len(), 15);
    assert_eq!(set.manifest().class_counts(), vec![5, 5, 5]);
    assert_eq!(set.manifest().image_size, 16);
    let cut = run_kind(
        &Stylegan2Sample,
        tmp.path(),
        "pool-resumed",
        sample_params.clone(),
        &inputs,
        Some(2),
    );
    assert!(
        matches!(cut.result, Err(StageError::Interrupted { step: 2 })),
        "{:?}",
        cut.result
    );
    let again = run_kind(
        &Stylegan2Sample,
        tmp.path(),
        "pool-resumed",
        sample_params,
        &inputs,
        None,
    );
    again.result.as_ref().expect("resumed sampling finishes");
    let a = ImageSet::open(&again.out("images"))
        .unwrap()
        .load_all()
        .unwrap();
    let b = set.load_all().unwrap();
    assert!(
        a.images == b.images && a.labels == b.labels,
        "resumed pool differs"
    );
    assert!(
        b.images.iter().any(|&p| p != b.images[0]),
        "the pool is not blank"
    );

    // A file that is no generator, and a generator for other classes, are refused by name.
    let not_gan = run_kind(
        &Stylegan2Sample,
        tmp.path(),
        "not-gan",
        json!({"per_class": 1}),
        &[("generator", kept[0].clone()), ("images", images.clone())],
        None,
    );
    let err = format!(
        "{:?}",
        not_gan.result.expect_err("a checkpoint is no generator")
    );
    assert!(
        err.contains("not a StyleGAN2 generator artifact") && err.contains("ckpt-"),
        "{err}"
    );
    let other = demo_image_set(&tmp.path().join("other"), 2, 32, true);
    let wrong = run_kind(
        &Stylegan2Sample,
        tmp.path(),
        "wrong",
        json!({"per_class": 1}),
        &[("generator", generator), ("images", other)],
        None,
    );
    let err = format!("{:?}", wrong.result.expect_err("size mismatch"));
    assert!(err.contains("16² images") && err.contains("32²"), "{err}");
}

#[test]
fn unusable_training_sets_are_refused() {
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let odd = demo_image_set(tmp.path(), 4, 12, true);
    let ran = run_kind(
        &Stylegan2Train,
        tmp.path(),
        "odd",
        train_params(1),
        &[("images", odd)],
        None,
    );
    let err = format!("{:?}", ran.result.expect_err("12 px is not a power of two"));
    assert!(err.contains("power-of-two"), "{err}");
    let unlabeled = demo_image_set(&tmp.path().join("u"), 4, 16, false);
    let ran = run_kind(
        &Stylegan2Train,
        tmp.path(),
        "unlabeled",
        train_params(1),
        &[("images", unlabeled)],
        None,
    );
    assert!(
        ran.result.is_err(),
        "an unlabeled set cannot condition a class-conditional GAN"
    );
    let small = demo_image_set(&tmp.path().join("s"), 4, 16, true);
    let params = json!({"preset": "tiny", "batch_size": 6, "mbstd_group_size": 4, "steps": 1});
    let ran = run_kind(
        &Stylegan2Train,
        tmp.path(),
        "groups",
        params,
        &[("images", small)],
        None,
    );
    let err = format!("{:?}", ran.result.expect_err("6 is no multiple of 4"));
    assert!(err.contains("mbstd_group_size"), "{err}");
}
