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
