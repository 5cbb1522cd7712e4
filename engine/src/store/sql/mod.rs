//! [`SqlStore`]: the one [`Store`] implementation, over sqlx's `Any` driver so SQLite and
//! PostgreSQL share every statement (see the module doc of [`crate::store`]). The
//! statements live in the submodules by topic; this file connects, migrates and
//! dispatches the trait's methods to them.

mod bulk;
mod cache;
mod edges;
mod hits;
mod progress;
mod queries;
mod rows;
mod runs;
mod stat;

use super::*;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::AnyPool;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};
use std::time::Duration;

/// The SQLite schema, embedded at build time.
pub static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");

/// Most bind parameters one statement uses (below SQLite's 32766 and PostgreSQL's 65535).
pub(crate) const MAX_PARAMS: usize = 900;

/// Most keys or rows one bulk statement carries (`bulk.rs`): a few hundred KB of JSON,
/// small enough that the buffers of one chunk are reused by the next.
pub(crate) const BULK_ROWS: usize = 2_000;

/// Per-connection settings of the writers' pool: foreign keys, and `synchronous =
/// NORMAL`, which in WAL mode loses nothing when a process is killed (a power cut may lose
/// the newest transactions, which only makes those stages run again: objects are written
/// before their rows) and spares an fsync per recorded execution. (Bulk lookups read
/// through the readers' pool: see [`SqlStore::readers`].)
const WRITER_PRAGMAS: &[&str] = &["PRAGMA foreign_keys = ON", "PRAGMA synchronous = NORMAL"];

/// Tunables of a [`SqlStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// A reservation whose heartbeat is older than this is taken over.
    pub reservation_timeout: Duration,
    /// How long SQLite waits for a lock before failing.
    pub busy_timeout: Duration,
    pub max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            reservation_timeout: Duration::from_secs(300),
            busy_timeout: Duration::from_secs(30),
            max_connections: 4,
        }
    }
}

/// The store's tables in a database reached through sqlx `Any`, plus its object directory.
pub struct SqlStore {
    pool: AnyPool,
    /// Where bulk lookups read (see [`SqlStore::readers`]); `pool` itself on PostgreSQL.
    readers: AnyPool,
    /// SQLite takes one writer at a time; a second one that finds the lock taken sleeps
    /// in its busy handler (1, 2, 5 ms …), which at thousands of small jobs was a second
    /// of every run. Writers of this process queue here instead, without sleeping; other
    /// processes still meet the busy timeout. PostgreSQL locks rows, so it has none.
    write_gate: Option<tokio::sync::Mutex<()>>,
    dialect: bulk::Dialect,
    layout: StoreLayout,
    objects: ObjectStore,
    options: StoreOptions,
}

pub(crate) fn db_err(place: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Db {
        place: place.to_string(),
        source,
    }
}

/// A bulk result (`bulk.rs`) the database returned but that does not parse.
pub(crate) fn corrupt_json(table: &str, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        place: format!("{table} (bulk result)"),
        value: e.to_string(),
    }
}

impl SqlStore {
    /// Opens (creating) `histodiff.db` in `layout.root`: WAL, busy timeout, foreign keys.
    pub async fn open_sqlite(layout: StoreLayout, options: StoreOptions) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        layout.create()?;
        let db = layout.database();
        // The native driver creates the file and switches it to WAL, which persists in
        // the file; the pooled `Any` connections then only set per-connection pragmas.
        let native = SqliteConnectOptions::new()
            .filename(&db)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true);
        create_wal_file(&native, options.busy_timeout).await?;

        let pool = sqlite_pool(
            options.max_connections,
            options.busy_timeout,
            WRITER_PRAGMAS,
        )
        .connect(&sqlite_url(&db))
        .await
        .map_err(db_err("connect"))?;
        let readers = sqlite_readers(&db, options.busy_timeout)?;
        let store = Self::from_pool(pool, layout, options, &SQLITE_MIGRATIONS).await?;
        Ok(SqlStore { readers, ..store })
    }

    /// Connects to any database URL sqlx knows (`postgres://…`), applies `migrations`
    /// and keeps objects (and work and checkpoint directories) under `layout`. This is the
    /// entry of the PostgreSQL backend: same statements, its own migration folder.
    pub async fn connect_any(
        url: &str,
        layout: StoreLayout,
        options: StoreOptions,
        migrations: &Migrator,
    ) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections)
            .connect(url)
            .await
            .map_err(db_err("connect"))?;
        Self::from_pool(pool, layout, options, migrations).await
    }

    /// Wraps a connected pool (any backend) after applying `migrations`. The PostgreSQL
    /// backend enters here with its own migration folder.
    pub async fn from_pool(
        pool: AnyPool,
        layout: StoreLayout,
        options: StoreOptions,
        migrations: &Migrator,
    ) -> StoreResult<Self> {
        layout.create()?;
        let objects = ObjectStore::create(&layout.objects)?;
        // Two processes opening a fresh store at once can race on the first migration;
        // the loser finds it applied on a second try.
        if migrations.run(&pool).await.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            migrations.run(&pool).await?;
        }
        let dialect = bulk::Dialect::of_url(pool.connect_options().database_url.scheme());
        let write_gate = matches!(dialect, bulk::Dialect::Sqlite).then(Default::default);
        Ok(SqlStore {
            readers: pool.clone(),
            pool,
            write_gate,
            dialect,
            layout,
            objects,
            options,
        })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The connections bulk lookups (cache, stat cache) read through. On SQLite these
    /// are read-only connections, one per core (see [`lookup_readers`]), that keep the
    /// database file memory-mapped for the store's life: a lookup reads b-tree pages
    /// where the kernel holds them instead of copying each into a connection's own page
    /// cache, and a page is mapped once per run, not once per lookup. Only readers are
    /// mapped: SQLite remaps a connection's map when the file has grown, which the
    /// writers' own commits do after every job of a full run (a map on every connection
    /// made a full run of 1,000 members 7% slower). No-op run of a 10,000-member sweep,
    /// against a map per lookup: 204 → 200 ms, 2,000 fewer page faults.
    pub fn readers(&self) -> &AnyPool {
        &self.readers
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// This process's turn to write (see `write_gate`), held until dropped.
    async fn writer(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.write_gate {
            Some(gate) => Some(gate.lock().await),
            None => None,
        }
    }
}

/// Creates the database file in WAL mode. Switching the journal mode takes a lock that
/// SQLite does not wait for, so a second process opening a fresh store at the same moment
/// gets "database is locked" at once; it tries again until the busy timeout.
async fn create_wal_file(native: &SqliteConnectOptions, patience: Duration) -> StoreResult<()> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        match native.connect().await {
            Ok(conn) => return conn.close().await.map_err(db_err("create")),
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(db_err("create")(e)),
        }
    }
}

/// SQLITE_BUSY (5) or SQLITE_LOCKED (6), or one of their extended codes.
fn is_busy(e: &sqlx::Error) -> bool {
    let code = e.as_database_error().and_then(|d| d.code());
    let primary = code.and_then(|c| c.parse::<i32>().ok()).map(|n| n & 0xff);
    matches!(primary, Some(5) | Some(6))
}

/// How many read-only connections bulk lookups share (see [`SqlStore::readers`]): one
/// per core, from 2 to 8. A sweep's lookups go a chunk per connection at once.
pub fn lookup_readers() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    cores.clamp(2, 8) as u32
}

/// Per-connection settings of the readers' pool: no writes, and the whole file mapped
/// (up to 1 GiB).
const READER_PRAGMAS: &[&str] = &["PRAGMA query_only = ON", "PRAGMA mmap_size = 1073741824"];

/// The SQLite readers' pool, connected on first use.
fn sqlite_readers(db: &Path, busy_timeout: Duration) -> StoreResult<AnyPool> {
    sqlite_pool(lookup_readers(), busy_timeout, READER_PRAGMAS)
        .connect_lazy(&sqlite_url(db))
        .map_err(db_err("connect"))
}

/// A pool of up to `max` SQLite connections, each set up with the busy timeout and then
/// `pragmas`.
fn sqlite_pool(
    max: u32,
    busy_timeout: Duration,
    pragmas: &'static [&'static str],
) -> AnyPoolOptions {
    let busy_ms = busy_timeout.as_millis();
    AnyPoolOptions::new()
        .max_connections(max)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                let busy = format!("PRAGMA busy_timeout = {busy_ms}");
                sqlx::query(AssertSqlSafe(busy)).execute(&mut *conn).await?;
                for pragma in pragmas {
                    sqlx::query(*pragma).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
}

/// `sqlite://` URL of a path; `%`, `?` and `#` are escaped so any file name survives.
fn sqlite_url(db: &Path) -> String {
    let path = db
        .to_string_lossy()
        .replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23");
    format!("sqlite://{path}")
}

/// `$first, $first+1, …` — `n` placeholders.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[async_trait]
impl Store for SqlStore {
    fn layout(&self) -> &StoreLayout {
        &self.layout
    }
    fn objects(&self) -> &ObjectStore {
        &self.objects
    }
    async fn begin_run(&self, run: &NewRun) -> StoreResult<RunId> {
        let _turn = self.writer().await;
        self.insert_run(run).await
    }
    async fn finish_run(&self, run: RunId, status: RunStatus) -> StoreResult<()> {
        let _turn = self.writer().await;
        self.update_run(run, status).await
    }
    async fn cached(&self, key: &StageKey) -> StoreResult<Option<CachedExecution>> {
        Ok(self
            .lookup_cache(std::slice::from_ref(key))
            .await?
            .remove(key))
    }
    async fn cached_many(
        &self,
        keys: &[StageKey],
    ) -> StoreResult<HashMap<StageKey, CachedExecution>> {
        self.lookup_cache(keys).await
    }
    async fn record_cache_hits(
        &self,
        run: RunId,
        batch: u32,
        hits: &[NewCacheHit<'_>],
    ) -> StoreResult<()> {
        let _turn = self.writer().await;
        self.insert_cache_hits(run, batch, hits).await
    }
    async fn reserve(&self, key: &StageKey, holder: &Holder) -> StoreResult<Reservation> {
        let _turn = self.writer().await;
        self.try_reserve(key, holder).await
    }
    async fn heartbeat(&self, keys: &[StageKey], holder: &Holder) -> StoreResult<()> {
        let _turn = self.writer().await;
        self.beat(keys, holder).await
    }
    async fn release(&self, key: &StageKey, holder: &Holder) -> StoreResult<()> {
        let _turn = self.writer().await;
        self.drop_reservation(key, holder).await
    }
    async fn start_execution(&self, new: &NewExecution) -> StoreResult<ExecutionId> {
        let _turn = self.writer().await;
        self.insert_execution(new).await
    }
    async fn set_worker(&self, id: ExecutionId, worker: &WorkerInfo) -> StoreResult<()> {
        let _turn = self.writer().await;
        self.update_worker(id, worker).await
    }
    async fn finish_execution(
        &self,
        id: ExecutionId,
        outcome: &Outcome,
        worker: Option<&WorkerInfo>,
    ) -> StoreResult<()> {
        let _turn = self.writer().await;
        self.complete_execution(id, outcome, worker).await
    }
    async fn record_metric(
        &self,
        id: ExecutionId,
        name: &str,
        step: Option<u64>,
        value: f64,
    ) -> StoreResult<()> {
        let _turn = self.writer().await;
        self.insert_metric(id, name, step, value).await
    }
    async fn record_progress(
        &self,
        id: ExecutionId,
        step: u64,
        total: u64,
        message: Option<&str>,
    ) -> StoreResult<()> {
        let _turn = self.writer().await;
        self.upsert_progress(id, step, total, message).await
    }
    async fn record_checkpoint(&self, key: &StageKey, step: u64, file: &str) -> StoreResult<()> {
        let _turn = self.writer().await;
        self.insert_checkpoint(key, step, file).await
    }
    async fn latest_checkpoint(&self, key: &StageKey) -> StoreResult<Option<CheckpointRecord>> {
        self.newest_checkpoint(key).await
    }
    async fn last_execution_of(&self, instance: &str) -> StoreResult<Option<ExecutionRecord>> {
        self.newest_execution_of(instance).await
    }
    async fn last_executions_of(
        &self,
        instances: &[String],
    ) -> StoreResult<HashMap<String, ExecutionRecord>> {
        self.newest_executions_of(instances).await
    }
    async fn executions(&self, run: Option<RunId>) -> StoreResult<Vec<ExecutionRecord>> {
        self.list_executions(run).await
    }
    async fn execution(&self, id: ExecutionId) -> StoreResult<Option<ExecutionRecord>> {
        self.one_execution(id).await
    }
    async fn in_flight(&self) -> StoreResult<Vec<ExecutionRecord>> {
        self.active_executions().await
    }
    async fn lineage(&self, target: &LineageTarget) -> StoreResult<Vec<LineageNode>> {
        self.trace_lineage(target).await
    }
    async fn artifact(&self, hash: &ArtifactHash) -> StoreResult<Option<ArtifactRecord>> {
        self.one_artifact(hash).await
    }
    async fn artifacts_by_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> StoreResult<Vec<ArtifactHash>> {
        self.artifacts_with_prefix(prefix, limit).await
    }
    async fn all_referenced_artifacts(&self) -> StoreResult<HashSet<ArtifactHash>> {
        self.referenced_artifacts().await
    }
    async fn runs(&self) -> StoreResult<Vec<RunRecord>> {
        self.list_runs().await
    }
    async fn status(&self) -> StoreResult<StoreStatus> {
        self.summary().await
    }
    async fn metrics(&self, id: ExecutionId) -> StoreResult<Vec<(String, Option<u64>, f64)>> {
        self.list_metrics(id).await
    }
    async fn progress(&self, run: RunId) -> StoreResult<Vec<ProgressRecord>> {
        self.run_progress(run).await
    }
    async fn artifact_edges(&self, hash: &ArtifactHash) -> StoreResult<ArtifactEdges> {
        self.edges_of_artifact(hash).await
    }
    async fn execution_edges(&self, id: ExecutionId) -> StoreResult<ExecutionEdges> {
        self.edges_of_execution(id).await
    }
    async fn stat_get(&self, path: &str) -> StoreResult<Option<StatEntry>> {
        Ok(self.stat_lookup(&[path.to_string()]).await?.remove(path))
    }
    async fn stat_get_many(&self, paths: &[String]) -> StoreResult<HashMap<String, StatEntry>> {
        self.stat_lookup(paths).await
    }
    async fn stat_put_many(&self, entries: &[StatEntry]) -> StoreResult<()> {
        let _turn = self.writer().await;
        self.stat_store(entries).await
    }
}
