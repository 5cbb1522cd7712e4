//! Cache hits: a hit is recorded as an execution pointing at its source and keeps the
//! source's fingerprint and lineage; a hit whose object has vanished is no hit.

use crate::store_support::*;
use histodiff_engine::store::*;

/// A hit recorded in a second run reads back as `cached` from the source execution, with
/// the source's fingerprint (the hit itself carries none), and lineage leads to the source.
pub async fn cache_hits_reuse_the_source_fingerprint(backend: &impl Backend) {
    let store = backend.store().await;
    chain(&store, backend.dir()).await;
    let second = begin_run(&store).await;
    let new = NewExecution {
        fingerprint: String::new(),
        ..new_exec(second, "fewshot")
    };
    let hit = store.cached(&new.stage_key).await.unwrap().unwrap();
    store
        .record_cache_hits(&[(new.clone(), hit.execution_id)])
        .await
        .unwrap();
    let rec = store.last_execution_of("fewshot").await.unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.cached_from),
        (ExecStatus::Cached, Some(hit.execution_id))
    );
    assert_eq!(
        rec.fingerprint.as_deref(),
        Some(r#"{"instance":"fewshot"}"#)
    );
    let lineage = store
        .lineage(&LineageTarget::Instance("fewshot".into()))
        .await
        .unwrap();
    assert_eq!(lineage[0].execution_id, hit.execution_id);
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
