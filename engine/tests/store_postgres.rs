//! The store on PostgreSQL: every check of the shared suite (store_suite/), then what only
//! PostgreSQL has: the same tables as SQLite column for column, and `store::open` taking a
//! `postgres://` URL only with a shared directory for the objects.
//!
//! Needs a server: `source scripts/services/postgres.sh` exports HISTODIFF_TEST_PG_URL
//! (scripts/test.sh does). Each test creates its own database and drops it at the end.
//! Without the variable the tests FAIL, they do not skip.

mod store_suite;
mod store_support;

use sqlx::Row;
use std::path::Path;
use store_support::*;

store_suite::store_checks!(Postgres);

/// Every `table.column` of a store's schema, sorted, read with the dialect's catalogue.
async fn columns(pool: &sqlx::AnyPool, catalogue: &str) -> Vec<String> {
    sqlx::query(sqlx::AssertSqlSafe(catalogue))
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("c"))
        .collect()
}

#[tokio::test]
async fn tables_mirror_the_sqlite_schema_column_for_column() {
    let pg = Postgres::start().await;
    let lite = Sqlite::start().await;
    let (pg_store, lite_store) = (pg.store().await, lite.store().await);
    let pg_cols = columns(
        pg_store.pool(),
        "SELECT table_name || '.' || column_name AS c FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' ORDER BY 1",
    )
    .await;
    let lite_cols = columns(
        lite_store.pool(),
        "SELECT m.name || '.' || p.name AS c FROM sqlite_master m, pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE '\\_sqlx%' ESCAPE '\\' AND m.name NOT LIKE 'sqlite%' ORDER BY 1",
    )
    .await;
    assert!(pg_cols.len() > 40, "{pg_cols:?}");
    assert_eq!(pg_cols, lite_cols);
    // The shared directory holds the objects and the jobs' scratch and checkpoints.
    for sub in ["objects", "work", "checkpoints"] {
        assert!(pg.dir().join(sub).is_dir(), "{sub}");
    }
    drop(pg_store);
    pg.finish().await;
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
    let id = begin_run(store.as_ref()).await;
    assert_eq!(store.runs().await.unwrap()[0].id, id);
    drop(store);
    db.drop_now().await;
}

/// Runs without a server: the URL is refused before any connection is tried.
#[tokio::test]
async fn postgres_needs_a_shared_objects_directory() {
    let dir = tempfile::tempdir().unwrap();
    let err = histodiff_engine::store::open("postgres://db/x", None, dir.path())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("settings.objects"), "{err}");
}
