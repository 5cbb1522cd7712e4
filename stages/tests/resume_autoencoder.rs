//! train-autoencoder at tiny scale through a StageContext: the output loads into the
//! AutoencoderKL, and a run interrupted at a random step (the interrupt flag set from the
//! event stream, as the worker's signal handler would) resumes from its checkpoint and
//! ends byte-identical to an uninterrupted run (CPU).

mod resume_harness;

use histodiff_engine::protocol::Event;
use histodiff_engine::stage::StageError;
use histodiff_stages::kinds::train_autoencoder::TrainAutoencoder;
use histodiff_stages::models::autoencoder::{AutoencoderConfig, AutoencoderKL};
use resume_harness::{demo_image_set, run_kind, serial};
use serde_json::json;

fn params(steps: u64) -> serde_json::Value {
    json!({
        "preset": "tiny", "batch_size": 4, "lr": 1e-3, "disc_start": 2,
        "perceptual_weight": 0.0, "steps": steps, "checkpoint_every": 3, "seed": 11,
        "metric_every": 1
    })
}

#[test]
fn trains_and_writes_loadable_autoencoder_weights() {
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let images = demo_image_set(tmp.path(), 10, 16, false);
    let ran = run_kind(
        &TrainAutoencoder,
        tmp.path(),
        "ae",
        params(5),
        &[("images", images)],
        None,
    );
    ran.result.as_ref().expect("training succeeds");
    let progress = ran
        .events
        .iter()
        .filter(|e| matches!(e, Event::Progress { .. }))
        .count();
    assert_eq!(progress, 5, "one progress event per step");
    assert!(ran
        .events
        .iter()
        .any(|e| matches!(e, Event::Metric { name, .. } if name == "d_weight")));
    assert!(ran
        .events
        .iter()
        .any(|e| matches!(e, Event::Checkpoint { step: 3, .. })));
    let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _ae = AutoencoderKL::new(&vs.root(), AutoencoderConfig::tiny()).unwrap();
    histodiff_stages::weights::load_strict(&mut vs, &ran.out("autoencoder"), |_| false)
        .expect("output holds exactly the AE keys");
}

#[test]
fn interrupted_run_resumes_to_identical_weights() {
    let _one_at_a_time = serial();
    let total = 8;
    let tmp = tempfile::tempdir().unwrap();
    let images = demo_image_set(tmp.path(), 10, 16, false);
    let inputs = [("images", images)];
    let straight = run_kind(
        &TrainAutoencoder,
        tmp.path(),
        "straight",
        params(total),
        &inputs,
        None,
    );
    straight.result.as_ref().expect("uninterrupted run");
    // A random stop step (printed, so a failure can be replayed), then a second stop later.
    let first = 1 + rand::random::<u64>() % (total - 2);
    let second = first + 1 + rand::random::<u64>() % (total - first - 1);
    eprintln!("interrupting after steps {first} and {second} of {total}");
    for stop in [first, second] {
        let ran = run_kind(
            &TrainAutoencoder,
            tmp.path(),
            "resumed",
            params(total),
            &inputs,
            Some(stop),
        );
        match ran.result {
            Err(StageError::Interrupted { step }) => assert_eq!(step, stop),
            other => panic!("expected an interrupt at {stop}, got {other:?}"),
        }
    }
    let resumed = run_kind(
        &TrainAutoencoder,
        tmp.path(),
        "resumed",
        params(total),
        &inputs,
        None,
    );
    resumed.result.as_ref().expect("resumed run finishes");
    let first_progress = resumed.events.iter().find_map(|e| match e {
        Event::Progress { step, .. } => Some(*step),
        _ => None,
    });
    assert_eq!(
        first_progress,
        Some(second + 1),
        "resumed after the last checkpoint, not from 0"
    );
    let a = std::fs::read(straight.out("autoencoder")).unwrap();
    let b = std::fs::read(resumed.out("autoencoder")).unwrap();
    assert!(
        a == b,
        "resumed weights differ from the uninterrupted run's"
    );
}

/// Checkpoints (`ckpt-*.safetensors`) of a run's directory, oldest first.
fn checkpoints(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("ckpt-") && name.ends_with(".safetensors")
        })
        .collect();
    found.sort();
    found
}

fn logs(ran: &resume_harness::Ran) -> Vec<String> {
    ran.events
        .iter()
        .filter_map(|e| match e {
            Event::Log { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// An uninterrupted run of `total` steps, and a run `name` interrupted after `stop`
/// whose checkpoints a test then damages before [`Damaged::resume`].
struct Damaged {
    tmp: tempfile::TempDir,
    inputs: [(&'static str, std::path::PathBuf); 1],
    straight: resume_harness::Ran,
    name: &'static str,
    total: u64,
}

impl Damaged {
    fn new(name: &'static str, total: u64, stop: u64) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let inputs = [("images", demo_image_set(tmp.path(), 10, 16, false))];
        let straight = run_kind(
            &TrainAutoencoder,
            tmp.path(),
            "straight",
            params(total),
            &inputs,
            None,
        );
        straight.result.as_ref().expect("uninterrupted run");
        let cut = run_kind(
            &TrainAutoencoder,
            tmp.path(),
            name,
            params(total),
            &inputs,
            Some(stop),
        );
        assert!(
            matches!(cut.result, Err(StageError::Interrupted { step }) if step == stop),
            "{:?}",
            cut.result
        );
        Damaged {
            tmp,
            inputs,
            straight,
            name,
            total,
        }
    }

    /// The interrupted run's checkpoint directory.
    fn dir(&self) -> std::path::PathBuf {
        self.tmp.path().join(self.name).join("checkpoints")
    }

    /// Runs `name` again to the end; returns its log. Its weights must equal the
    /// uninterrupted run's.
    fn resume(&self, what: &str) -> String {
        let again = run_kind(
            &TrainAutoencoder,
            self.tmp.path(),
            self.name,
            params(self.total),
            &self.inputs,
            None,
        );
        again.result.as_ref().expect(what);
        let a = std::fs::read(self.straight.out("autoencoder")).unwrap();
        let b = std::fs::read(again.out("autoencoder")).unwrap();
        assert!(
            a == b,
            "{what}: weights differ from the uninterrupted run's"
        );
        logs(&again).join("\n")
    }
}

#[test]
fn a_damaged_newest_checkpoint_is_set_aside_and_the_previous_one_resumes() {
    let _one_at_a_time = serial();
    // Checkpoints at 3 and 6 (every 3 steps), then an interrupt after step 7 writes a third;
    // the driver keeps the two newest: 6 and 7.
    let run = Damaged::new("damaged", 8, 7);
    let dir = run.dir();
    let kept = checkpoints(&dir);
    assert_eq!(kept.len(), 2, "two newest kept: {kept:?}");
    // A torn newest file (as a full disk or a bad copy would leave it).
    let bytes = std::fs::read(&kept[1]).unwrap();
    std::fs::write(&kept[1], &bytes[..bytes.len() / 2]).unwrap();

    let log = run.resume("resumes from the previous checkpoint");
    assert!(
        log.contains("set aside damaged checkpoint") && log.contains("ckpt-000000000007"),
        "the damaged file is named: {log}"
    );
    assert!(
        log.contains("at step 6"),
        "the previous checkpoint resumes: {log}"
    );
    let aside = dir.join("ckpt-000000000007.safetensors.damaged");
    assert!(aside.exists(), "kept for inspection as {}", aside.display());
}

#[test]
fn a_checkpoint_whose_bytes_changed_fails_its_hash_and_with_none_left_the_run_starts_over() {
    let _one_at_a_time = serial();
    let run = Damaged::new("flipped", 5, 3);
    let only = checkpoints(&run.dir());
    assert_eq!(only.len(), 1, "{only:?}");
    // One flipped byte near the end: the header still parses, the tensors do not match.
    let mut bytes = std::fs::read(&only[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&only[0], &bytes).unwrap();

    let log = run.resume("starts over and finishes");
    assert!(
        log.contains("content hash"),
        "the hash mismatch is reported: {log}"
    );
    assert!(log.contains("starting over from step 0"), "{log}");
}

#[test]
fn bf16_autocast_trains_and_resumes_identically_and_fp16_on_cpu_is_refused() {
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let images = demo_image_set(tmp.path(), 10, 16, false);
    let inputs = [("images", images)];
    let with = |precision: &str| {
        let mut p = params(4);
        p["precision"] = json!(precision);
        p
    };
    let f32_run = run_kind(
        &TrainAutoencoder,
        tmp.path(),
        "f32",
        with("f32"),
        &inputs,
        None,
    );
    f32_run.result.as_ref().expect("f32 run");
    let straight = run_kind(
        &TrainAutoencoder,
        tmp.path(),
        "bf16",
        with("bf16"),
        &inputs,
        None,
    );
    straight
        .result
        .as_ref()
        .expect("bf16 autocast runs on the CPU");
    let cut = run_kind(
        &TrainAutoencoder,
        tmp.path(),
        "bf16-cut",
        with("bf16"),
        &inputs,
        Some(2),
    );
    assert!(matches!(
        cut.result,
        Err(StageError::Interrupted { step: 2 })
    ));
    let resumed = run_kind(
        &TrainAutoencoder,
        tmp.path(),
        "bf16-cut",
        with("bf16"),
        &inputs,
        None,
    );
    resumed.result.as_ref().expect("bf16 run resumes");
    let out = |r: &resume_harness::Ran| std::fs::read(r.out("autoencoder")).unwrap();
    assert!(
        out(&straight) == out(&resumed),
        "bf16 resume is byte-identical"
    );
    assert!(
        out(&straight) != out(&f32_run),
        "bf16 autocast changed the arithmetic"
    );

    let fp16 = run_kind(
        &TrainAutoencoder,
        tmp.path(),
        "fp16",
        with("fp16"),
        &inputs,
        None,
    );
    let err = fp16
        .result
        .expect_err("fp16 autocast needs CUDA")
        .to_string();
    assert!(err.contains("precision F16"), "{err}");
}
