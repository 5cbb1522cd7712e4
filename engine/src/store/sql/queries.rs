//! Read-only queries for the CLI: executions, runs, artifacts, lineage, status, metrics.
//! The lineage query is the recursive SQL documented in docs/schema.md.

use super::bulk::strings_param;
use super::rows::{EXECUTION_COLUMNS, EXECUTION_FROM, RUN_COLUMNS};
use super::{db_err, placeholders, rows, SqlStore, BULK_ROWS, MAX_PARAMS};
use crate::hash::{ArtifactHash, StageKey};
use crate::store::types::*;
use crate::store::StoreResult;
use sqlx::any::AnyRow;
use sqlx::AssertSqlSafe;
use std::collections::BTreeMap;

/// Artifacts upstream of a start set (`start(hash)`), through successful executions.
/// `{start}` is replaced by a query yielding the start hashes from `$1`.
const LINEAGE_SQL: &str = "WITH RECURSIVE upstream(hash) AS ( \
        {start} \
      UNION \
        SELECT i.artifact FROM upstream u \
        JOIN execution_outputs o ON o.artifact = u.hash \
        JOIN executions e ON e.id = o.execution_id AND e.status = 'succeeded' \
        JOIN execution_inputs i ON i.execution_id = e.id \
    ) \
    SELECT DISTINCT e.id, e.instance, e.stage, e.kind, e.stage_key \
    FROM upstream u \
    JOIN execution_outputs o ON o.artifact = u.hash \
    JOIN executions e ON e.id = o.execution_id AND e.status = 'succeeded' \
    ORDER BY e.id DESC";

/// Start set for an artifact.
const START_ARTIFACT: &str = "SELECT CAST($1 AS TEXT)";
/// Start set for an instance: outputs of its newest successful execution (a cache hit
/// reused one, so the newest that ran is the one whose outputs it has).
const START_INSTANCE: &str = "SELECT o.artifact FROM execution_outputs o WHERE o.execution_id = ( \
        SELECT x.id FROM executions x WHERE x.instance = $1 AND x.status = 'succeeded' \
        ORDER BY x.id DESC LIMIT 1)";

impl SqlStore {
    async fn executions_where(&self, clause: &str, arg: Option<i64>) -> StoreResult<Vec<AnyRow>> {
        let sql = format!("SELECT {EXECUTION_COLUMNS} FROM {EXECUTION_FROM} {clause}");
        let mut q = sqlx::query(AssertSqlSafe(sql));
        if let Some(arg) = arg {
            q = q.bind(arg);
        }
        q.fetch_all(&self.pool).await.map_err(db_err("executions"))
    }

    pub(super) async fn newest_execution_of(
        &self,
        instance: &str,
    ) -> StoreResult<Option<ExecutionRecord>> {
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM {EXECUTION_FROM} WHERE e.instance = $1 \
             ORDER BY e.id DESC LIMIT 1"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(instance)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("last execution"))?;
        row.as_ref().map(rows::execution).transpose()
    }

    /// The newest execution of each instance, one bulk statement per [`BULK_ROWS`]
    /// names (see `bulk.rs`): `plan` asks this for every instance whose key changed.
    pub(super) async fn newest_executions_of(
        &self,
        instances: &[String],
    ) -> StoreResult<std::collections::HashMap<String, ExecutionRecord>> {
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM {EXECUTION_FROM} WHERE e.id IN ( \
             SELECT MAX(x.id) FROM executions x \
             WHERE x.instance IN (SELECT value FROM {}) GROUP BY x.instance)",
            self.dialect.json_strings(1)
        );
        let mut found = std::collections::HashMap::with_capacity(instances.len());
        for chunk in instances.chunks(BULK_ROWS) {
            let rows = sqlx::query(AssertSqlSafe(sql.clone()))
                .bind(strings_param(chunk.iter().map(String::as_str)))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("last executions"))?;
            for row in &rows {
                let record = rows::execution(row)?;
                found.insert(record.instance.clone(), record);
            }
        }
        Ok(found)
    }

    pub(super) async fn list_executions(
        &self,
        run: Option<RunId>,
    ) -> StoreResult<Vec<ExecutionRecord>> {
        let found = match run {
            Some(run) => {
                self.executions_where("WHERE e.run_id = $1 ORDER BY e.id", Some(run.0))
                    .await?
            }
            None => self.executions_where("ORDER BY e.id", None).await?,
        };
        let mut records: Vec<ExecutionRecord> = found
            .iter()
            .map(rows::execution)
            .collect::<StoreResult<_>>()?;
        let hits = self.cache_hit_records(run).await?;
        if !hits.is_empty() {
            // Oldest first: a hit is as old as the moment it was recorded; the sort is
            // stable, so executions started in the same millisecond keep their id order.
            records.extend(hits);
            records.sort_by_key(|e| (e.run_id.0, e.started.unwrap_or(0)));
        }
        Ok(records)
    }

    /// Executions pending or running now (the partial index of migration 0003).
    pub(super) async fn active_executions(&self) -> StoreResult<Vec<ExecutionRecord>> {
        let found = self
            .executions_where(
                "WHERE e.status IN ('pending', 'running') ORDER BY e.id",
                None,
            )
            .await?;
        found.iter().map(rows::execution).collect()
    }

    pub(super) async fn one_execution(
        &self,
        id: ExecutionId,
    ) -> StoreResult<Option<ExecutionRecord>> {
        let found = self.executions_where("WHERE e.id = $1", Some(id.0)).await?;
        found.first().map(rows::execution).transpose()
    }

    pub(super) async fn trace_lineage(
        &self,
        target: &LineageTarget,
    ) -> StoreResult<Vec<LineageNode>> {
        let (start, arg) = match target {
            LineageTarget::Artifact(h) => (START_ARTIFACT, h.0.as_str()),
            LineageTarget::Instance(name) => (START_INSTANCE, name.as_str()),
        };
        let sql = LINEAGE_SQL.replace("{start}", start);
        let found = sqlx::query(AssertSqlSafe(sql))
            .bind(arg)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("lineage"))?;
        let mut nodes = Vec::with_capacity(found.len());
        for row in &found {
            nodes.push(LineageNode {
                execution_id: ExecutionId(rows::get(row, "id")?),
                instance: rows::get(row, "instance")?,
                stage: rows::get(row, "stage")?,
                kind: rows::get(row, "kind")?,
                stage_key: StageKey(rows::get(row, "stage_key")?),
                inputs: Vec::new(),
                outputs: BTreeMap::new(),
            });
        }
        self.attach_edges(&mut nodes).await?;
        Ok(nodes)
    }

    /// Fills each node's input and output edges, a few hundred executions per query.
    async fn attach_edges(&self, nodes: &mut [LineageNode]) -> StoreResult<()> {
        let index: BTreeMap<i64, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.execution_id.0, i))
            .collect();
        let ids: Vec<i64> = index.keys().copied().collect();
        for chunk in ids.chunks(MAX_PARAMS) {
            let list = placeholders(1, chunk.len());
            let inputs = format!(
                "SELECT execution_id, slot, position, artifact FROM execution_inputs \
                 WHERE execution_id IN ({list}) ORDER BY execution_id, slot, position"
            );
            for row in self.fetch_ids(inputs, chunk).await? {
                let node = index[&rows::get::<i64>(&row, "execution_id")?];
                nodes[node].inputs.push(rows::input_edge(&row)?);
            }
            let outputs = format!(
                "SELECT execution_id, name, artifact FROM execution_outputs \
                 WHERE execution_id IN ({list})"
            );
            for row in self.fetch_ids(outputs, chunk).await? {
                let node = index[&rows::get::<i64>(&row, "execution_id")?];
                let hash = ArtifactHash(rows::get(&row, "artifact")?);
                nodes[node].outputs.insert(rows::get(&row, "name")?, hash);
            }
        }
        Ok(())
    }

    async fn fetch_ids(&self, sql: String, ids: &[i64]) -> StoreResult<Vec<AnyRow>> {
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(*id);
        }
        q.fetch_all(&self.pool)
            .await
            .map_err(db_err("lineage edges"))
    }

    pub(super) async fn one_artifact(
        &self,
        hash: &ArtifactHash,
    ) -> StoreResult<Option<ArtifactRecord>> {
        let row = sqlx::query("SELECT hash, kind, size, created FROM artifacts WHERE hash = $1")
            .bind(&hash.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("artifact"))?;
        row.as_ref().map(rows::artifact).transpose()
    }

    /// Recorded artifacts whose hash starts with `prefix` (lowercase hex), at most `limit`:
    /// a range scan of the primary key, since every such hash sorts between the prefix
    /// and the prefix followed by `g`, which is above every hex digit.
    pub(super) async fn artifacts_with_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> StoreResult<Vec<ArtifactHash>> {
        let found = sqlx::query(
            "SELECT hash FROM artifacts WHERE hash >= $1 AND hash < $2 ORDER BY hash LIMIT $3",
        )
        .bind(prefix)
        .bind(format!("{prefix}g"))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("artifacts by prefix"))?;
        found
            .iter()
            .map(|row| Ok(ArtifactHash(rows::get(row, "hash")?)))
            .collect()
    }

    pub(super) async fn list_runs(&self) -> StoreResult<Vec<RunRecord>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY id DESC");
        let found = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("runs"))?;
        found.iter().map(rows::run).collect()
    }

    pub(super) async fn list_metrics(
        &self,
        id: ExecutionId,
    ) -> StoreResult<Vec<(String, Option<u64>, f64)>> {
        let found = sqlx::query(
            "SELECT name, step, value FROM metrics WHERE execution_id = $1 ORDER BY name, step",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("metrics"))?;
        found
            .iter()
            .map(|r| {
                let step: Option<i64> = rows::get(r, "step")?;
                Ok((
                    rows::get(r, "name")?,
                    step.map(|s| s as u64),
                    rows::get(r, "value")?,
                ))
            })
            .collect()
    }

    async fn count(&self, sql: &'static str) -> StoreResult<i64> {
        let row = sqlx::query(sql)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err("status"))?;
        rows::get(&row, "n")
    }

    pub(super) async fn summary(&self) -> StoreResult<StoreStatus> {
        let mut status = StoreStatus {
            runs: self.count("SELECT COUNT(*) AS n FROM runs").await?,
            artifacts: self.count("SELECT COUNT(*) AS n FROM artifacts").await?,
            artifact_bytes: self
                .count("SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) AS n FROM artifacts")
                .await?,
            cached_keys: self.count("SELECT COUNT(*) AS n FROM cache").await?,
            ..StoreStatus::default()
        };
        let by_status = sqlx::query("SELECT status, COUNT(*) AS n FROM executions GROUP BY status")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("status"))?;
        for row in &by_status {
            status
                .executions
                .insert(rows::get(row, "status")?, rows::get(row, "n")?);
        }
        let hits = self
            .count("SELECT CAST(COALESCE(SUM(hits), 0) AS BIGINT) AS n FROM cache_hits")
            .await?;
        if hits > 0 {
            status.executions.insert("cached".into(), hits);
        }
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running' ORDER BY id");
        let active = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("status"))?;
        status.active_runs = active.iter().map(rows::run).collect::<StoreResult<_>>()?;
        let held = sqlx::query(
            "SELECT stage_key, run_id, host, pid, slurm_job_id, heartbeat, created \
             FROM reservations ORDER BY created",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("status"))?;
        for row in &held {
            status.reservations.push(ReservationRecord {
                stage_key: StageKey(rows::get(row, "stage_key")?),
                holder: rows::holder(row)?,
                heartbeat: rows::get(row, "heartbeat")?,
                created: rows::get(row, "created")?,
            });
        }
        let running = self
            .executions_where(
                "WHERE e.status IN ('pending', 'running') ORDER BY e.id",
                None,
            )
            .await?;
        status.in_flight = running
            .iter()
            .map(rows::execution)
            .collect::<StoreResult<_>>()?;
        Ok(status)
    }
}
