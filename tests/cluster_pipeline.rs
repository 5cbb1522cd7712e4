//! End to end on the real services: the built `histodiff` drives a one-node Slurm cluster
//! with a PostgreSQL store. A sweep through Slurm + PostgreSQL gives the same artifacts as
//! the local executor + SQLite; a stage interrupted by USR1 (preemption) exits 75, is
//! resubmitted and completes; two orchestrators sharing one PostgreSQL store never
//! execute a key twice. Without the services these tests FAIL (see cluster_support).

mod cluster_support;

use cluster_support::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_sweep_through_slurm_and_postgres_matches_local_and_sqlite() {
    let server = require_services();
    let dir = scratch();
    let pipeline = pipeline(dir.path(), SWEEP);
    let local_store = dir.path().join("local-store");
    run_ok(run_cmd(
        &pipeline,
        &local_store.to_string_lossy(),
        None,
        "local",
    ));
    let url = fresh_database(&server, "sweep");
    let shared = dir.path().join("shared");
    run_ok(run_cmd(&pipeline, &url, Some(&shared), "slurm"));

    let local = open(&local_store.to_string_lossy(), None, dir.path()).await;
    let cluster = open(&url, Some(&shared), dir.path()).await;
    let (expected, got) = (results(&*local).await, results(&*cluster).await);
    assert_eq!(
        expected.len(),
        5,
        "data, three scale members, total: {expected:?}"
    );
    assert_eq!(got, expected, "same artifacts (hashes) from both executors");
    let sum = cluster
        .objects()
        .path_of(&cluster_artifact(&got, "total", "sum"))
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(sum).unwrap().trim(),
        "550",
        "(2+3+5) × 55"
    );

    // Every execution ran as a Slurm job, recorded with its job id and node.
    let executed = executed(&*cluster).await;
    assert_eq!(executed.len(), 5);
    for e in &executed {
        let id = e
            .slurm_job_id
            .as_deref()
            .unwrap_or_else(|| panic!("{} has no Slurm job id", e.instance));
        assert!(id.chars().all(|c| c.is_ascii_digit()), "{id}");
        assert!(e.host.as_deref().is_some_and(|h| !h.is_empty()), "{e:?}");
    }
    // A second run finds everything cached and submits nothing.
    run_ok(run_cmd(&pipeline, &url, Some(&shared), "slurm"));
    assert_eq!(cluster_support::executed(&*cluster).await.len(), 5);
}

fn cluster_artifact(
    results: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    instance: &str,
    output: &str,
) -> histodiff_engine::hash::ArtifactHash {
    histodiff_engine::hash::ArtifactHash(results[instance][output].clone())
}

#[tokio::test]
async fn two_orchestrators_on_one_postgres_store_execute_each_key_once() {
    let server = require_services();
    let dir = scratch();
    let pipeline = pipeline(dir.path(), SWEEP);
    let url = fresh_database(&server, "twice");
    let shared = dir.path().join("shared");
    let mut a = run_cmd(&pipeline, &url, Some(&shared), "slurm");
    let mut b = run_cmd(&pipeline, &url, Some(&shared), "slurm");
    let (a, b) = (a.spawn().unwrap(), b.spawn().unwrap());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "an orchestrator failed: {:?}",
            out.status
        );
    }
    let store = open(&url, Some(&shared), dir.path()).await;
    let executed = executed(&*store).await;
    let mut keys: Vec<_> = executed.iter().map(|e| e.stage_key.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(
        keys.len(),
        executed.len(),
        "a key executed twice: {executed:#?}"
    );
    assert_eq!(executed.len(), 5, "every key executed by one of the two");
    assert_eq!(results(&*store).await.len(), 5);
}

/// The stage sleeps on its first attempt; the test sends USR1 to its batch job (what
/// `--signal=B:USR1@N` or a preempting scheduler does). The worker stops the command and
/// exits 75, the executor resubmits, and the second attempt completes.
const RESUMABLE: &str = r#"version: 1
name: cluster-resume
settings:
  slurm: { partition: debug, poll: 0.5 }
stages:
  preemptible:
    uses: command
    run: if [ -e "$HISTODIFF_BASE_DIR/attempted" ]; then echo resumed > ${outs.out}; else touch "$HISTODIFF_BASE_DIR/attempted"; sleep 300; fi
    outs: { out: out.txt }
"#;

#[tokio::test]
async fn a_stage_preempted_by_usr1_is_resubmitted_and_completes() {
    let server = require_services();
    let dir = scratch();
    let pipeline = pipeline(dir.path(), RESUMABLE);
    let url = fresh_database(&server, "resume");
    let shared = dir.path().join("shared");
    let mut child = run_cmd(&pipeline, &url, Some(&shared), "slurm")
        .spawn()
        .unwrap();
    let job = wait_for_first_attempt(dir.path(), &shared);
    let status = Command::new("scancel")
        .args(["--batch", "--signal=USR1", &job])
        .status()
        .unwrap();
    assert!(status.success(), "scancel --signal=USR1 {job}");
    let started = Instant::now();
    let code = loop {
        if let Some(code) = child.try_wait().unwrap() {
            break code;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the run did not finish after the preemption"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(code.success(), "run exited {code:?}");
    let store = open(&url, Some(&shared), dir.path()).await;
    let executed = executed(&*store).await;
    assert_eq!(executed.len(), 1);
    let hit = store.cached(&executed[0].stage_key).await.unwrap().unwrap();
    let out = std::fs::read_to_string(store.objects().path_of(&hit.outputs["out"].hash).unwrap())
        .unwrap();
    assert_eq!(out.trim(), "resumed");
    // Two Slurm jobs served the one execution: the first ended 75 (checkpointed,
    // resumable), the execution row names the second.
    let last = executed[0].slurm_job_id.clone().expect("a Slurm job id");
    assert_ne!(last, job, "the resubmitted job's id is recorded");
    let first = Command::new("scontrol")
        .args(["show", "job", "-o", &job])
        .output()
        .unwrap();
    let first = String::from_utf8_lossy(&first.stdout);
    assert!(first.contains("ExitCode=75:0"), "first attempt: {first}");
}

/// The id of the running job of the first attempt, once its command has started.
fn wait_for_first_attempt(base: &Path, shared: &Path) -> String {
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the first attempt never started"
        );
        if base.join("attempted").exists() {
            if let Some(id) = running_job_in(shared) {
                return id;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The job id from the `slurm-<id>.out` file of the (only) execution's work directory.
fn running_job_in(shared: &Path) -> Option<String> {
    for exec in std::fs::read_dir(shared.join("work")).ok()? {
        for f in std::fs::read_dir(exec.ok()?.path()).ok()? {
            let name = f.ok()?.file_name().to_string_lossy().into_owned();
            if let Some(id) = name
                .strip_prefix("slurm-")
                .and_then(|n| n.strip_suffix(".out"))
            {
                return Some(id.to_string());
            }
        }
    }
    None
}
