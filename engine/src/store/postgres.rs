//! The PostgreSQL side of the store, for clusters: the tables live in a PostgreSQL
//! database that every orchestrator reaches, the objects (and the work and checkpoint
//! directories the Slurm jobs use) in a shared directory. Everything past connecting is
//! [`SqlStore`]'s common code over sqlx `Any`; only the migrations
//! (`migrations/postgres/`, mirroring `migrations/sqlite/`) are PostgreSQL's own.
//!
//! Reservations need nothing special: `INSERT … ON CONFLICT (stage_key) DO NOTHING` is
//! atomic across connections and hosts, and sqlx's PostgreSQL migrator holds an advisory
//! lock, so two orchestrators opening a fresh database at once migrate it once.

use super::sql::{db_err, SqlStore, StoreOptions};
use super::{StoreLayout, StoreResult};
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use std::path::Path;
use std::time::Duration;

/// The PostgreSQL schema, embedded at build time.
pub static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

/// Whether `settings.store` names a PostgreSQL database.
pub fn is_postgres_url(store: &str) -> bool {
    store.starts_with("postgres://") || store.starts_with("postgresql://")
}

/// Connects to `url`, applies the migrations, and keeps `objects/`, `work/` and
/// `checkpoints/` under `shared` (a directory every compute node sees at the same path).
pub async fn open_postgres(
    url: &str,
    shared: &Path,
    options: StoreOptions,
) -> StoreResult<SqlStore> {
    sqlx::any::install_default_drivers();
    let layout = StoreLayout::under(shared, None);
    layout.create()?;
    let pool = AnyPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect(url)
        .await
        .map_err(db_err("connect"))?;
    SqlStore::from_pool(pool, layout, options, &POSTGRES_MIGRATIONS).await
}
