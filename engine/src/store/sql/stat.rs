//! The stat cache table: (path, size, mtime, inode) → content hash of external data.

use super::bulk::{parse_rows, pipelined_lookup, tuple_fields};
use super::{corrupt_json, db_err, rows, SqlStore, BULK_ROWS};
use crate::store::liveness::now_ms;
use crate::store::types::StatEntry;
use crate::store::StoreResult;
use sqlx::AssertSqlSafe;
use std::collections::HashMap;

impl SqlStore {
    /// The entries of `paths` that the cache has (bulk statements, see `bulk.rs`).
    pub(super) async fn stat_lookup(
        &self,
        paths: &[String],
    ) -> StoreResult<HashMap<String, StatEntry>> {
        let sql = self.dialect.lookup(
            "stat_cache s",
            "s.path",
            "s.path, s.size, s.mtime_ns, s.inode, s.hash",
        );
        let mut found = HashMap::with_capacity(paths.len());
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        pipelined_lookup(&self.readers, &sql, paths, "stat cache lookup", |json| {
            let rows: Vec<(String, i64, i64, i64, String)> =
                parse_rows(json).map_err(|e| corrupt_json("stat_cache", e))?;
            for row in rows {
                let entry = rows::stat_entry_of(row)?;
                found.insert(entry.path.clone(), entry);
            }
            Ok(())
        })
        .await?;
        Ok(found)
    }

    /// Upserts entries, one bulk statement per [`BULK_ROWS`], all in one transaction.
    pub(super) async fn stat_store(&self, entries: &[StatEntry]) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        // `WHERE true`: SQLite's grammar needs it before an upsert's ON CONFLICT.
        let sql = format!(
            "INSERT INTO stat_cache (path, size, mtime_ns, inode, hash, checked) \
             SELECT {}, $2 FROM {} WHERE true \
             ON CONFLICT (path) DO UPDATE SET size = excluded.size, \
             mtime_ns = excluded.mtime_ns, inode = excluded.inode, hash = excluded.hash, \
             checked = excluded.checked",
            tuple_fields(&[false, true, true, true, false]),
            self.dialect.json_tuples(1)
        );
        let now = now_ms();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db_err("stat cache store"))?;
        for chunk in entries.chunks(BULK_ROWS) {
            let tuples: Vec<(&str, i64, i64, i64, &str)> = chunk
                .iter()
                .map(|e| {
                    let (size, inode) = (e.size as i64, e.inode as i64);
                    (e.path.as_str(), size, e.mtime_ns, inode, e.hash.0.as_str())
                })
                .collect();
            sqlx::query(AssertSqlSafe(sql.clone()))
                .bind(serde_json::to_string(&tuples).expect("tuples serialise"))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err("stat cache store"))?;
        }
        tx.commit().await.map_err(db_err("stat cache store"))
    }
}
