//! Writing runs and executions: start, worker details, outcome (with the lineage edges and
//! the cache row of a success, in one transaction), metrics and checkpoints.

use super::{db_err, rows, SqlStore};
use crate::hash::StageKey;
use crate::store::liveness::now_ms;
use crate::store::types::*;
use crate::store::{StoreError, StoreResult};
use sqlx::any::Any;
use sqlx::Transaction;

impl SqlStore {
    pub(super) async fn insert_run(&self, run: &NewRun) -> StoreResult<RunId> {
        let row = sqlx::query(
            "INSERT INTO runs (pipeline, file, started, status, host, pid) \
             VALUES ($1, $2, $3, 'running', $4, $5) RETURNING id",
        )
        .bind(&run.pipeline)
        .bind(&run.file)
        .bind(now_ms())
        .bind(&run.host)
        .bind(run.pid)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err("begin run"))?;
        Ok(RunId(rows::get(&row, "id")?))
    }

    pub(super) async fn update_run(&self, run: RunId, status: RunStatus) -> StoreResult<()> {
        sqlx::query("UPDATE runs SET status = $1, finished = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(now_ms())
            .bind(run.0)
            .execute(&self.pool)
            .await
            .map_err(db_err("finish run"))?;
        Ok(())
    }

    pub(super) async fn insert_execution(&self, new: &NewExecution) -> StoreResult<ExecutionId> {
        let row = sqlx::query(
            "INSERT INTO executions (run_id, stage_key, stage, instance, kind, kind_version, \
             status, attempt, started, fingerprint) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9) RETURNING id",
        )
        .bind(new.run_id.0)
        .bind(&new.stage_key.0)
        .bind(&new.stage)
        .bind(&new.instance)
        .bind(&new.kind)
        .bind(i64::from(new.kind_version))
        .bind(i64::from(new.attempt))
        .bind(now_ms())
        .bind(&new.fingerprint)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err("start execution"))?;
        Ok(ExecutionId(rows::get(&row, "id")?))
    }

    pub(super) async fn update_worker(&self, id: ExecutionId, w: &WorkerInfo) -> StoreResult<()> {
        let sql = concat!(
            "UPDATE executions SET status = 'running', ",
            set_worker!(),
            " WHERE id = $5"
        );
        let done = bind_worker(sqlx::query(sql), Some(w))
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(db_err("set worker"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NoSuchExecution(id));
        }
        Ok(())
    }

    /// One transaction; it starts with the UPDATE so SQLite takes the write lock at once
    /// (a read-then-write transaction could fail with SQLITE_BUSY under WAL).
    pub(super) async fn complete_execution(
        &self,
        id: ExecutionId,
        outcome: &Outcome,
        worker: Option<&WorkerInfo>,
    ) -> StoreResult<()> {
        let (status, error) = match outcome {
            Outcome::Succeeded { .. } => (ExecStatus::Succeeded, None),
            Outcome::Failed { error } => (ExecStatus::Failed, Some(error.as_str())),
            Outcome::Interrupted { reason } => (ExecStatus::Interrupted, reason.as_deref()),
        };
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db_err("finish execution"))?;
        let now = now_ms();
        let sql = concat!(
            "UPDATE executions SET ",
            set_worker!(),
            ", status = $5, finished = $6, duration = $6 - started, error = $7 \
             WHERE id = $8 RETURNING stage_key, run_id"
        );
        let row = bind_worker(sqlx::query(sql), worker)
            .bind(status.as_str())
            .bind(now)
            .bind(error)
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err("finish execution"))?
            .ok_or(StoreError::NoSuchExecution(id))?;
        // The run's hold on the key ends with its execution: in this transaction, so a
        // finished key is never left reserved, and the scheduler needs no second write.
        sqlx::query("DELETE FROM reservations WHERE stage_key = $1 AND run_id = $2")
            .bind(rows::get::<String>(&row, "stage_key")?)
            .bind(rows::get::<i64>(&row, "run_id")?)
            .execute(&mut *tx)
            .await
            .map_err(db_err("finish execution"))?;
        if let Outcome::Succeeded {
            outputs,
            inputs,
            metrics,
        } = outcome
        {
            let key = StageKey(rows::get(&row, "stage_key")?);
            record_success(&mut tx, id, &key, outputs, inputs, metrics, now).await?;
        }
        tx.commit().await.map_err(db_err("finish execution"))
    }

    pub(super) async fn insert_metric(
        &self,
        id: ExecutionId,
        name: &str,
        step: Option<u64>,
        value: f64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO metrics (execution_id, name, step, value) VALUES ($1, $2, $3, $4)",
        )
        .bind(id.0)
        .bind(name)
        .bind(step.map(|s| s as i64))
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(db_err("record metric"))?;
        Ok(())
    }

    pub(super) async fn insert_checkpoint(
        &self,
        key: &StageKey,
        step: u64,
        file: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO checkpoints (stage_key, step, file, created) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (stage_key, step) DO UPDATE SET file = excluded.file, \
             created = excluded.created",
        )
        .bind(&key.0)
        .bind(step as i64)
        .bind(file)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(db_err("record checkpoint"))?;
        Ok(())
    }

    pub(super) async fn newest_checkpoint(
        &self,
        key: &StageKey,
    ) -> StoreResult<Option<CheckpointRecord>> {
        let row = sqlx::query(
            "SELECT stage_key, step, file, created FROM checkpoints WHERE stage_key = $1 \
             ORDER BY step DESC, created DESC LIMIT 1",
        )
        .bind(&key.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("latest checkpoint"))?;
        row.as_ref().map(rows::checkpoint).transpose()
    }
}

/// Artifacts, edges, final metrics and the cache row of a successful execution.
async fn record_success(
    tx: &mut Transaction<'_, Any>,
    id: ExecutionId,
    key: &StageKey,
    outputs: &std::collections::BTreeMap<String, crate::protocol::OutputArtifact>,
    inputs: &[InputEdge],
    metrics: &std::collections::BTreeMap<String, f64>,
    now: i64,
) -> StoreResult<()> {
    let place = "record success";
    for (name, out) in outputs {
        sqlx::query(
            "INSERT INTO artifacts (hash, kind, size, created) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (hash) DO NOTHING",
        )
        .bind(&out.hash.0)
        .bind(kind_str(out.kind))
        .bind(out.size as i64)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db_err(place))?;
        sqlx::query(
            "INSERT INTO execution_outputs (execution_id, name, artifact) VALUES ($1, $2, $3)",
        )
        .bind(id.0)
        .bind(name)
        .bind(&out.hash.0)
        .execute(&mut **tx)
        .await
        .map_err(db_err(place))?;
    }
    for edge in inputs {
        sqlx::query(
            "INSERT INTO execution_inputs (execution_id, slot, position, artifact) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id.0)
        .bind(&edge.slot)
        .bind(i64::from(edge.position))
        .bind(&edge.artifact.0)
        .execute(&mut **tx)
        .await
        .map_err(db_err(
            "record input edge (is the input artifact recorded?)",
        ))?;
    }
    for (name, value) in metrics {
        sqlx::query(
            "INSERT INTO metrics (execution_id, name, step, value) VALUES ($1, $2, NULL, $3)",
        )
        .bind(id.0)
        .bind(name)
        .bind(*value)
        .execute(&mut **tx)
        .await
        .map_err(db_err(place))?;
    }
    // The outputs again on the cache row, so a lookup reads one row (migration 0004).
    let cached_outputs: Vec<(&str, &str, &str, i64)> = outputs
        .iter()
        .map(|(name, out)| {
            (
                name.as_str(),
                out.hash.0.as_str(),
                kind_str(out.kind),
                out.size as i64,
            )
        })
        .collect();
    sqlx::query(
        "INSERT INTO cache (stage_key, execution_id, created, outputs) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (stage_key) DO UPDATE SET execution_id = excluded.execution_id, \
         created = excluded.created, outputs = excluded.outputs",
    )
    .bind(&key.0)
    .bind(id.0)
    .bind(now)
    .bind(serde_json::to_string(&cached_outputs).expect("outputs serialise"))
    .execute(&mut **tx)
    .await
    .map_err(db_err(place))?;
    Ok(())
}

/// The columns of where the worker ran, parameters $1–$4 ([`bind_worker`]); a NULL keeps
/// the column. A macro so the statements stay `&'static str`.
macro_rules! set_worker {
    () => {
        "worker_pid = COALESCE($1, worker_pid), host = COALESCE($2, host), \
         device = COALESCE($3, device), slurm_job_id = COALESCE($4, slurm_job_id)"
    };
}
use set_worker;

/// Binds $1–$4 of [`set_worker!`] (all NULL without a worker).
fn bind_worker<'q>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    w: Option<&'q WorkerInfo>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    query
        .bind(w.and_then(|w| w.pid))
        .bind(w.and_then(|w| w.host.as_deref()))
        .bind(w.and_then(|w| w.device.as_deref()))
        .bind(w.and_then(|w| w.slurm_job_id.as_deref()))
}
