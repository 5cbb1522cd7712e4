//! Checkpoints (the newest per stage key, in the key's own directory) and the status
//! summary `histodiff status` prints.

use crate::store_support::*;
use histodiff_engine::store::*;

/// The newest checkpoint of a key wins and other keys do not interfere; status counts
/// runs, artifacts, cached keys, executions by status, what is in flight and active runs.
pub async fn checkpoints_and_status(backend: &impl Backend) {
    let store = backend.store().await;
    let k = key("train-diffusion");
    assert!(store.latest_checkpoint(&k).await.unwrap().is_none());
    for (step, file) in [(100, "step-100.safetensors"), (200, "step-200.safetensors")] {
        store.record_checkpoint(&k, step, file).await.unwrap();
    }
    store
        .record_checkpoint(&key("other"), 300, "x")
        .await
        .unwrap();
    let latest = store.latest_checkpoint(&k).await.unwrap().unwrap();
    assert_eq!(
        (latest.step, latest.file.as_str()),
        (200, "step-200.safetensors")
    );
    assert!(store
        .layout()
        .checkpoint_dir(&k)
        .ends_with(format!("checkpoints/{}", k.0)));
    chain(&store, backend.dir()).await;
    let running = begin_run(&store).await;
    store
        .start_execution(&new_exec(running, "report"))
        .await
        .unwrap();
    let status = store.status().await.unwrap();
    assert_eq!(
        (status.runs, status.artifacts, status.cached_keys),
        (2, 3, 3)
    );
    assert_eq!(status.executions["succeeded"], 3);
    assert_eq!(status.in_flight.len(), 1);
    assert_eq!(status.active_runs.len(), 2);
}
