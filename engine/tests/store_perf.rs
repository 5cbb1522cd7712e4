//! The store's share of a no-op re-run of a 10,000-instance sweep: one batched cache
//! lookup and one batched record of the hits, checked for what they return. The time
//! they take is printed for a reader (getrusage of this test binary), never asserted:
//! benches/engine_vs_peers.py measures speed.

mod store_support;

use histodiff_engine::hash::StageKey;
use histodiff_engine::store::*;
use std::time::{Duration, Instant};
use store_support::*;

/// User plus system CPU time of this process (every thread, sqlx's included).
fn cpu_time() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[tokio::test]
async fn a_ten_thousand_instance_no_op_run_is_fast() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_sqlite(dir.path(), Default::default()).await;
    let run_id = begin_run(&store).await;
    let out = output(&store, dir.path(), b"shared output");
    let n = 10_000;
    // Populate the cache directly in one transaction (10,000 real runs would take minutes).
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO artifacts (hash, kind, size, created) VALUES ($1, 'file', 13, 0)")
        .bind(&out.hash.0)
        .execute(&mut *tx)
        .await
        .unwrap();
    for i in 0..n {
        let k = key(&format!("m{i}"));
        let row = sqlx::query("INSERT INTO executions (run_id, stage_key, stage, instance, kind, kind_version, status) VALUES ($1, $2, 'm', $3, 'k', 1, 'succeeded') RETURNING id")
            .bind(run_id.0).bind(&k.0).bind(format!("m[i={i}]"))
            .fetch_one(&mut *tx).await.unwrap();
        let id: i64 = sqlx::Row::get(&row, "id");
        sqlx::query(
            "INSERT INTO execution_outputs (execution_id, name, artifact) VALUES ($1, 'out', $2)",
        )
        .bind(id)
        .bind(&out.hash.0)
        .execute(&mut *tx)
        .await
        .unwrap();
        // Every key but the last gets its outputs on the cache row, as the store writes
        // it (migration 0004); the last is a row a foreign writer left without them.
        let outputs = (i + 1 < n).then(|| format!(r#"[["out","{}","file",13]]"#, out.hash.0));
        sqlx::query(
            "INSERT INTO cache (stage_key, execution_id, created, outputs) VALUES ($1, $2, 0, $3)",
        )
        .bind(&k.0)
        .bind(id)
        .bind(outputs)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    let keys: Vec<StageKey> = (0..n).map(|i| key(&format!("m{i}"))).collect();
    let names: Vec<String> = (0..n).map(|i| format!("m[i={i}]")).collect();
    let second = begin_run(&store).await;
    let (started, cpu_started) = (Instant::now(), cpu_time());
    let hits = store.cached_many(&keys).await.unwrap();
    let looked_up = started.elapsed();
    let records: Vec<NewCacheHit> = (0..n - 1)
        .map(|i| NewCacheHit {
            stage: "m",
            instance: &names[i],
            source: hits[&keys[i]].execution_id,
        })
        .collect();
    store.record_cache_hits(second, 0, &records).await.unwrap();
    let (total, cpu) = (started.elapsed(), cpu_time() - cpu_started);
    eprintln!(
        "cached_many({n}): {looked_up:?}; with record_cache_hits: {total:?} wall, {cpu:?} CPU"
    );
    assert_eq!(hits.len(), n - 1, "the row without outputs is not a hit");
    assert!(!hits.contains_key(&keys[n - 1]));
    assert_eq!(hits[&keys[7]].outputs["out"], out);
}
