//! Resume inside a training stage, through the binary: `kill -9` of the worker of a
//! `histodiff/train-autoencoder` execution loses at most one checkpoint interval, the next
//! `run` resumes from the newest checkpoint of that stage key, and on CPU the resumed
//! result is byte-identical to a run that was never interrupted.

mod common;

use common::Project;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const STEPS: u64 = 60;
const EVERY: u64 = 5;

fn pipeline() -> String {
    format!(
        r#"
version: 1
settings: {{ device: cpu, jobs: 1 }}
stages:
  demo:
    uses: data/demo
    with: {{ per_class: 4, image_size: 16, seed: 0 }}
  crc:
    uses: data/image-folder
    inputs: {{ folder: demo }}
    with: {{ image_size: 16 }}
  autoencoder:
    uses: histodiffusion/train-autoencoder
    inputs: {{ images: crc }}
    with: {{ preset: tiny, steps: {STEPS}, batch_size: 4, lr: 0.0005, perceptual_weight: 0.0, disc_start: 20, checkpoint_every: {EVERY}, seed: 0 }}
"#
    )
}

/// The hash `histodiff ls` shows for the autoencoder's output.
fn autoencoder_hash(p: &Project) -> String {
    let ls = p.run(&["ls"]).expect_code(0).stdout;
    ls.lines()
        .find(|l| l.contains("autoencoder.autoencoder"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no autoencoder artifact in:\n{ls}"))
        .to_string()
}

/// Steps of the checkpoints written so far (`ckpt-<n>.safetensors`).
fn checkpoint_steps(store: &Path) -> Vec<u64> {
    let mut steps = Vec::new();
    for key_dir in std::fs::read_dir(store.join("checkpoints"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for f in std::fs::read_dir(key_dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().into_owned();
            if let Some(n) = name
                .strip_prefix("ckpt-")
                .and_then(|s| s.strip_suffix(".safetensors"))
            {
                steps.extend(n.parse::<u64>().ok());
            }
        }
    }
    steps.sort_unstable();
    steps
}

/// Pid of the `histodiff worker` process whose job file lies under `dir`.
fn worker_under(dir: &Path) -> Option<i32> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_string_lossy().parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_worker = args.get(1).map(String::as_str) == Some("worker")
            && args.iter().any(|a| a.contains(&needle));
        is_worker.then_some(pid)
    })
}

fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The smallest step of the autoencoder's progress lines (`autoencoder K/60 …`).
fn first_reported_step(text: &str) -> Option<u64> {
    let marker = format!("/{STEPS} loss");
    text.lines()
        .filter(|l| l.contains("autoencoder") && l.contains(&marker))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_suffix(&format!("/{STEPS}")))
        })
        .filter_map(|k| k.parse().ok())
        .min()
}

#[test]
fn kill_9_of_a_training_worker_resumes_from_its_checkpoint_byte_identically() {
    // Reference: one uninterrupted run.
    let reference = Project::new();
    let file = reference.pipeline(&pipeline());
    reference
        .run(&["run", file.to_str().unwrap()])
        .expect_code(0);
    let expected = autoencoder_hash(&reference);

    // Interrupted: kill -9 the worker once a checkpoint past the first interval exists.
    let p = Project::new();
    let file: PathBuf = p.pipeline(&pipeline());
    let store = p.path().join(".histodiff");
    let child = p
        .command(&["run", file.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("a second checkpoint", || {
        checkpoint_steps(&store)
            .last()
            .filter(|s| **s >= 2 * EVERY)
            .copied()
    });
    let worker = wait_for("the training worker", || worker_under(p.path()));
    // SAFETY: kill(2) on a process this test started (indirectly).
    assert_eq!(unsafe { libc::kill(worker, libc::SIGKILL) }, 0);
    common::Outcome::from(child.wait_with_output().unwrap()).expect_code(1);
    let newest = *checkpoint_steps(&store)
        .last()
        .expect("checkpoints survive the kill");
    assert!(
        newest < STEPS,
        "killed before the end (newest checkpoint {newest})"
    );

    // Resume: the next run starts right after the newest checkpoint and ends identical.
    let out = p.run(&["run", file.to_str().unwrap()]).expect_code(0);
    let first = first_reported_step(&format!("{}\n{}", out.stdout, out.stderr))
        .unwrap_or_else(|| panic!("no progress lines:\n{}", out.stderr));
    assert_eq!(
        first,
        newest + 1,
        "resumed from step {newest}, lost nothing past it"
    );
    assert_eq!(
        autoencoder_hash(&p),
        expected,
        "resumed weights are byte-identical"
    );
}
