//! Cache hits: one compact `cache_hits` row per batch of a run (migration 0006), read
//! back as `cached` execution records. A no-op run of a 10,000-member sweep writes a
//! handful of rows here, where it used to insert 30,000 `executions` rows and their index
//! entries.

use super::rows::{self, EXECUTION_COLUMNS, EXECUTION_FROM};
use super::{corrupt_json, db_err, SqlStore, BULK_ROWS};
use crate::store::liveness::now_ms;
use crate::store::types::*;
use crate::store::{StoreError, StoreResult};
use sqlx::AssertSqlSafe;
use std::collections::HashMap;

/// One entry of `cache_hits.entries`: source execution id, stage, instance.
type Entry = (i64, String, String);

/// A `cache_hits` row, parsed.
struct Batch {
    run_id: RunId,
    recorded: i64,
    entries: Vec<Entry>,
}

impl SqlStore {
    pub(super) async fn insert_cache_hits(
        &self,
        run: RunId,
        batch: u32,
        hits: &[NewCacheHit<'_>],
    ) -> StoreResult<()> {
        if hits.is_empty() {
            return Ok(());
        }
        let entries: Vec<(i64, &str, &str)> = hits
            .iter()
            .map(|h| (h.source.0, h.stage, h.instance))
            .collect();
        sqlx::query(
            "INSERT INTO cache_hits (run_id, batch, recorded, hits, entries) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(run.0)
        .bind(i64::from(batch))
        .bind(now_ms())
        .bind(hits.len() as i64)
        .bind(serde_json::to_string(&entries).expect("entries serialise"))
        .execute(&self.pool)
        .await
        .map_err(db_err("record cache hits"))?;
        Ok(())
    }

    /// The cache hits of one run (or of every run) as `cached` records, in the order
    /// they were recorded.
    pub(super) async fn cache_hit_records(
        &self,
        run: Option<RunId>,
    ) -> StoreResult<Vec<ExecutionRecord>> {
        let batches = self.hit_batches(run).await?;
        let mut ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.entries.iter().map(|e| e.0))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let sources = self.executions_by_id(&ids).await?;
        let mut records = Vec::with_capacity(batches.iter().map(|b| b.entries.len()).sum());
        for batch in batches {
            for (source, stage, instance) in batch.entries {
                let Some(source) = sources.get(&source) else {
                    return Err(StoreError::Corrupt {
                        place: format!("cache_hits of run {}", batch.run_id),
                        value: format!("execution {source} does not exist"),
                    });
                };
                records.push(hit_record(
                    source,
                    batch.run_id,
                    batch.recorded,
                    stage,
                    instance,
                ));
            }
        }
        Ok(records)
    }

    async fn hit_batches(&self, run: Option<RunId>) -> StoreResult<Vec<Batch>> {
        let select = "SELECT run_id, recorded, entries FROM cache_hits";
        let found = match run {
            Some(run) => {
                sqlx::query(AssertSqlSafe(format!(
                    "{select} WHERE run_id = $1 ORDER BY batch"
                )))
                .bind(run.0)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(AssertSqlSafe(format!("{select} ORDER BY run_id, batch")))
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(db_err("cache hits"))?;
        found
            .iter()
            .map(|row| {
                let entries: String = rows::get(row, "entries")?;
                Ok(Batch {
                    run_id: RunId(rows::get(row, "run_id")?),
                    recorded: rows::get(row, "recorded")?,
                    entries: serde_json::from_str(&entries)
                        .map_err(|e| corrupt_json("cache_hits", e))?,
                })
            })
            .collect()
    }

    /// Executions by id, a bulk statement per [`BULK_ROWS`] ids (see `bulk.rs`).
    async fn executions_by_id(&self, ids: &[i64]) -> StoreResult<HashMap<i64, ExecutionRecord>> {
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM {EXECUTION_FROM} \
             WHERE e.id IN (SELECT CAST(value AS BIGINT) FROM {})",
            self.dialect.json_strings(1)
        );
        let mut found = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(BULK_ROWS) {
            let ids: Vec<String> = chunk.iter().map(i64::to_string).collect();
            let rows = sqlx::query(AssertSqlSafe(sql.clone()))
                .bind(serde_json::to_string(&ids).expect("ids serialise"))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("cache hit sources"))?;
            for row in &rows {
                let record = rows::execution(row)?;
                found.insert(record.id.0, record);
            }
        }
        Ok(found)
    }
}

/// A hit as a record: its source's identity and fingerprint, its own run and instance
/// (see [`ExecutionRecord`]).
fn hit_record(
    source: &ExecutionRecord,
    run_id: RunId,
    recorded: i64,
    stage: String,
    instance: String,
) -> ExecutionRecord {
    ExecutionRecord {
        id: source.id,
        run_id,
        stage_key: source.stage_key.clone(),
        stage,
        instance,
        kind: source.kind.clone(),
        kind_version: source.kind_version,
        status: ExecStatus::Cached,
        attempt: 0,
        host: None,
        worker_pid: None,
        slurm_job_id: None,
        device: None,
        started: Some(recorded),
        finished: Some(recorded),
        duration: Some(0),
        fingerprint: source.fingerprint.clone(),
        error: None,
        cached_from: Some(source.id),
    }
}
