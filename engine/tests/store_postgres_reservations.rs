//! Reservations on PostgreSQL: concurrent claims from two store handles (two
//! orchestrators) have exactly one winner; a released key, a dead holder on this host and
//! a silent holder elsewhere are claimed again. Needs HISTODIFF_TEST_PG_URL (see
//! store_postgres_support); without it the tests FAIL.

mod store_postgres_support;

use histodiff_engine::store::sql::StoreOptions;
use histodiff_engine::store::*;
use std::sync::Arc;
use std::time::Duration;
use store_postgres_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_orchestrators_claim_a_key_once_and_dead_or_silent_holders_are_reclaimed() {
    let db = fresh_db().await;
    let dir = tempfile::tempdir().unwrap();
    // Two handles (two pools) on one database, opened at once: one migrates, both work.
    let (a, b) = tokio::join!(
        db.open(dir.path(), StoreOptions::default()),
        db.open(dir.path(), StoreOptions::default())
    );
    let (a, b) = (Arc::new(a), Arc::new(b));
    let me = std::process::id() as i64;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let claimant = Holder {
            slurm_job_id: Some(i.to_string()),
            ..holder(me)
        };
        tasks.push(tokio::spawn(async move {
            store.reserve(&key("k"), &claimant).await.unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap() == Reservation::Reserved {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one of 16 concurrent claims wins");
    let other = Holder {
        run_id: None,
        host: "another-node".into(),
        pid: 1,
        slurm_job_id: Some("77".into()),
    };
    assert!(matches!(
        b.reserve(&key("k"), &other).await.unwrap(),
        Reservation::HeldBy(_)
    ));
    a.release(&key("k"), &holder(me)).await.unwrap();
    assert_eq!(
        b.reserve(&key("k"), &other).await.unwrap(),
        Reservation::Reserved
    );

    // A dead holder on this host is reclaimed at once.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id() as i64;
    child.wait().unwrap();
    assert_eq!(
        a.reserve(&key("d"), &holder(dead)).await.unwrap(),
        Reservation::Reserved
    );
    assert_eq!(
        b.reserve(&key("d"), &holder(me)).await.unwrap(),
        Reservation::Reserved
    );

    // A silent holder elsewhere times out.
    let quick = db
        .open(
            dir.path(),
            StoreOptions {
                reservation_timeout: Duration::from_millis(300),
                ..StoreOptions::default()
            },
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        quick.reserve(&key("k"), &holder(me)).await.unwrap(),
        Reservation::Reserved
    );
    drop((a, b, quick));
    db.drop_now().await;
}
