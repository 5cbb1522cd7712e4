//! train-autoencoder warns (and still trains) when its run ends before `disc_start`: the
//! patch-GAN terms of Eq. 4 would never count, as happened to the "without pre-training"
//! ablation with the paper's 50,001 on 8,330 steps. A GAN switched off by
//! `disc_weight: 0` is deliberate and stays quiet.

mod resume_harness;

use histodiff_engine::protocol::Event;
use histodiff_stages::kinds::train_autoencoder::TrainAutoencoder;
use resume_harness::{demo_image_set, run_kind, serial};
use serde_json::json;

/// Warnings the run logged, after checking that it trained.
fn warnings(disc_start: u64, disc_weight: f64) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let images = demo_image_set(tmp.path(), 4, 16, false);
    let params = json!({
        "preset": "tiny", "batch_size": 4, "steps": 2, "perceptual_weight": 0.0,
        "disc_start": disc_start, "disc_weight": disc_weight, "seed": 0
    });
    let ran = run_kind(
        &TrainAutoencoder,
        tmp.path(),
        "ae",
        params,
        &[("images", images)],
        None,
    );
    ran.result.as_ref().expect("training succeeds either way");
    ran.events
        .into_iter()
        .filter_map(|e| match e {
            Event::Log { level, message } if level == "warn" => Some(message),
            _ => None,
        })
        .collect()
}

#[test]
fn a_disc_start_past_the_last_step_is_warned_about() {
    let _one_at_a_time = serial();
    let warned = warnings(2, 0.5);
    assert!(
        warned.len() == 1
            && warned[0].contains("disc_start 2 >= the run's 2 steps")
            && warned[0].contains("never count"),
        "{warned:?}"
    );
    assert!(warnings(1, 0.5).is_empty(), "step 1 of 0..2 trains the GAN");
    assert!(
        warnings(50_001, 0.0).is_empty(),
        "disc_weight 0 turns the GAN off on purpose"
    );
}
