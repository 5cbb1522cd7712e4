//! The store's behaviour, each check written once and run against both backends: SQLite
//! (store_sqlite.rs) and PostgreSQL (store_postgres.rs). A check takes a fresh
//! [`Backend`](crate::store_support::Backend) and opens as many handles on it as it needs.
//! What only one dialect has (WAL mode, the shared-directory requirement, the schema
//! compared column for column) stays in that dialect's runner.

pub mod cache;
pub mod checkpoints;
pub mod executions;
pub mod lineage;
pub mod progress;
pub mod reservations;
pub mod stat_cache;

/// Declares one `#[tokio::test]` per check of the suite against the backend type given,
/// so that a check added here runs on both backends. Multi-threaded: the concurrency
/// checks need real parallelism.
macro_rules! store_checks {
    ($backend:ty) => {
        $crate::store_suite::store_checks!(@each $backend;
            executions::a_success_round_trips_into_the_cache,
            executions::only_successes_are_cached,
            executions::a_failed_success_write_rolls_back_and_a_crash_leaves_only_garbage,
            cache::cache_hits_are_one_record_per_batch,
            cache::a_hit_whose_object_vanished_is_not_a_hit,
            lineage::lineage_follows_edges_upstream,
            lineage::edges_lead_both_ways,
            lineage::artifacts_are_found_by_hash_prefix,
            progress::progress_is_upserted_and_read_per_run,
            progress::progress_of_an_unknown_execution_is_refused,
            checkpoints::checkpoints_and_status,
            reservations::two_handles_claim_a_key_exactly_once,
            reservations::a_dead_holder_on_this_host_is_reclaimed,
            reservations::a_silent_holder_elsewhere_times_out_unless_it_beats,
            stat_cache::a_file_is_read_once,
            stat_cache::a_recent_file_is_not_trusted_to_the_cache,
            stat_cache::a_large_directory_is_rehashed_without_reading_files,
            stat_cache::stat_entries_are_upserted_and_read_back,
        );
    };
    (@each $backend:ty; $($topic:ident :: $check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let backend = <$backend as $crate::store_support::Backend>::start().await;
                $crate::store_suite::$topic::$check(&backend).await;
                $crate::store_support::Backend::finish(backend).await;
            }
        )*
    };
}
pub(crate) use store_checks;
