//! The store: database tables (runs, executions, artifacts, lineage edges, cache,
//! checkpoints, metrics, stat cache, reservations) behind the [`Store`] trait, plus the
//! content-addressed object directory ([`objects::ObjectStore`]). SQLite by default,
//! PostgreSQL on a cluster; the same migrations (one folder per database) and the same
//! code paths serve both.
//!
//! Backend choice: one implementation, [`sql::SqlStore`], over sqlx's `Any` driver. Every
//! statement is written once in the SQL common to SQLite and PostgreSQL: `$1` placeholders
//! (SQLite reads `$N` as the N-th argument), `INSERT … ON CONFLICT … DO NOTHING/UPDATE`,
//! `RETURNING`, `WITH RECURSIVE`, timestamps as INTEGER milliseconds, JSON as TEXT,
//! booleans avoided. Only the migrations differ per database. Opening a SQLite store first
//! creates the file (`create_if_missing`) and switches it to WAL with the native driver;
//! every pooled connection then sets `busy_timeout` and `foreign_keys`.
//!
//! The schema is a supported interface: docs/schema.md.

pub mod liveness;
pub mod maintenance;
pub mod objects;
pub mod postgres;
pub mod sql;
pub mod stat_cache;
pub mod types;

pub use objects::ObjectStore;
pub use types::*;

use crate::hash::{ArtifactHash, StageKey};
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store database {place}: {source}")]
    Db { place: String, source: sqlx::Error },
    #[error("store migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Objects(#[from] objects::ObjectError),
    #[error(transparent)]
    Hash(#[from] crate::hash::HashError),
    #[error("cannot create {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store database holds an unexpected value in {place}: {value:?}")]
    Corrupt { place: String, value: String },
    #[error("execution {0} does not exist")]
    NoSuchExecution(ExecutionId),
    #[error("{0}")]
    Unsupported(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The SQLite database's file name in a store directory.
pub const DATABASE_FILE: &str = "histodiff.db";

/// Where a store keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLayout {
    /// The store directory (`.histodiff/`), or the object root for a PostgreSQL store.
    pub root: PathBuf,
    pub objects: PathBuf,
    /// Scratch directories of running executions.
    pub work: PathBuf,
    pub checkpoints: PathBuf,
}

impl StoreLayout {
    /// The standard layout under one directory.
    pub fn under(root: &Path, objects: Option<&Path>) -> Self {
        StoreLayout {
            root: root.to_path_buf(),
            objects: objects
                .map(Path::to_path_buf)
                .unwrap_or_else(|| root.join("objects")),
            work: root.join("work"),
            checkpoints: root.join("checkpoints"),
        }
    }

    /// The SQLite database ([`DATABASE_FILE`] in `root`).
    pub fn database(&self) -> PathBuf {
        self.root.join(DATABASE_FILE)
    }

    /// `checkpoints/<key>/`: checkpoints never cross keys.
    pub fn checkpoint_dir(&self, key: &StageKey) -> PathBuf {
        self.checkpoints.join(&key.0)
    }

    /// `work/<execution id>/`.
    pub fn work_dir(&self, execution: ExecutionId) -> PathBuf {
        self.work.join(execution.0.to_string())
    }

    /// Whether the layout is already on disk with its database: opening it then creates
    /// nothing.
    pub fn exists(&self) -> bool {
        self.database().is_file()
            && [&self.objects, &self.work, &self.checkpoints]
                .iter()
                .all(|d| d.is_dir())
    }

    /// Creates every directory of the layout.
    pub fn create(&self) -> StoreResult<()> {
        for dir in [&self.root, &self.objects, &self.work, &self.checkpoints] {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// Everything the scheduler and the CLI ask of the store. Object-safe; used as
/// `Arc<dyn Store>`. Only the orchestrator writes the database; workers only write objects.
#[async_trait]
pub trait Store: Send + Sync {
    fn layout(&self) -> &StoreLayout;
    fn objects(&self) -> &ObjectStore;

    // --- runs ---------------------------------------------------------------------------
    async fn begin_run(&self, run: &NewRun) -> StoreResult<RunId>;
    async fn finish_run(&self, run: RunId, status: RunStatus) -> StoreResult<()>;

    // --- cache ----------------------------------------------------------------------------
    /// The successful execution of `key`, if any (failures are never cached). A hit whose
    /// output objects are missing from the object directory is not returned.
    async fn cached(&self, key: &StageKey) -> StoreResult<Option<CachedExecution>>;
    /// [`cached`](Self::cached) for many keys in a few queries: the hits, by key.
    async fn cached_many(
        &self,
        keys: &[StageKey],
    ) -> StoreResult<HashMap<StageKey, CachedExecution>>;
    /// Records that these instances of `run` reused cached executions: one compact
    /// `cache_hits` row (batch `batch`, numbered by the caller from 0), not a row per hit.
    /// Readers of a run's executions see each hit as a `cached` record (see
    /// [`ExecutionRecord`]).
    async fn record_cache_hits(
        &self,
        run: RunId,
        batch: u32,
        hits: &[NewCacheHit<'_>],
    ) -> StoreResult<()>;

    // --- reservations ---------------------------------------------------------------------
    /// Atomically claims `key`. A claim whose holder is dead (same host, `kill(pid, 0)`
    /// fails) or whose heartbeat is older than the store's timeout is reclaimed, and its
    /// unfinished executions are marked interrupted.
    async fn reserve(&self, key: &StageKey, holder: &Holder) -> StoreResult<Reservation>;
    async fn heartbeat(&self, keys: &[StageKey], holder: &Holder) -> StoreResult<()>;
    async fn release(&self, key: &StageKey, holder: &Holder) -> StoreResult<()>;

    // --- executions -----------------------------------------------------------------------
    /// Inserts a `pending` execution (started now).
    async fn start_execution(&self, new: &NewExecution) -> StoreResult<ExecutionId>;
    /// Records where the worker runs and marks the execution `running`.
    async fn set_worker(&self, id: ExecutionId, worker: &WorkerInfo) -> StoreResult<()>;
    /// Ends an execution and releases its run's reservation of the key. A success inserts
    /// its artifacts, lineage edges, final metrics and the cache row of its key, all in
    /// one transaction. `worker`: where it ran, when `set_worker` has not said so.
    async fn finish_execution(
        &self,
        id: ExecutionId,
        outcome: &Outcome,
        worker: Option<&WorkerInfo>,
    ) -> StoreResult<()>;
    async fn record_metric(
        &self,
        id: ExecutionId,
        name: &str,
        step: Option<u64>,
        value: f64,
    ) -> StoreResult<()>;
    /// Overwrites the execution's progress row (`step` of `total`, stamped now). Callers
    /// throttle: the scheduler writes about once a second per execution.
    async fn record_progress(
        &self,
        id: ExecutionId,
        step: u64,
        total: u64,
        message: Option<&str>,
    ) -> StoreResult<()>;
    async fn record_checkpoint(&self, key: &StageKey, step: u64, file: &str) -> StoreResult<()>;
    async fn latest_checkpoint(&self, key: &StageKey) -> StoreResult<Option<CheckpointRecord>>;

    // --- queries for the CLI --------------------------------------------------------------
    /// The newest execution of an instance (any status), with its fingerprint.
    async fn last_execution_of(&self, instance: &str) -> StoreResult<Option<ExecutionRecord>>;
    /// [`Store::last_execution_of`] for many instances at once (absent: never executed).
    async fn last_executions_of(
        &self,
        instances: &[String],
    ) -> StoreResult<HashMap<String, ExecutionRecord>> {
        let mut found = HashMap::new();
        for instance in instances {
            if let Some(record) = self.last_execution_of(instance).await? {
                found.insert(instance.clone(), record);
            }
        }
        Ok(found)
    }
    /// Executions of one run, or of every run, oldest first, with each cache hit as a
    /// `cached` record whose id is its source's (a hit has no id of its own).
    async fn executions(&self, run: Option<RunId>) -> StoreResult<Vec<ExecutionRecord>>;
    async fn execution(&self, id: ExecutionId) -> StoreResult<Option<ExecutionRecord>>;
    /// Executions pending or running now, oldest first.
    async fn in_flight(&self) -> StoreResult<Vec<ExecutionRecord>>;
    /// Every successful execution upstream of the target, nearest first.
    async fn lineage(&self, target: &LineageTarget) -> StoreResult<Vec<LineageNode>>;
    async fn artifact(&self, hash: &ArtifactHash) -> StoreResult<Option<ArtifactRecord>>;
    /// Recorded artifacts whose hash starts with `prefix` (lowercase hex), at most `limit`,
    /// in hash order: two answers mean the prefix is ambiguous.
    async fn artifacts_by_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> StoreResult<Vec<ArtifactHash>>;
    /// Every artifact the database knows (what gc must keep).
    async fn all_referenced_artifacts(&self) -> StoreResult<HashSet<ArtifactHash>>;
    /// Newest first.
    async fn runs(&self) -> StoreResult<Vec<RunRecord>>;
    async fn status(&self) -> StoreResult<StoreStatus>;
    async fn metrics(&self, id: ExecutionId) -> StoreResult<Vec<(String, Option<u64>, f64)>>;
    /// The newest progress report of each execution of a run that reported any.
    async fn progress(&self, run: RunId) -> StoreResult<Vec<ProgressRecord>>;
    /// Who wrote and who read an artifact (both directions of its lineage, one step).
    async fn artifact_edges(&self, hash: &ArtifactHash) -> StoreResult<ArtifactEdges>;
    /// What an execution read and wrote.
    async fn execution_edges(&self, id: ExecutionId) -> StoreResult<ExecutionEdges>;

    // --- stat cache -----------------------------------------------------------------------
    async fn stat_get(&self, path: &str) -> StoreResult<Option<StatEntry>>;
    async fn stat_get_many(&self, paths: &[String]) -> StoreResult<HashMap<String, StatEntry>>;
    async fn stat_put_many(&self, entries: &[StatEntry]) -> StoreResult<()>;
}

/// Whether `store` (as [`open`] takes it) is a SQLite store that is already on disk, so
/// that opening it creates no file: then `run` may open it while the plan is still being
/// validated, and bad input still leaves no store behind.
pub fn exists(store: &str, objects: Option<&Path>, base_dir: &Path) -> bool {
    !postgres::is_postgres_url(store) && sqlite_layout(store, objects, base_dir).exists()
}

/// The layout of a SQLite store as [`open`] resolves it: `store` and `objects`
/// relative to `base_dir`.
fn sqlite_layout(store: &str, objects: Option<&Path>, base_dir: &Path) -> StoreLayout {
    let objects = objects.map(|p| base_dir.join(p));
    StoreLayout::under(&base_dir.join(store), objects.as_deref())
}

/// Opens the store named by `settings.store`: a directory (relative to `base_dir`;
/// created with `histodiff.db`, `objects/`, `work/`, `checkpoints/`), or a
/// `postgres://` URL with `objects` naming the shared object directory.
pub async fn open(
    store: &str,
    objects: Option<&Path>,
    base_dir: &Path,
) -> StoreResult<Arc<dyn Store>> {
    if postgres::is_postgres_url(store) {
        let shared = objects.ok_or_else(|| {
            StoreError::Unsupported(
                "settings.store is a postgres:// URL: set settings.objects to a directory \
                 shared by every node (objects, work and checkpoints live there)"
                    .to_string(),
            )
        })?;
        let store =
            postgres::open_postgres(store, &base_dir.join(shared), sql::StoreOptions::default())
                .await?;
        return Ok(Arc::new(store));
    }
    let layout = sqlite_layout(store, objects, base_dir);
    layout.create()?;
    let store = sql::SqlStore::open_sqlite(layout, sql::StoreOptions::default()).await?;
    Ok(Arc::new(store))
}
