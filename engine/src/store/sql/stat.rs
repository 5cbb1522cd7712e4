//! The stat cache table: (path, size, mtime, inode) → content hash of external data.

use super::{db_err, placeholders, rows, value_rows, SqlStore, MAX_PARAMS};
use crate::store::liveness::now_ms;
use crate::store::types::StatEntry;
use crate::store::StoreResult;
use sqlx::AssertSqlSafe;
use std::collections::HashMap;

/// Columns written per entry.
const COLS: usize = 6;

impl SqlStore {
    pub(super) async fn stat_lookup(
        &self,
        paths: &[String],
    ) -> StoreResult<HashMap<String, StatEntry>> {
        let mut found = HashMap::with_capacity(paths.len());
        for chunk in paths.chunks(MAX_PARAMS) {
            let sql = format!(
                "SELECT path, size, mtime_ns, inode, hash FROM stat_cache WHERE path IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for p in chunk {
                q = q.bind(p.clone());
            }
            for row in q
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("stat cache lookup"))?
            {
                let entry = rows::stat_entry(&row)?;
                found.insert(entry.path.clone(), entry);
            }
        }
        Ok(found)
    }

    /// Upserts entries, many rows per statement, all in one transaction.
    pub(super) async fn stat_store(&self, entries: &[StatEntry]) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db_err("stat cache store"))?;
        for chunk in entries.chunks(MAX_PARAMS / COLS) {
            let sql = format!(
                "INSERT INTO stat_cache (path, size, mtime_ns, inode, hash, checked) VALUES {} \
                 ON CONFLICT (path) DO UPDATE SET size = excluded.size, \
                 mtime_ns = excluded.mtime_ns, inode = excluded.inode, hash = excluded.hash, \
                 checked = excluded.checked",
                value_rows(chunk.len(), COLS)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for e in chunk {
                q = q
                    .bind(e.path.clone())
                    .bind(e.size as i64)
                    .bind(e.mtime_ns)
                    .bind(e.inode as i64)
                    .bind(e.hash.0.clone())
                    .bind(now);
            }
            q.execute(&mut *tx)
                .await
                .map_err(db_err("stat cache store"))?;
        }
        tx.commit().await.map_err(db_err("stat cache store"))
    }
}
