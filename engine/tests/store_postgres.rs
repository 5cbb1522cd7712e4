//! The store on PostgreSQL: the same tables as SQLite (column for column), and the same
//! semantics through the shared code path — round trips into the cache, only successes
//! cached, a failed success write rolled back, lineage, cache hits, the stat cache, and
//! reservations with one winner across store handles (two orchestrators) and dead or
//! silent holders reclaimed.
//!
//! Needs a server: `source scripts/services/postgres.sh` exports HISTODIFF_TEST_PG_URL
//! (scripts/test.sh does). Each test creates its own database and drops it at the end.
//! Without the variable the tests FAIL, they do not skip.

use histodiff_engine::hash::{ArtifactHash, StageKey};
use histodiff_engine::protocol::{ArtifactKind, OutputArtifact};
use histodiff_engine::store::liveness::hostname;
use histodiff_engine::store::postgres::open_postgres;
use histodiff_engine::store::sql::{SqlStore, StoreOptions};
use histodiff_engine::store::*;
use sqlx::{AssertSqlSafe, Connection, Row};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A fresh database on the test server; dropped by [`TestDb::drop_now`].
struct TestDb {
    admin_url: String,
    name: String,
    url: String,
}

fn server_url() -> String {
    std::env::var("HISTODIFF_TEST_PG_URL").unwrap_or_else(|_| {
        panic!("HISTODIFF_TEST_PG_URL is not set: run `source scripts/services/postgres.sh` first (scripts/test.sh does)")
    })
}

async fn fresh_db() -> TestDb {
    let admin_url = server_url();
    let name = format!(
        "hd_{}_{}",
        std::process::id(),
        blake3::hash(format!("{:?}", std::time::Instant::now()).as_bytes()).to_hex()[..10]
            .to_string()
    );
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("connect to HISTODIFF_TEST_PG_URL");
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let base = admin_url.rsplit_once('/').unwrap().0;
    TestDb {
        url: format!("{base}/{name}"),
        admin_url,
        name,
    }
}

impl TestDb {
    async fn open(&self, shared: &Path, options: StoreOptions) -> SqlStore {
        open_postgres(&self.url, shared, options).await.unwrap()
    }

    async fn drop_now(self) {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        sqlx::query(AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
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
        host: hostname(),
        pid: std::process::id() as i64,
    };
    store.begin_run(&new).await.unwrap()
}

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

fn holder(pid: i64) -> Holder {
    Holder {
        run_id: None,
        host: hostname(),
        pid,
        slurm_job_id: None,
    }
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_orchestrators_claim_a_key_once_and_dead_or_silent_holders_are_reclaimed() {
    let db = fresh_db().await;
    let dir = tempfile::tempdir().unwrap();
    // Two handles (two pools) on one database, opened at once: one migrates, both work.
    let (a, b) = tokio::join!(
        db.open(dir.path(), StoreOptions::default()),
        db.open(dir.path(), StoreOptions::default())
    );
    let (a, b) = (Arc::new(a), Arc::new(b));
    let me = std::process::id() as i64;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let claimant = Holder {
            slurm_job_id: Some(i.to_string()),
            ..holder(me)
        };
        tasks.push(tokio::spawn(async move {
            store.reserve(&key("k"), &claimant).await.unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap() == Reservation::Reserved {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one of 16 concurrent claims wins");
    let other = Holder {
        run_id: None,
        host: "another-node".into(),
        pid: 1,
        slurm_job_id: Some("77".into()),
    };
    assert!(matches!(
        b.reserve(&key("k"), &other).await.unwrap(),
        Reservation::HeldBy(_)
    ));
    a.release(&key("k"), &holder(me)).await.unwrap();
    assert_eq!(
        b.reserve(&key("k"), &other).await.unwrap(),
        Reservation::Reserved
    );

    // A dead holder on this host is reclaimed at once.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id() as i64;
    child.wait().unwrap();
    assert_eq!(
        a.reserve(&key("d"), &holder(dead)).await.unwrap(),
        Reservation::Reserved
    );
    assert_eq!(
        b.reserve(&key("d"), &holder(me)).await.unwrap(),
        Reservation::Reserved
    );

    // A silent holder elsewhere times out.
    let quick = db
        .open(
            dir.path(),
            StoreOptions {
                reservation_timeout: Duration::from_millis(300),
                ..StoreOptions::default()
            },
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        quick.reserve(&key("k"), &holder(me)).await.unwrap(),
        Reservation::Reserved
    );
    drop((a, b, quick));
    db.drop_now().await;
}
