//! Reservations: identical keys execute once. Concurrent claims from two store handles
//! (two orchestrators) have exactly one winner; a released key, a dead holder on this
//! host and a silent holder elsewhere are claimed again, and a dead holder's orphaned
//! executions are marked interrupted.

use crate::store_support::*;
use histodiff_engine::store::liveness::hostname;
use histodiff_engine::store::sql::StoreOptions;
use histodiff_engine::store::*;
use std::sync::Arc;
use std::time::Duration;

fn me() -> i64 {
    std::process::id() as i64
}

/// A holder on another node, whose liveness this host cannot check.
fn remote() -> Holder {
    Holder {
        run_id: None,
        host: "another-node".into(),
        pid: 1,
        slurm_job_id: Some("77".into()),
    }
}

/// Two handles opened at once (one migrates, both work); 16 concurrent claims on them
/// have one winner and every loser sees this process as the holder. A released key is
/// claimed again, by this host and by another.
pub async fn two_handles_claim_a_key_exactly_once(backend: &impl Backend) {
    let (a, b) = tokio::join!(backend.store(), backend.store());
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store.reserve(&key("k"), &claimant(i)).await.unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        match t.await.unwrap() {
            Reservation::Reserved => winners += 1,
            Reservation::HeldBy(h) => assert_eq!(h.pid, me()),
        }
    }
    assert_eq!(winners, 1, "exactly one of 16 concurrent claims wins");
    assert!(matches!(
        b.reserve(&key("k"), &remote()).await.unwrap(),
        Reservation::HeldBy(_)
    ));
    // Released, the key can be claimed again: by this host, then by another.
    a.release(&key("k"), &holder(me())).await.unwrap();
    let again = b.reserve(&key("k"), &claimant(1)).await.unwrap();
    assert_eq!(again, Reservation::Reserved);
    a.release(&key("k"), &claimant(1)).await.unwrap();
    let elsewhere = b.reserve(&key("k"), &remote()).await.unwrap();
    assert_eq!(elsewhere, Reservation::Reserved);
}

/// A holder on this host whose process has exited loses the key to the next claim (on
/// another handle), and the execution it left running is marked interrupted.
pub async fn a_dead_holder_on_this_host_is_reclaimed(backend: &impl Backend) {
    let (a, b) = (backend.store().await, backend.store().await);
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id() as i64;
    child.wait().unwrap();
    let dead = a.reserve(&key("d"), &holder(dead_pid)).await.unwrap();
    assert_eq!(dead, Reservation::Reserved);
    // The dead orchestrator left an execution running.
    let run = a
        .begin_run(&NewRun {
            pipeline: "p".into(),
            file: "p.yaml".into(),
            host: hostname(),
            pid: dead_pid,
        })
        .await
        .unwrap();
    let orphan = NewExecution {
        stage_key: key("d"),
        ..new_exec(run, "train")
    };
    let orphan = a.start_execution(&orphan).await.unwrap();
    let reclaimed = b.reserve(&key("d"), &claimant(1)).await.unwrap();
    assert_eq!(reclaimed, Reservation::Reserved);
    let rec = a.execution(orphan).await.unwrap().unwrap();
    assert_eq!(rec.status, ExecStatus::Interrupted);
    assert!(rec.error.unwrap().contains("abandoned"));
}

/// A holder on another node is trusted while it beats: a handle with a 300 ms timeout
/// sees it as the holder until 300 ms pass without a heartbeat, then claims the key.
pub async fn a_silent_holder_elsewhere_times_out_unless_it_beats(backend: &impl Backend) {
    let steady = backend.store().await;
    let quick = backend
        .open(StoreOptions {
            reservation_timeout: Duration::from_millis(300),
            ..StoreOptions::default()
        })
        .await;
    let held = steady.reserve(&key("k"), &remote()).await.unwrap();
    assert_eq!(held, Reservation::Reserved);
    match quick.reserve(&key("k"), &claimant(1)).await.unwrap() {
        Reservation::HeldBy(h) => assert_eq!(h, remote()),
        other => panic!("expected HeldBy, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    steady.heartbeat(&[key("k")], &remote()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        matches!(
            quick.reserve(&key("k"), &claimant(1)).await.unwrap(),
            Reservation::HeldBy(_)
        ),
        "beat keeps it"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let claimed = quick.reserve(&key("k"), &claimant(1)).await.unwrap();
    assert_eq!(claimed, Reservation::Reserved);
    let status = steady.status().await.unwrap();
    assert_eq!(status.reservations.len(), 1);
    assert_eq!(status.reservations[0].holder.pid, me());
}
