//! What the store tests share: the two backends the suite runs against (a SQLite file in a
//! scratch directory; a fresh database on the PostgreSQL server that
//! scripts/services/postgres.sh starts) and small builders of runs, executions, outputs
//! and holders.
//!
//! PostgreSQL needs HISTODIFF_TEST_PG_URL (`source scripts/services/postgres.sh`;
//! scripts/test.sh does). Without it the PostgreSQL tests FAIL, they do not skip.

#![allow(dead_code)]

use histodiff_engine::hash::StageKey;
use histodiff_engine::protocol::OutputArtifact;
use histodiff_engine::store::liveness::hostname;
use histodiff_engine::store::postgres::open_postgres;
use histodiff_engine::store::sql::{SqlStore, StoreOptions};
use histodiff_engine::store::*;
use sqlx::{AssertSqlSafe, Connection};
use std::collections::BTreeMap;
use std::path::Path;
use tempfile::TempDir;

/// A database the suite's checks run against, with the scratch directory its objects
/// live under. Each test starts its own and finishes it at the end.
pub trait Backend: Sized {
    /// A fresh, empty database.
    async fn start() -> Self;
    /// One more handle on this database: a second orchestrator, or the same one after
    /// a crash. The first handle migrates the schema.
    async fn open(&self, options: StoreOptions) -> SqlStore;
    /// The scratch directory: objects are stored under it, and checks write sources there.
    fn dir(&self) -> &Path;
    /// Removes what `start` made outside the scratch directory.
    async fn finish(self);

    /// A handle with the default options.
    async fn store(&self) -> SqlStore {
        self.open(StoreOptions::default()).await
    }
}

/// `histodiff.db` (WAL) under `<scratch>/.histodiff`, the layout `histodiff run` makes.
pub struct Sqlite {
    dir: TempDir,
}

impl Backend for Sqlite {
    async fn start() -> Self {
        Sqlite {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    async fn open(&self, options: StoreOptions) -> SqlStore {
        open_sqlite(self.dir.path(), options).await
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    async fn finish(self) {}
}

/// Opens (creating) the SQLite store under `<dir>/.histodiff`.
pub async fn open_sqlite(dir: &Path, options: StoreOptions) -> SqlStore {
    let layout = StoreLayout::under(&dir.join(".histodiff"), None);
    SqlStore::open_sqlite(layout, options).await.unwrap()
}

/// A fresh database on the test server, with the scratch directory as the shared
/// directory (objects, work, checkpoints); dropped by `finish`.
pub struct Postgres {
    db: TestDb,
    dir: TempDir,
}

impl Backend for Postgres {
    async fn start() -> Self {
        Postgres {
            db: fresh_db().await,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    async fn open(&self, options: StoreOptions) -> SqlStore {
        self.db.open(self.dir.path(), options).await
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    async fn finish(self) {
        self.db.drop_now().await;
    }
}

/// A fresh database on the test server; dropped by [`TestDb::drop_now`].
pub struct TestDb {
    admin_url: String,
    name: String,
    pub url: String,
}

pub fn server_url() -> String {
    std::env::var("HISTODIFF_TEST_PG_URL").unwrap_or_else(|_| {
        panic!("HISTODIFF_TEST_PG_URL is not set: run `source scripts/services/postgres.sh` first (scripts/test.sh does)")
    })
}

/// Creates a database named after this process and the moment, so tests never meet.
pub async fn fresh_db() -> TestDb {
    let admin_url = server_url();
    let name = format!(
        "hd_{}_{}",
        std::process::id(),
        &blake3::hash(format!("{:?}", std::time::Instant::now()).as_bytes()).to_hex()[..10]
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
    pub async fn open(&self, shared: &Path, options: StoreOptions) -> SqlStore {
        open_postgres(&self.url, shared, options).await.unwrap()
    }

    /// Drops the database, ending this role's sessions on it. The server's autovacuum
    /// worker may be visiting the fresh database, and FORCE may not end it (another
    /// role's process): it leaves within moments, so the drop is tried again for 10 s.
    pub async fn drop_now(self) {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        for attempt in 1.. {
            match sqlx::query(AssertSqlSafe(sql.clone()))
                .execute(&mut conn)
                .await
            {
                Ok(_) => return,
                Err(e) if attempt < 100 => {
                    eprintln!("drop {} (attempt {attempt}): {e}", self.name);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("could not drop test database {}: {e}", self.name),
            }
        }
    }
}

pub fn key(s: &str) -> StageKey {
    StageKey(blake3::hash(s.as_bytes()).to_hex().to_string())
}

/// An execution of `instance` (stage = the name before `[`), keyed by the instance name.
pub fn new_exec(run: RunId, instance: &str) -> NewExecution {
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

/// Begins a run held by this process on this host.
pub async fn begin_run(store: &dyn Store) -> RunId {
    let new = NewRun {
        pipeline: "p".into(),
        file: "p.yaml".into(),
        host: hostname(),
        pid: std::process::id() as i64,
    };
    store.begin_run(&new).await.unwrap()
}

/// Stores `bytes` as an object and returns it as an output.
pub fn output(store: &dyn Store, dir: &Path, bytes: &[u8]) -> OutputArtifact {
    let src = dir.join(format!("src-{}", blake3::hash(bytes).to_hex()));
    std::fs::write(&src, bytes).unwrap();
    store.objects().put(&src).unwrap()
}

/// A success with `outputs`, `inputs` and one metric (accuracy 0.75).
pub fn success(outputs: &[(&str, &OutputArtifact)], inputs: Vec<InputEdge>) -> Outcome {
    Outcome::Succeeded {
        outputs: outputs
            .iter()
            .map(|(n, o)| (n.to_string(), (*o).clone()))
            .collect(),
        inputs,
        metrics: BTreeMap::from([("accuracy".to_string(), 0.75)]),
    }
}

/// fewshot → select[ratio=1] → evaluate[ratio=1], each reading the one before: one run,
/// three successes, three outputs (returned in that order).
pub async fn chain(store: &dyn Store, dir: &Path) -> (RunId, Vec<OutputArtifact>) {
    let run_id = begin_run(store).await;
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
            .finish_execution(id, &success(&[("out", &out)], previous.clone()), None)
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

/// This host with process `pid`, no Slurm job.
pub fn holder(pid: i64) -> Holder {
    Holder {
        run_id: None,
        host: hostname(),
        pid,
        slurm_job_id: None,
    }
}

/// This process on this host, told apart by a Slurm job id (`n`).
pub fn claimant(n: i64) -> Holder {
    Holder {
        slurm_job_id: Some(n.to_string()),
        ..holder(std::process::id() as i64)
    }
}
