//! Reservations: identical keys execute once. Concurrent claims (in one process and from
//! two store handles, like two orchestrators) have exactly one winner; a dead or silent
//! holder is reclaimed and its orphaned executions marked interrupted.

use histodiff_engine::hash::StageKey;
use histodiff_engine::store::liveness::hostname;
use histodiff_engine::store::sql::{SqlStore, StoreOptions};
use histodiff_engine::store::*;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

async fn open(dir: &Path, options: StoreOptions) -> SqlStore {
    SqlStore::open_sqlite(StoreLayout::under(&dir.join(".histodiff"), None), options)
        .await
        .unwrap()
}

fn key() -> StageKey {
    StageKey("ab".repeat(32))
}

fn holder(run: i64) -> Holder {
    Holder {
        run_id: None,
        host: hostname(),
        pid: std::process::id() as i64,
        slurm_job_id: Some(run.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_have_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    // Two handles on the same database, as two orchestrators would have.
    let a = Arc::new(open(dir.path(), StoreOptions::default()).await);
    let b = Arc::new(open(dir.path(), StoreOptions::default()).await);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store.reserve(&key(), &holder(i)).await.unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        match t.await.unwrap() {
            Reservation::Reserved => winners += 1,
            Reservation::HeldBy(h) => assert_eq!(h.pid, std::process::id() as i64),
        }
    }
    assert_eq!(winners, 1);
    // Released, the key can be claimed again.
    a.release(&key(), &holder(0)).await.unwrap();
    assert_eq!(
        b.reserve(&key(), &holder(1)).await.unwrap(),
        Reservation::Reserved
    );
}

#[tokio::test]
async fn a_dead_holder_on_this_host_is_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), StoreOptions::default()).await;
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id() as i64;
    child.wait().unwrap();
    let dead = Holder {
        run_id: None,
        host: hostname(),
        pid: dead_pid,
        slurm_job_id: None,
    };
    assert_eq!(
        store.reserve(&key(), &dead).await.unwrap(),
        Reservation::Reserved
    );
    // The dead orchestrator left an execution running.
    let run = store
        .begin_run(&NewRun {
            pipeline: "p".into(),
            file: "p.yaml".into(),
            host: hostname(),
            pid: dead_pid,
        })
        .await
        .unwrap();
    let new = NewExecution {
        run_id: run,
        stage_key: key(),
        stage: "train".into(),
        instance: "train".into(),
        kind: "k".into(),
        kind_version: 1,
        attempt: 1,
        fingerprint: "{}".into(),
    };
    let orphan = store.start_execution(&new).await.unwrap();
    assert_eq!(
        store.reserve(&key(), &holder(1)).await.unwrap(),
        Reservation::Reserved
    );
    let rec = store.execution(orphan).await.unwrap().unwrap();
    assert_eq!(rec.status, ExecStatus::Interrupted);
    assert!(rec.error.unwrap().contains("abandoned"));
}

#[tokio::test]
async fn a_silent_holder_elsewhere_times_out_unless_it_beats() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        reservation_timeout: Duration::from_millis(300),
        ..StoreOptions::default()
    };
    let store = open(dir.path(), options).await;
    let remote = Holder {
        run_id: None,
        host: "another-node".into(),
        pid: 1,
        slurm_job_id: Some("77".into()),
    };
    assert_eq!(
        store.reserve(&key(), &remote).await.unwrap(),
        Reservation::Reserved
    );
    match store.reserve(&key(), &holder(1)).await.unwrap() {
        Reservation::HeldBy(h) => assert_eq!(h, remote),
        other => panic!("expected HeldBy, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    store.heartbeat(&[key()], &remote).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        matches!(
            store.reserve(&key(), &holder(1)).await.unwrap(),
            Reservation::HeldBy(_)
        ),
        "beat keeps it"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        store.reserve(&key(), &holder(1)).await.unwrap(),
        Reservation::Reserved
    );
    let status = store.status().await.unwrap();
    assert_eq!(status.reservations.len(), 1);
    assert_eq!(status.reservations[0].holder.pid, std::process::id() as i64);
}
