//! Shared by the cluster end-to-end tests: the real services (scripts/services/*.sh export
//! HISTODIFF_TEST_PG_URL, SLURM_CONF and HISTODIFF_SLURM=1; without them the tests FAIL),
//! a fresh PostgreSQL database per test, scratch directories the one-node cluster shares,
//! the `histodiff` binary, and reading results back through the store API.

#![allow(dead_code)]

use histodiff_engine::store::{self, ExecStatus, ExecutionRecord, Store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// A sweep of `command` stages: one source, a three-member matrix fanning out over it, and
/// a gather.
pub const SWEEP: &str = r#"version: 1
name: cluster-sweep
settings:
  jobs: 2
  slurm: { partition: debug, poll: 0.5 }
stages:
  data:
    uses: command
    run: seq 1 10 > ${outs.numbers}
    outs: { numbers: numbers.txt }
  scale:
    uses: command
    matrix: { factor: [2, 3, 5] }
    run: awk '{ print $1 * ${matrix.factor} }' ${inputs.numbers} > ${outs.scaled}
    inputs: { numbers: data }
    outs: { scaled: scaled.txt }
  total:
    uses: command
    run: cat ${inputs.parts} | awk '{ s += $1 } END { print s }' > ${outs.sum}
    inputs: { parts: scale[*] }
    outs: { sum: sum.txt }
"#;

pub fn require_services() -> String {
    assert_eq!(
        std::env::var("HISTODIFF_SLURM").as_deref(),
        Ok("1"),
        "Slurm is not running: `source scripts/services/slurm.sh` first (scripts/test.sh does)"
    );
    std::env::var("HISTODIFF_TEST_PG_URL").unwrap_or_else(|_| {
        panic!("HISTODIFF_TEST_PG_URL is not set: `source scripts/services/postgres.sh` first (scripts/test.sh does)")
    })
}

/// A directory under target/ (the Slurm node sees it at the same path).
pub fn scratch() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/cluster-tests");
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(&base).unwrap()
}

/// A new, empty database on the test server; its URL.
pub fn fresh_database(server: &str, tag: &str) -> String {
    let name = format!("hd_{tag}_{}_{}", std::process::id(), nanos());
    let status = Command::new("psql")
        .args([
            server,
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .status()
        .expect("psql runs");
    assert!(status.success(), "CREATE DATABASE {name} failed");
    format!("{}/{name}", server.rsplit_once('/').unwrap().0)
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// `histodiff --store STORE [--objects OBJECTS] --executor EXECUTOR run PIPELINE`.
pub fn run_cmd(pipeline: &Path, store: &str, objects: Option<&Path>, executor: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_histodiff"));
    cmd.args(["--store", store]);
    if let Some(o) = objects {
        cmd.arg("--objects").arg(o);
    }
    cmd.args(["--executor", executor, "run"]).arg(pipeline);
    cmd.current_dir(pipeline.parent().unwrap());
    cmd
}

/// Runs to the end; panics with the output unless it exits 0.
pub fn run_ok(mut cmd: Command) {
    let out = cmd.output().expect("histodiff runs");
    assert!(
        out.status.success(),
        "{cmd:?} exited {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub async fn open(store: &str, objects: Option<&Path>, base: &Path) -> Arc<dyn Store> {
    store::open(store, objects, base).await.unwrap()
}

/// Instance → output name → artifact hash, for every instance with a cached result.
pub async fn results(store: &dyn Store) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for e in store.executions(None).await.unwrap() {
        if let Some(hit) = store.cached(&e.stage_key).await.unwrap() {
            let outputs = hit
                .outputs
                .iter()
                .map(|(n, a)| (n.clone(), a.hash.0.clone()))
                .collect();
            out.insert(e.instance.clone(), outputs);
        }
    }
    out
}

pub async fn executed(store: &dyn Store) -> Vec<ExecutionRecord> {
    let all = store.executions(None).await.unwrap();
    all.into_iter()
        .filter(|e| e.status == ExecStatus::Succeeded)
        .collect()
}

pub fn pipeline(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("pipeline.yaml");
    std::fs::write(&path, text).unwrap();
    path
}
