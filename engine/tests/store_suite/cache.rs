//! Cache hits: a run's hits are one compact record, read back as `cached` records that
//! point at their source and keep its fingerprint; a hit whose object vanished is no hit.

use crate::store_support::*;
use histodiff_engine::store::*;

/// Hits recorded in a second run, in two batches, read back in order as `cached` records
/// of that run with the source's id, key and fingerprint; lineage by instance leads to
/// the source, and `status` counts them. No `executions` row is written for them.
pub async fn cache_hits_are_one_record_per_batch(backend: &impl Backend) {
    let store = backend.store().await;
    chain(&store, backend.dir()).await;
    let before = store.executions(None).await.unwrap().len();
    let second = begin_run(&store).await;
    let hit = store.cached(&key("fewshot")).await.unwrap().unwrap();
    let first_batch = [NewCacheHit {
        stage: "fewshot",
        instance: "fewshot",
        source: hit.execution_id,
    }];
    let renamed = NewCacheHit {
        stage: "fewshot_copy",
        instance: "fewshot_copy[seed=2]",
        source: hit.execution_id,
    };
    store
        .record_cache_hits(second, 0, &first_batch)
        .await
        .unwrap();
    store
        .record_cache_hits(second, 1, &[renamed])
        .await
        .unwrap();
    let records = store.executions(Some(second)).await.unwrap();
    let names: Vec<&str> = records.iter().map(|r| r.instance.as_str()).collect();
    assert_eq!(names, ["fewshot", "fewshot_copy[seed=2]"]);
    let rec = &records[1];
    assert_eq!(
        (
            rec.status,
            rec.cached_from,
            rec.id,
            rec.run_id,
            rec.stage.as_str()
        ),
        (
            ExecStatus::Cached,
            Some(hit.execution_id),
            hit.execution_id,
            second,
            "fewshot_copy"
        )
    );
    assert_eq!(rec.stage_key, key("fewshot"));
    assert_eq!(
        rec.fingerprint.as_deref(),
        Some(r#"{"instance":"fewshot"}"#)
    );
    assert_eq!(store.executions(None).await.unwrap().len(), before + 2);
    assert_eq!(store.status().await.unwrap().executions["cached"], 2);
    let lineage = store
        .lineage(&LineageTarget::Instance("fewshot".into()))
        .await
        .unwrap();
    assert_eq!(lineage[0].execution_id, hit.execution_id);
    let last = store.last_execution_of("fewshot").await.unwrap().unwrap();
    assert_eq!(
        (last.id, last.status),
        (hit.execution_id, ExecStatus::Succeeded)
    );
}

/// Deleting one output's object turns that key's hit into a miss, and only that key's.
pub async fn a_hit_whose_object_vanished_is_not_a_hit(backend: &impl Backend) {
    let store = backend.store().await;
    let (_, outs) = chain(&store, backend.dir()).await;
    assert!(store.cached(&key("fewshot")).await.unwrap().is_some());
    std::fs::remove_file(store.objects().path_of(&outs[0].hash).unwrap()).unwrap();
    assert!(store.cached(&key("fewshot")).await.unwrap().is_none());
    assert!(store
        .cached(&key("select[ratio=1]"))
        .await
        .unwrap()
        .is_some());
}
