//! The `progress` table (migration 0005): the newest progress report of each execution,
//! overwritten in place, and a run's reports read back for the dashboard.

use super::{db_err, rows, SqlStore};
use crate::store::liveness::now_ms;
use crate::store::types::*;
use crate::store::StoreResult;

impl SqlStore {
    pub(super) async fn upsert_progress(
        &self,
        id: ExecutionId,
        step: u64,
        total: u64,
        message: Option<&str>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO progress (execution_id, step, total, message, updated) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (execution_id) DO UPDATE SET step = excluded.step, \
             total = excluded.total, message = excluded.message, updated = excluded.updated",
        )
        .bind(id.0)
        .bind(clamp(step))
        .bind(clamp(total))
        .bind(message)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(db_err("record progress"))?;
        Ok(())
    }

    pub(super) async fn run_progress(&self, run: RunId) -> StoreResult<Vec<ProgressRecord>> {
        let found = sqlx::query(
            "SELECT p.execution_id, p.step, p.total, p.message, p.updated \
             FROM progress p JOIN executions e ON e.id = p.execution_id \
             WHERE e.run_id = $1 ORDER BY p.execution_id",
        )
        .bind(run.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("progress"))?;
        found.iter().map(rows::progress).collect()
    }
}

/// Steps beyond `i64::MAX` cannot be stored; no stage counts that far.
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
