//! Shared by the PostgreSQL store tests: a fresh database per test on the server
//! scripts/services/postgres.sh starts (HISTODIFF_TEST_PG_URL; without it the tests FAIL,
//! they do not skip), and small builders of runs, executions and outputs.

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

    pub async fn drop_now(self) {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        sqlx::query(AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

pub fn key(s: &str) -> StageKey {
    StageKey(blake3::hash(s.as_bytes()).to_hex().to_string())
}

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

pub async fn run(store: &SqlStore) -> RunId {
    let new = NewRun {
        pipeline: "p".into(),
        file: "p.yaml".into(),
        host: hostname(),
        pid: std::process::id() as i64,
    };
    store.begin_run(&new).await.unwrap()
}

pub fn output(store: &SqlStore, dir: &Path, bytes: &[u8]) -> OutputArtifact {
    let src = dir.join(format!("src-{}", blake3::hash(bytes).to_hex()));
    std::fs::write(&src, bytes).unwrap();
    store.objects().put(&src).unwrap()
}

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

pub fn holder(pid: i64) -> Holder {
    Holder {
        run_id: None,
        host: hostname(),
        pid,
        slurm_job_id: None,
    }
}
