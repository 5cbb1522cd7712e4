//! The cache (stage key → successful execution and its outputs) and reservations (who is
//! executing a key right now), so identical keys run once across sweep members and
//! across concurrent runs on the same store.

use super::bulk::pipelined_lookup;
use super::{corrupt_json, db_err, placeholders, rows, SqlStore, MAX_PARAMS};
use crate::hash::{ArtifactHash, StageKey};
use crate::store::liveness::{hostname, now_ms, pid_alive};
use crate::store::types::*;
use crate::store::StoreResult;
use sqlx::AssertSqlSafe;
use std::borrow::Cow;
use std::collections::HashMap;

/// One row of a cache lookup's answer: key, execution, outputs (see `lookup_cache`),
/// borrowed from the answer's text where it has no escapes.
#[derive(serde::Deserialize)]
struct FoundRow<'a>(
    #[serde(borrow)] Cow<'a, str>,
    i64,
    #[serde(borrow)] Option<Vec<FoundOutput<'a>>>,
);

/// One output of a [`FoundRow`]: name, hash, kind, size.
#[derive(serde::Deserialize)]
struct FoundOutput<'a>(
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    i64,
);

/// How often `reserve` retries when the row changes under it (released or reclaimed).
const RESERVE_TRIES: usize = 5;

impl SqlStore {
    /// Cache rows and their outputs for many keys (bulk statements, see `bulk.rs`): while
    /// the database answers for one chunk of keys, the previous chunk's answer is parsed
    /// and its objects are checked. A key asked twice answers twice; the map keeps one.
    pub(super) async fn lookup_cache(
        &self,
        keys: &[StageKey],
    ) -> StoreResult<HashMap<StageKey, CachedExecution>> {
        let d = self.dialect;
        let columns = format!("c.stage_key, c.execution_id, {}", d.json_value("c.outputs"));
        let sql = d.lookup("cache c", "c.stage_key", &columns);
        let mut hits: HashMap<StageKey, CachedExecution> = HashMap::with_capacity(keys.len());
        let keys: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
        pipelined_lookup(&self.readers, &sql, keys, "cache lookup", |found| {
            self.absorb_hits(found, &mut hits)
        })
        .await?;
        Ok(hits)
    }

    /// Adds the hits of one bulk answer whose objects are all present. A hit is only as
    /// good as its objects: one deleted by hand (or lost with a disk) makes the key run
    /// again, which puts the object back.
    fn absorb_hits(
        &self,
        found: &str,
        hits: &mut HashMap<StageKey, CachedExecution>,
    ) -> StoreResult<()> {
        let rows: Vec<FoundRow<'_>> =
            serde_json::from_str(found).map_err(|e| corrupt_json("cache", e))?;
        hits.reserve(rows.len());
        for FoundRow(key, id, outputs) in rows {
            // A row without its outputs column (see docs/schema.md) is not a hit.
            let Some(outputs) = outputs else { continue };
            let present = |o: &FoundOutput<'_>| self.objects.contains_hex(&o.1);
            if !outputs.iter().all(present) {
                continue;
            }
            let mut hit = CachedExecution {
                execution_id: ExecutionId(id),
                outputs: Default::default(),
            };
            for FoundOutput(name, hash, kind, size) in outputs {
                let output = rows::output_of(hash.into_owned(), &kind, size)?;
                hit.outputs.insert(name.into_owned(), output);
            }
            hits.insert(StageKey(key.into_owned()), hit);
        }
        Ok(())
    }

    /// Insert-or-inspect, reclaiming a dead or silent holder, a few times at most.
    pub(super) async fn try_reserve(
        &self,
        key: &StageKey,
        holder: &Holder,
    ) -> StoreResult<Reservation> {
        for _ in 0..RESERVE_TRIES {
            if self.insert_reservation(key, holder).await? {
                return Ok(Reservation::Reserved);
            }
            let Some((current, heartbeat)) = self.reservation_of(key).await? else {
                continue; // released in between: try to insert again
            };
            if !self.is_stale(&current, heartbeat) {
                return Ok(Reservation::HeldBy(current));
            }
            self.reclaim(key, &current, heartbeat).await?;
        }
        match self.reservation_of(key).await? {
            Some((current, _)) => Ok(Reservation::HeldBy(current)),
            None => Ok(Reservation::HeldBy(holder.clone())),
        }
    }

    /// The atomic step: exactly one concurrent caller inserts the row.
    async fn insert_reservation(&self, key: &StageKey, holder: &Holder) -> StoreResult<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO reservations (stage_key, run_id, host, pid, slurm_job_id, heartbeat, \
             created) VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (stage_key) DO NOTHING",
        )
        .bind(&key.0)
        .bind(holder.run_id.map(|r| r.0))
        .bind(&holder.host)
        .bind(holder.pid)
        .bind(holder.slurm_job_id.as_deref())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err("reserve"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn reservation_of(&self, key: &StageKey) -> StoreResult<Option<(Holder, i64)>> {
        let row = sqlx::query(
            "SELECT run_id, host, pid, slurm_job_id, heartbeat FROM reservations \
             WHERE stage_key = $1",
        )
        .bind(&key.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("reserve"))?;
        match row {
            Some(row) => Ok(Some((rows::holder(&row)?, rows::get(&row, "heartbeat")?))),
            None => Ok(None),
        }
    }

    /// Dead on this host, or silent for longer than the timeout anywhere.
    fn is_stale(&self, holder: &Holder, heartbeat: i64) -> bool {
        let silent_ms = now_ms().saturating_sub(heartbeat);
        let timeout_ms = self.options.reservation_timeout.as_millis() as i64;
        (holder.host == hostname() && !pid_alive(holder.pid)) || silent_ms > timeout_ms
    }

    /// Deletes the stale row only if it is still the one inspected (compare-and-delete,
    /// so two reclaimers cannot both win), and marks its orphaned executions interrupted.
    async fn reclaim(&self, key: &StageKey, stale: &Holder, heartbeat: i64) -> StoreResult<()> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db_err("reclaim reservation"))?;
        let gone = sqlx::query(
            "DELETE FROM reservations WHERE stage_key = $1 AND host = $2 AND pid = $3 \
             AND heartbeat = $4",
        )
        .bind(&key.0)
        .bind(&stale.host)
        .bind(stale.pid)
        .bind(heartbeat)
        .execute(&mut *tx)
        .await
        .map_err(db_err("reclaim reservation"))?;
        if gone.rows_affected() == 1 {
            let why = format!(
                "abandoned: orchestrator {} on {} stopped",
                stale.pid, stale.host
            );
            // `status <> 'cached'` is implied, but SQLite needs it written to use the partial
            // index on stage_key (migration 0002).
            sqlx::query(
                "UPDATE executions SET status = 'interrupted', finished = $1, error = $2 \
                 WHERE stage_key = $3 AND status IN ('pending', 'running') \
                 AND status <> 'cached'",
            )
            .bind(now_ms())
            .bind(why)
            .bind(&key.0)
            .execute(&mut *tx)
            .await
            .map_err(db_err("reclaim reservation"))?;
        }
        tx.commit().await.map_err(db_err("reclaim reservation"))
    }

    pub(super) async fn beat(&self, keys: &[StageKey], holder: &Holder) -> StoreResult<()> {
        for chunk in keys.chunks(MAX_PARAMS) {
            let sql = format!(
                "UPDATE reservations SET heartbeat = $1 WHERE host = $2 AND pid = $3 \
                 AND stage_key IN ({})",
                placeholders(4, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql))
                .bind(now_ms())
                .bind(holder.host.clone())
                .bind(holder.pid);
            for key in chunk {
                q = q.bind(key.0.clone());
            }
            q.execute(&self.pool).await.map_err(db_err("heartbeat"))?;
        }
        Ok(())
    }

    pub(super) async fn drop_reservation(
        &self,
        key: &StageKey,
        holder: &Holder,
    ) -> StoreResult<()> {
        sqlx::query("DELETE FROM reservations WHERE stage_key = $1 AND host = $2 AND pid = $3")
            .bind(&key.0)
            .bind(&holder.host)
            .bind(holder.pid)
            .execute(&self.pool)
            .await
            .map_err(db_err("release"))?;
        Ok(())
    }

    pub(super) async fn referenced_artifacts(
        &self,
    ) -> StoreResult<std::collections::HashSet<ArtifactHash>> {
        let rows = sqlx::query("SELECT hash FROM artifacts")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("referenced artifacts"))?;
        rows.iter()
            .map(|r| Ok(ArtifactHash(rows::get(r, "hash")?)))
            .collect()
    }
}
