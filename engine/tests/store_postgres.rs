//! The store on PostgreSQL: the same tables as SQLite (column for column), and the same
//! semantics through the shared code path — round trips into the cache, only successes
//! cached, a failed success write rolled back, lineage, cache hits, checkpoints and the stat
//! cache. Reservations: store_postgres_reservations.rs.
//!
//! Needs a server: `source scripts/services/postgres.sh` exports HISTODIFF_TEST_PG_URL
//! (scripts/test.sh does). Each test creates its own database and drops it at the end.
//! Without the variable the tests FAIL, they do not skip.

mod store_postgres_support;

use histodiff_engine::hash::ArtifactHash;
use histodiff_engine::protocol::ArtifactKind;
use histodiff_engine::store::sql::{SqlStore, StoreOptions};
use histodiff_engine::store::*;
use sqlx::Row;
use std::collections::HashSet;
use std::path::Path;
use store_postgres_support::*;

#[tokio::test]
async fn tables_mirror_the_sqlite_schema_column_for_column() {
    let db = fresh_db().await;
    let dir = tempfile::tempdir().unwrap();
    let pg = db
        .open(&dir.path().join("shared"), StoreOptions::default())
        .await;
    let lite = SqlStore::open_sqlite(
        StoreLayout::under(&dir.path().join("lite"), None),
        StoreOptions::default(),
    )
    .await
    .unwrap();
    let pg_cols: Vec<String> = sqlx::query(
        "SELECT table_name || '.' || column_name AS c FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(pg.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>("c"))
    .collect();
    let lite_cols: Vec<String> = sqlx::query(
        "SELECT m.name || '.' || p.name AS c FROM sqlite_master m, pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE '\\_sqlx%' ESCAPE '\\' AND m.name NOT LIKE 'sqlite%' ORDER BY 1",
    )
    .fetch_all(lite.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>("c"))
    .collect();
    assert!(pg_cols.len() > 40, "{pg_cols:?}");
    assert_eq!(pg_cols, lite_cols);
    // The shared directory holds the objects and the jobs' scratch and checkpoints.
    for sub in ["objects", "work", "checkpoints"] {
        assert!(dir.path().join("shared").join(sub).is_dir(), "{sub}");
    }
    drop(pg);
    db.drop_now().await;
}

#[tokio::test]
async fn store_open_accepts_a_postgres_url_with_a_shared_directory() {
    let db = fresh_db().await;
    let dir = tempfile::tempdir().unwrap();
    let store = histodiff_engine::store::open(&db.url, Some(Path::new("shared")), dir.path())
        .await
        .unwrap();
    assert_eq!(
        store.layout().objects,
        dir.path().join("shared").join("objects")
    );
    let id = store
        .begin_run(&NewRun {
            pipeline: "p".into(),
            file: "f".into(),
            host: "h".into(),
            pid: 1,
        })
        .await
        .unwrap();
    assert_eq!(store.runs().await.unwrap()[0].id, id);
    drop(store);
    db.drop_now().await;
}

#[tokio::test]
async fn executions_round_trip_and_only_successes_are_cached() {
    let db = fresh_db().await;
    let dir = tempfile::tempdir().unwrap();
    let store = db.open(dir.path(), StoreOptions::default()).await;
    let run_id = run(&store).await;
    let new = new_exec(run_id, "fewshot");
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
    assert!(store.cached(&new.stage_key).await.unwrap().is_none());

    let id = store
        .start_execution(&NewExecution {
            attempt: 2,
            ..new.clone()
        })
        .await
        .unwrap();
    let worker = WorkerInfo {
        pid: None,
        host: Some("node1".into()),
        device: Some("cuda:0".into()),
        slurm_job_id: Some("1234".into()),
    };
    store.set_worker(id, &worker).await.unwrap();
    assert_eq!(
        store.execution(id).await.unwrap().unwrap().status,
        ExecStatus::Running
    );
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
    assert_eq!((hit.execution_id, &hit.outputs["images"]), (id, &images));
    let rec = store.last_execution_of("fewshot").await.unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.attempt, rec.slurm_job_id.as_deref()),
        (ExecStatus::Succeeded, 2, Some("1234"))
    );
    assert_eq!(rec.fingerprint.as_deref(), Some(new.fingerprint.as_str()));
    // The bulk form gives the same newest row, and nothing for a never-run instance.
    let names = ["fewshot".to_string(), "never-ran".to_string()];
    let many = store.last_executions_of(&names).await.unwrap();
    assert_eq!(many.len(), 1);
    assert_eq!(many["fewshot"], rec);
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
    assert_eq!(
        store.executions(Some(run_id)).await.unwrap()[0]
            .error
            .as_deref(),
        Some("CUDA out of memory")
    );
    assert_eq!(
        store.all_referenced_artifacts().await.unwrap(),
        HashSet::from([images.hash.clone()])
    );
    drop(store);
    db.drop_now().await;
}

#[tokio::test]
async fn a_failed_success_write_rolls_back() {
    let db = fresh_db().await;
    let dir = tempfile::tempdir().unwrap();
    let store = db.open(dir.path(), StoreOptions::default()).await;
    let run_id = run(&store).await;
    let new = new_exec(run_id, "select");
    let id = store.start_execution(&new).await.unwrap();
    let out = output(&store, dir.path(), b"selected");
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
    drop(store);
    db.drop_now().await;
}

#[tokio::test]
async fn lineage_cache_hits_checkpoints_and_stat_cache() {
    let db = fresh_db().await;
    let dir = tempfile::tempdir().unwrap();
    let store = db.open(dir.path(), StoreOptions::default()).await;
    let run_id = run(&store).await;
    let mut previous: Vec<InputEdge> = Vec::new();
    let mut outs = Vec::new();
    for (i, name) in ["fewshot", "select[ratio=1]", "evaluate[ratio=1]"]
        .iter()
        .enumerate()
    {
        let id = store
            .start_execution(&new_exec(run_id, name))
            .await
            .unwrap();
        let out = output(&store, dir.path(), name.as_bytes());
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
    let nodes = store
        .lineage(&LineageTarget::Instance("evaluate[ratio=1]".into()))
        .await
        .unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n.instance.as_str()).collect();
    assert_eq!(names, ["evaluate[ratio=1]", "select[ratio=1]", "fewshot"]);
    assert_eq!(nodes[0].inputs[0].artifact, outs[1].hash);

    let second = run(&store).await;
    let again = NewExecution {
        fingerprint: String::new(),
        ..new_exec(second, "fewshot")
    };
    let hit = store.cached(&again.stage_key).await.unwrap().unwrap();
    store
        .record_cache_hits(&[(again.clone(), hit.execution_id)])
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

    store
        .record_checkpoint(&key("train"), 100, "step-100.safetensors")
        .await
        .unwrap();
    store
        .record_checkpoint(&key("train"), 200, "step-200.safetensors")
        .await
        .unwrap();
    let latest = store
        .latest_checkpoint(&key("train"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (latest.step, latest.file.as_str()),
        (200, "step-200.safetensors")
    );

    let entry = StatEntry {
        path: "/data/a.png".into(),
        size: 7,
        mtime_ns: 1_700_000_000_123_456_789,
        inode: 99,
        hash: outs[0].hash.clone(),
    };
    store
        .stat_put_many(std::slice::from_ref(&entry))
        .await
        .unwrap();
    store
        .stat_put_many(std::slice::from_ref(&entry))
        .await
        .unwrap();
    assert_eq!(store.stat_get("/data/a.png").await.unwrap(), Some(entry));
    drop(store);
    db.drop_now().await;
}
