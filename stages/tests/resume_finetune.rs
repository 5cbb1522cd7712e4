//! The φ → D′ chain at tiny scale: train-image-classifier, then finetune-decoder from a
//! tiny AE. Checks that only the decoder side moves (encoder and quant_conv stay equal to
//! the input AE), that the CE term is reported, and that an interrupted fine-tuning
//! resumes to byte-identical weights (CPU).

mod resume_harness;

use histodiff_engine::protocol::Event;
use histodiff_engine::stage::StageError;
use histodiff_stages::kinds::finetune_decoder::FinetuneDecoder;
use histodiff_stages::kinds::train_autoencoder::TrainAutoencoder;
use histodiff_stages::kinds::train_image_classifier::TrainImageClassifier;
use resume_harness::{demo_image_set, run_kind, serial};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

fn tensors(path: &Path) -> BTreeMap<String, tch::Tensor> {
    tch::Tensor::read_safetensors(path)
        .unwrap()
        .into_iter()
        .collect()
}

fn ft_params(steps: u64) -> serde_json::Value {
    json!({"preset": "tiny", "batch_size": 4, "lr": 1e-3, "perceptual_weight": 0.0,
           "steps": steps, "checkpoint_every": 0, "seed": 5, "metric_every": 1})
}

#[test]
fn finetunes_decoder_with_classifier_and_resumes_identically() {
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let labeled = demo_image_set(tmp.path(), 4, 16, true);
    let phi = run_kind(
        &TrainImageClassifier,
        tmp.path(),
        "phi",
        json!({"preset": "tiny", "batch_size": 6, "lr": 1e-3, "steps": 3}),
        &[("images", labeled.clone())],
        None,
    );
    phi.result.as_ref().expect("classifier trains");
    assert!(phi
        .events
        .iter()
        .any(|e| matches!(e, Event::Metric { name, .. } if name == "accuracy")));
    let ae = run_kind(
        &TrainAutoencoder,
        tmp.path(),
        "ae",
        json!({"preset": "tiny", "batch_size": 4, "perceptual_weight": 0.0, "steps": 2}),
        &[("images", labeled.clone())],
        None,
    );
    ae.result.as_ref().expect("AE trains");
    let inputs = [
        ("autoencoder", ae.out("autoencoder")),
        ("images", labeled),
        ("classifier", phi.out("classifier")),
    ];
    let total = 5;
    let straight = run_kind(
        &FinetuneDecoder,
        tmp.path(),
        "ft",
        ft_params(total),
        &inputs,
        None,
    );
    straight.result.as_ref().expect("fine-tuning succeeds");
    assert!(straight
        .events
        .iter()
        .any(|e| matches!(e, Event::Metric { name, value, .. } if name == "ce" && *value > 0.0)));

    let (before, after) = (
        tensors(&ae.out("autoencoder")),
        tensors(&straight.out("autoencoder")),
    );
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (name, t) in &before {
        let same = t.equal(&after[name]);
        let frozen = name.starts_with("encoder.") || name.starts_with("quant_conv.");
        assert_eq!(
            same,
            frozen || name.contains("running"),
            "`{name}`: frozen {frozen}, unchanged {same}"
        );
    }

    let stop = 1 + rand::random::<u64>() % (total - 1);
    eprintln!("interrupting fine-tuning after step {stop} of {total}");
    let cut = run_kind(
        &FinetuneDecoder,
        tmp.path(),
        "ft-resumed",
        ft_params(total),
        &inputs,
        Some(stop),
    );
    assert!(
        matches!(cut.result, Err(StageError::Interrupted { step }) if step == stop),
        "{:?}",
        cut.result
    );
    let resumed = run_kind(
        &FinetuneDecoder,
        tmp.path(),
        "ft-resumed",
        ft_params(total),
        &inputs,
        None,
    );
    resumed
        .result
        .as_ref()
        .expect("resumed fine-tuning finishes");
    let a = std::fs::read(straight.out("autoencoder")).unwrap();
    let b = std::fs::read(resumed.out("autoencoder")).unwrap();
    assert!(
        a == b,
        "resumed fine-tuning differs from the uninterrupted one"
    );
}
