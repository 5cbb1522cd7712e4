//! The store on SQLite: every check of the shared suite (store_suite/), then what only
//! SQLite has: the layout `store::open` makes in WAL mode, and concurrent writers on two
//! handles that never see SQLITE_BUSY.

mod store_suite;
mod store_support;

use histodiff_engine::store::*;
use std::sync::Arc;
use store_support::*;

store_suite::store_checks!(Sqlite);

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
    let again = open_sqlite(dir.path(), Default::default()).await;
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

/// Bulk lookups read through read-only connections that keep the database mapped, and
/// no writer connection is mapped: SQLite remaps a connection's map whenever the file
/// has grown, which a writer's own commits do after every job of a full run.
#[tokio::test]
async fn lookups_read_through_mapped_readers_and_writers_stay_unmapped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_sqlite(dir.path(), Default::default()).await;
    let keys: Vec<histodiff_engine::hash::StageKey> = (0..3_000)
        .map(|i| histodiff_engine::hash::StageKey(format!("{i:064x}")))
        .collect();
    assert!(store.cached_many(&keys).await.unwrap().is_empty());
    let mut held = Vec::new();
    for _ in 0..store.options().max_connections {
        held.push(store.pool().acquire().await.unwrap());
    }
    for conn in &mut held {
        let (mmap,): (i64,) = sqlx::query_as("PRAGMA mmap_size")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        assert_eq!(mmap, 0);
    }
    let mut reader = store.readers().acquire().await.unwrap();
    let (mmap,): (i64,) = sqlx::query_as("PRAGMA mmap_size")
        .fetch_one(&mut *reader)
        .await
        .unwrap();
    assert!(mmap >= 1 << 30, "{mmap}");
    let write = sqlx::query("DELETE FROM cache").execute(&mut *reader).await;
    assert!(write.is_err(), "a reader wrote");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_two_handles_never_see_busy() {
    let backend = Sqlite::start().await;
    let (a, b) = (
        Arc::new(backend.store().await),
        Arc::new(backend.store().await),
    );
    let run_id = begin_run(a.as_ref()).await;
    let out = output(a.as_ref(), backend.dir(), b"shared");
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
                .finish_execution(id, &success(&[("out", &out)], vec![]), None)
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

/// Migration 0007 rebuilds `cache` as a WITHOUT ROWID table: a key cached by a store at
/// migration 0006 is still a hit, with its outputs, after the store is opened again.
#[tokio::test]
async fn a_key_cached_before_migration_7_is_still_a_hit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".histodiff");
    std::fs::create_dir_all(&root).unwrap();
    let before = dir.path().join("migrations-0001-0006");
    std::fs::create_dir(&before).unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/sqlite");
    let mut files: Vec<_> = std::fs::read_dir(&all)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files.iter().take(6) {
        std::fs::copy(file, before.join(file.file_name().unwrap())).unwrap();
    }
    let url = format!("sqlite://{}?mode=rwc", root.join("histodiff.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(before.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let hash = "ab".repeat(32);
    for sql in [
        "INSERT INTO runs (id, pipeline, file, started, status, host, pid) \
         VALUES (1, 'p', 'p.yaml', 0, 'succeeded', 'h', 1)",
        "INSERT INTO executions (id, run_id, stage_key, stage, instance, kind, \
         kind_version, status) VALUES (7, 1, 'key-7', 's', 's', 'command', 1, 'succeeded')",
        "INSERT INTO cache (stage_key, execution_id, created, outputs) \
         VALUES ('key-7', 7, 0, json_array(json_array('out', $1, 'file', 3)))",
    ] {
        sqlx::query(sql).bind(&hash).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let object = root.join("objects").join(&hash[..2]);
    std::fs::create_dir_all(&object).unwrap();
    std::fs::write(object.join(&hash[2..]), b"out").unwrap();

    let store = open_sqlite(dir.path(), Default::default()).await;
    let key = histodiff_engine::hash::StageKey("key-7".into());
    let hits = store.cached_many(std::slice::from_ref(&key)).await.unwrap();
    let hit = &hits[&key];
    assert_eq!(hit.execution_id, ExecutionId(7));
    assert_eq!(hit.outputs["out"].hash.0, hash);
    let (sql,): (String,) = sqlx::query_as("SELECT sql FROM sqlite_master WHERE name = 'cache'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(sql.contains("WITHOUT ROWID"), "{sql}");
}
