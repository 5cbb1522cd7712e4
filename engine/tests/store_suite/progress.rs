//! The `progress` table (migration 0005): the newest step an execution reported, one row
//! per execution, read per run for the dashboard.

use crate::store_support::*;
use histodiff_engine::store::*;

/// One row per execution, overwritten; read back per run, other runs left out. Pending
/// executions count as in flight.
pub async fn progress_is_upserted_and_read_per_run(backend: &impl Backend) {
    let store = backend.store().await;
    let first = begin_run(&store).await;
    let second = begin_run(&store).await;
    let a = store.start_execution(&new_exec(first, "a")).await.unwrap();
    let b = store.start_execution(&new_exec(first, "b")).await.unwrap();
    let other = store.start_execution(&new_exec(second, "c")).await.unwrap();
    assert!(store.progress(first).await.unwrap().is_empty());
    let in_flight = store.in_flight().await.unwrap();
    let active: Vec<_> = in_flight.iter().map(|e| e.id).collect();
    assert_eq!(
        active,
        vec![a, b, other],
        "pending executions are in flight"
    );

    store
        .record_progress(a, 1, 10, Some("warming up"))
        .await
        .unwrap();
    let before = store.progress(first).await.unwrap()[0].updated;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    store.record_progress(a, 7, 10, None).await.unwrap();
    store
        .record_progress(b, 3, 4, Some("epoch 3"))
        .await
        .unwrap();
    store.record_progress(other, 1, 2, None).await.unwrap();

    let rows = store.progress(first).await.unwrap();
    assert_eq!(rows.len(), 2, "one row per execution: {rows:?}");
    assert_eq!(
        (rows[0].execution_id, rows[0].step, rows[0].total),
        (a, 7, 10)
    );
    assert_eq!(
        rows[0].message, None,
        "the newest report replaces the message"
    );
    assert!(rows[0].updated > before, "updated is stamped on each write");
    assert_eq!((rows[1].execution_id, rows[1].step), (b, 3));
    assert_eq!(rows[1].message.as_deref(), Some("epoch 3"));
    let rows = store.progress(second).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].execution_id, other);
}

/// Progress of an execution that does not exist is refused (foreign key).
pub async fn progress_of_an_unknown_execution_is_refused(backend: &impl Backend) {
    let store = backend.store().await;
    let err = store
        .record_progress(ExecutionId(987_654), 1, 2, None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Db { .. }), "{err}");
}
