//! The database side of the store: round trips, only successes cached, one transaction per
//! outcome (a crash or a failed write leaves no half-recorded success), cache hits,
//! lineage, checkpoints, status, and the batch lookup a 10,000-instance no-op run needs.

use histodiff_engine::hash::{ArtifactHash, StageKey};
use histodiff_engine::protocol::{ArtifactKind, OutputArtifact};
use histodiff_engine::store::sql::{SqlStore, StoreOptions};
use histodiff_engine::store::*;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

async fn open(dir: &Path) -> SqlStore {
    SqlStore::open_sqlite(
        StoreLayout::under(&dir.join(".histodiff"), None),
        StoreOptions::default(),
    )
    .await
    .unwrap()
}

fn key(s: &str) -> StageKey {
    StageKey(blake3::hash(s.as_bytes()).to_hex().to_string())
}

fn new_exec(run: RunId, instance: &str) -> NewExecution {
    NewExecution {
        run_id: run,
        stage_key: key(instance),
        stage: instance.split('[').next().unwrap().to_string(),
        instance: instance.to_string(),
        kind: "data/subset".into(),
        kind_version: 1,
        attempt: 1,
        fingerprint: format!(r#"{{"instance":"{instance}"}}"#),
    }
}

async fn run(store: &SqlStore) -> RunId {
    let new = NewRun {
        pipeline: "p".into(),
        file: "p.yaml".into(),
        host: "h".into(),
        pid: 1,
    };
    store.begin_run(&new).await.unwrap()
}

/// Stores `bytes` as an object and returns it as an output.
fn output(store: &SqlStore, dir: &Path, bytes: &[u8]) -> OutputArtifact {
    let src = dir.join(format!("src-{}", blake3::hash(bytes).to_hex()));
    std::fs::write(&src, bytes).unwrap();
    store.objects().put(&src).unwrap()
}

fn success(outputs: &[(&str, &OutputArtifact)], inputs: Vec<InputEdge>) -> Outcome {
    Outcome::Succeeded {
        outputs: outputs
            .iter()
            .map(|(n, o)| (n.to_string(), (*o).clone()))
            .collect(),
        inputs,
        metrics: BTreeMap::from([("accuracy".to_string(), 0.75)]),
    }
}

#[tokio::test]
async fn open_creates_the_layout_in_wal_mode_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let store = histodiff_engine::store::open(".histodiff", None, dir.path())
        .await
        .unwrap();
    for sub in ["histodiff.db", "objects", "work", "checkpoints"] {
        assert!(dir.path().join(".histodiff").join(sub).exists(), "{sub}");
    }
    drop(store);
    let again = open(dir.path()).await;
    let row: (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(again.pool())
        .await
        .unwrap();
    assert_eq!(row.0, "wal");
    let fk: (i64,) = sqlx::query_as("PRAGMA foreign_keys")
        .fetch_one(again.pool())
        .await
        .unwrap();
    assert_eq!(fk.0, 1);
}

#[tokio::test]
async fn postgres_needs_a_shared_objects_directory() {
    let dir = tempfile::tempdir().unwrap();
    let err = histodiff_engine::store::open("postgres://db/x", None, dir.path())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("settings.objects"), "{err}");
}

#[tokio::test]
async fn a_success_round_trips_into_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let run_id = run(&store).await;
    let new = new_exec(run_id, "fewshot");
    let id = store.start_execution(&new).await.unwrap();
    let worker = WorkerInfo {
        pid: Some(42),
        host: Some("node1".into()),
        device: Some("cuda:0".into()),
        slurm_job_id: None,
    };
    store.set_worker(id, &worker).await.unwrap();
    assert_eq!(
        store.execution(id).await.unwrap().unwrap().status,
        ExecStatus::Running
    );
    assert!(store.cached(&new.stage_key).await.unwrap().is_none());
    let images = output(&store, dir.path(), b"images");
    store
        .record_metric(id, "loss", Some(10), 0.5)
        .await
        .unwrap();
    store
        .finish_execution(id, &success(&[("images", &images)], vec![]))
        .await
        .unwrap();
    store
        .finish_run(run_id, RunStatus::Succeeded)
        .await
        .unwrap();

    let hit = store.cached(&new.stage_key).await.unwrap().unwrap();
    assert_eq!(hit.execution_id, id);
    assert_eq!(hit.outputs["images"], images);
    let rec = store.last_execution_of("fewshot").await.unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.worker_pid, rec.device.as_deref()),
        (ExecStatus::Succeeded, Some(42), Some("cuda:0"))
    );
    assert_eq!(rec.fingerprint.as_deref(), Some(new.fingerprint.as_str()));
    // The bulk form gives the same newest row, and nothing for a never-run instance.
    let names = ["fewshot".to_string(), "never-ran".to_string()];
    let many = store.last_executions_of(&names).await.unwrap();
    assert_eq!(many.len(), 1);
    assert_eq!(many["fewshot"], rec);
    assert!(rec.duration.unwrap() >= 0 && rec.finished.is_some());
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

#[tokio::test]
async fn only_successes_are_cached() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let run_id = run(&store).await;
    let new = new_exec(run_id, "train");
    let failed = store.start_execution(&new).await.unwrap();
    store
        .finish_execution(
            failed,
            &Outcome::Failed {
                error: "CUDA out of memory".into(),
            },
        )
        .await
        .unwrap();
    let stopped = store
        .start_execution(&NewExecution {
            attempt: 2,
            ..new.clone()
        })
        .await
        .unwrap();
    store
        .finish_execution(
            stopped,
            &Outcome::Interrupted {
                reason: Some("SIGTERM".into()),
            },
        )
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
        .finish_execution(ExecutionId(999), &Outcome::Failed { error: "x".into() })
        .await;
    assert!(matches!(err, Err(StoreError::NoSuchExecution(_))));
}

#[tokio::test]
async fn a_failed_success_write_rolls_back_and_a_crash_leaves_only_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let run_id = run(&store).await;
    let new = new_exec(run_id, "select");
    let id = store.start_execution(&new).await.unwrap();
    let out = output(&store, dir.path(), b"selected");
    // An input edge naming an artifact the database never saw violates a foreign key in
    // the middle of the transaction: nothing of the success may remain.
    let bogus = InputEdge {
        slot: "pool".into(),
        position: 0,
        artifact: ArtifactHash("0".repeat(64)),
    };
    assert!(store
        .finish_execution(id, &success(&[("images", &out)], vec![bogus]))
        .await
        .is_err());
    assert!(store.cached(&new.stage_key).await.unwrap().is_none());
    assert!(store.artifact(&out.hash).await.unwrap().is_none());
    assert_eq!(
        store.execution(id).await.unwrap().unwrap().status,
        ExecStatus::Pending
    );
    // "Crash": the object is written but the store is dropped before any outcome.
    let orphan = output(&store, dir.path(), b"written before the crash");
    drop(store);
    let store = open(dir.path()).await;
    assert!(store.objects().verify().unwrap().corrupt.is_empty());
    let keep = store.all_referenced_artifacts().await.unwrap();
    let report = store.objects().gc(&keep).unwrap();
    assert_eq!(report.removed, 2, "both unrecorded objects are garbage");
    assert!(!store.objects().contains(&orphan.hash));
}

/// fewshot → select(pool from sample, real from fewshot) → evaluate.
async fn chain(store: &SqlStore, dir: &Path) -> (RunId, Vec<OutputArtifact>) {
    let run_id = run(store).await;
    let mut outs = Vec::new();
    let mut previous: Vec<InputEdge> = Vec::new();
    for (i, name) in ["fewshot", "select[ratio=1]", "evaluate[ratio=1]"]
        .iter()
        .enumerate()
    {
        let id = store
            .start_execution(&new_exec(run_id, name))
            .await
            .unwrap();
        let out = output(store, dir, name.as_bytes());
        store
            .finish_execution(id, &success(&[("out", &out)], previous.clone()))
            .await
            .unwrap();
        previous = vec![InputEdge {
            slot: format!("slot{i}"),
            position: 0,
            artifact: out.hash.clone(),
        }];
        outs.push(out);
    }
    (run_id, outs)
}

#[tokio::test]
async fn lineage_follows_edges_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let (_, outs) = chain(&store, dir.path()).await;
    let nodes = store
        .lineage(&LineageTarget::Instance("evaluate[ratio=1]".into()))
        .await
        .unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n.instance.as_str()).collect();
    assert_eq!(names, ["evaluate[ratio=1]", "select[ratio=1]", "fewshot"]);
    assert_eq!(nodes[0].inputs[0].artifact, outs[1].hash);
    assert_eq!(nodes[1].outputs["out"], outs[1].hash);
    let from_middle = store
        .lineage(&LineageTarget::Artifact(outs[1].hash.clone()))
        .await
        .unwrap();
    assert_eq!(from_middle.len(), 2);
    assert!(store
        .lineage(&LineageTarget::Instance("nothing".into()))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn cache_hits_reuse_the_source_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let (_, _) = chain(&store, dir.path()).await;
    let second = run(&store).await;
    let new = NewExecution {
        fingerprint: String::new(),
        ..new_exec(second, "fewshot")
    };
    let hit = store.cached(&new.stage_key).await.unwrap().unwrap();
    store
        .record_cache_hits(&[(new.clone(), hit.execution_id)])
        .await
        .unwrap();
    let rec = store.last_execution_of("fewshot").await.unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.cached_from),
        (ExecStatus::Cached, Some(hit.execution_id))
    );
    assert_eq!(
        rec.fingerprint.as_deref(),
        Some(r#"{"instance":"fewshot"}"#)
    );
    let lineage = store
        .lineage(&LineageTarget::Instance("fewshot".into()))
        .await
        .unwrap();
    assert_eq!(lineage[0].execution_id, hit.execution_id);
}

#[tokio::test]
async fn checkpoints_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let k = key("train-diffusion");
    assert!(store.latest_checkpoint(&k).await.unwrap().is_none());
    store
        .record_checkpoint(&k, 100, "step-100.safetensors")
        .await
        .unwrap();
    store
        .record_checkpoint(&k, 200, "step-200.safetensors")
        .await
        .unwrap();
    store
        .record_checkpoint(&key("other"), 300, "x")
        .await
        .unwrap();
    let latest = store.latest_checkpoint(&k).await.unwrap().unwrap();
    assert_eq!(
        (latest.step, latest.file.as_str()),
        (200, "step-200.safetensors")
    );
    assert!(store
        .layout()
        .checkpoint_dir(&k)
        .ends_with(format!("checkpoints/{}", k.0)));
    chain(&store, dir.path()).await;
    let running = run(&store).await;
    store
        .start_execution(&new_exec(running, "report"))
        .await
        .unwrap();
    let status = store.status().await.unwrap();
    assert_eq!(
        (status.runs, status.artifacts, status.cached_keys),
        (2, 3, 3)
    );
    assert_eq!(status.executions["succeeded"], 3);
    assert_eq!(status.in_flight.len(), 1);
    assert_eq!(status.active_runs.len(), 2);
}

#[tokio::test]
async fn a_hit_whose_object_vanished_is_not_a_hit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let (_, outs) = chain(&store, dir.path()).await;
    assert!(store.cached(&key("fewshot")).await.unwrap().is_some());
    std::fs::remove_file(store.objects().path_of(&outs[0].hash).unwrap()).unwrap();
    assert!(store.cached(&key("fewshot")).await.unwrap().is_none());
    assert!(store
        .cached(&key("select[ratio=1]"))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_two_handles_never_see_busy() {
    let dir = tempfile::tempdir().unwrap();
    let a = std::sync::Arc::new(open(dir.path()).await);
    let b = std::sync::Arc::new(open(dir.path()).await);
    let run_id = run(&a).await;
    let out = output(&a, dir.path(), b"shared");
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let out = out.clone();
        tasks.push(tokio::spawn(async move {
            let id = store
                .start_execution(&new_exec(run_id, &format!("m[i={i}]")))
                .await?;
            store.record_metric(id, "loss", Some(1), 1.0).await?;
            store
                .finish_execution(id, &success(&[("out", &out)], vec![]))
                .await?;
            store
                .reserve(&key(&format!("r{}", i % 5)), &Holder::this_process(None))
                .await?;
            Ok::<_, StoreError>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(a.status().await.unwrap().cached_keys, 40);
}
