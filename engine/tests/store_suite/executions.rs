//! Executions and their outcomes: a success round-trips into the cache with its worker,
//! outputs and metrics; failures and interruptions are recorded but never cached; a
//! success is written in one transaction, so a failed write or a crash leaves no half of it.

use crate::store_support::*;
use histodiff_engine::hash::ArtifactHash;
use histodiff_engine::protocol::ArtifactKind;
use histodiff_engine::store::*;
use std::collections::HashSet;

/// Attempt 1 of `new` fails (CUDA out of memory) and is not cached; attempt 2 is started
/// and returned.
async fn out_of_memory_then_retried(store: &dyn Store, new: &NewExecution) -> ExecutionId {
    let failed = store.start_execution(new).await.unwrap();
    let oom = Outcome::Failed {
        error: "CUDA out of memory".into(),
    };
    store.finish_execution(failed, &oom, None).await.unwrap();
    assert!(store.cached(&new.stage_key).await.unwrap().is_none());
    let second = NewExecution {
        attempt: 2,
        ..new.clone()
    };
    store.start_execution(&second).await.unwrap()
}

/// A failed first attempt, then a success on the second: the success alone is cached,
/// and every record (worker, metrics, artifact, run) reads back as written.
pub async fn a_success_round_trips_into_the_cache(backend: &impl Backend) {
    let (store, dir) = (backend.store().await, backend.dir());
    let run_id = begin_run(&store).await;
    let new = new_exec(run_id, "fewshot");
    let id = out_of_memory_then_retried(&store, &new).await;
    let worker = WorkerInfo {
        pid: Some(42),
        host: Some("node1".into()),
        device: Some("cuda:0".into()),
        slurm_job_id: Some("1234".into()),
    };
    store.set_worker(id, &worker).await.unwrap();
    let running = store.execution(id).await.unwrap().unwrap();
    assert_eq!(running.status, ExecStatus::Running);
    let images = output(&store, dir, b"images");
    store
        .record_metric(id, "loss", Some(10), 0.5)
        .await
        .unwrap();
    let outcome = success(&[("images", &images)], vec![]);
    store.finish_execution(id, &outcome, None).await.unwrap();
    store
        .finish_run(run_id, RunStatus::Succeeded)
        .await
        .unwrap();

    let hit = store.cached(&new.stage_key).await.unwrap().unwrap();
    assert_eq!((hit.execution_id, &hit.outputs["images"]), (id, &images));
    let rec = store.last_execution_of("fewshot").await.unwrap().unwrap();
    assert_eq!(
        (
            rec.status,
            rec.attempt,
            rec.worker_pid,
            rec.device.as_deref()
        ),
        (ExecStatus::Succeeded, 2, Some(42), Some("cuda:0"))
    );
    assert_eq!(rec.slurm_job_id.as_deref(), Some("1234"));
    assert_eq!(rec.fingerprint.as_deref(), Some(new.fingerprint.as_str()));
    assert!(rec.duration.unwrap() >= 0 && rec.finished.is_some());
    // The bulk form gives the same newest row, and nothing for a never-run instance.
    let names = ["fewshot".to_string(), "never-ran".to_string()];
    let many = store.last_executions_of(&names).await.unwrap();
    assert_eq!(many.len(), 1);
    assert_eq!(many["fewshot"], rec);
    let all = store.executions(Some(run_id)).await.unwrap();
    assert_eq!(all[0].error.as_deref(), Some("CUDA out of memory"));
    read_back_success(&store, id, &images).await;
}

/// The artifact, the metrics (reported and final), the run's status and the set of
/// referenced artifacts after the one success of `a_success_round_trips_into_the_cache`.
async fn read_back_success(
    store: &dyn Store,
    id: ExecutionId,
    images: &histodiff_engine::protocol::OutputArtifact,
) {
    let art = store.artifact(&images.hash).await.unwrap().unwrap();
    assert_eq!((art.kind, art.size), (ArtifactKind::File, 6));
    let metrics = store.metrics(id).await.unwrap();
    assert_eq!(
        metrics,
        vec![
            ("accuracy".into(), None, 0.75),
            ("loss".into(), Some(10), 0.5)
        ]
    );
    assert_eq!(store.runs().await.unwrap()[0].status, RunStatus::Succeeded);
    assert_eq!(
        store.all_referenced_artifacts().await.unwrap(),
        HashSet::from([images.hash.clone()])
    );
}

/// A failure and an interruption are recorded, attempt by attempt, and never cached; an
/// outcome for an execution that does not exist is refused.
pub async fn only_successes_are_cached(backend: &impl Backend) {
    let store = backend.store().await;
    let run_id = begin_run(&store).await;
    let new = new_exec(run_id, "train");
    let stopped = out_of_memory_then_retried(&store, &new).await;
    let sigterm = Outcome::Interrupted {
        reason: Some("SIGTERM".into()),
    };
    store
        .finish_execution(stopped, &sigterm, None)
        .await
        .unwrap();
    assert!(store.cached(&new.stage_key).await.unwrap().is_none());
    let all = store.executions(Some(run_id)).await.unwrap();
    assert_eq!(all[0].error.as_deref(), Some("CUDA out of memory"));
    assert_eq!(
        (all[0].status, all[1].status, all[1].attempt),
        (ExecStatus::Failed, ExecStatus::Interrupted, 2)
    );
    let err = store
        .finish_execution(
            ExecutionId(999),
            &Outcome::Failed { error: "x".into() },
            None,
        )
        .await;
    assert!(matches!(err, Err(StoreError::NoSuchExecution(_))));
}

/// An input edge naming an artifact the database never saw violates a foreign key in the
/// middle of the success's transaction: nothing of it may remain. A crash after writing
/// an object but before any outcome leaves that object as garbage, and gc removes both.
pub async fn a_failed_success_write_rolls_back_and_a_crash_leaves_only_garbage(
    backend: &impl Backend,
) {
    let (store, dir) = (backend.store().await, backend.dir());
    let run_id = begin_run(&store).await;
    let new = new_exec(run_id, "select");
    let id = store.start_execution(&new).await.unwrap();
    let out = output(&store, dir, b"selected");
    let bogus = InputEdge {
        slot: "pool".into(),
        position: 0,
        artifact: ArtifactHash("0".repeat(64)),
    };
    assert!(store
        .finish_execution(id, &success(&[("images", &out)], vec![bogus]), None)
        .await
        .is_err());
    assert!(store.cached(&new.stage_key).await.unwrap().is_none());
    assert!(store.artifact(&out.hash).await.unwrap().is_none());
    assert_eq!(
        store.execution(id).await.unwrap().unwrap().status,
        ExecStatus::Pending
    );
    // "Crash": the object is written but the store is dropped before any outcome.
    let orphan = output(&store, dir, b"written before the crash");
    drop(store);
    let store = backend.store().await;
    assert!(store.objects().verify().unwrap().corrupt.is_empty());
    let keep = store.all_referenced_artifacts().await.unwrap();
    let report = store.objects().gc(&keep).unwrap();
    assert_eq!(report.removed, 2, "both unrecorded objects are garbage");
    assert!(!store.objects().contains(&orphan.hash));
}
