-- Cache hits as one compact record per batch of a run, instead of one `executions` row
-- per hit. Mirrors migrations/sqlite/0006_cache_hits.sql; documented in docs/schema.md.
CREATE TABLE cache_hits (
    run_id BIGINT NOT NULL REFERENCES runs (id),
    batch BIGINT NOT NULL,
    recorded BIGINT NOT NULL,
    hits BIGINT NOT NULL,
    entries TEXT NOT NULL,
    PRIMARY KEY (run_id, batch)
);

INSERT INTO cache_hits (run_id, batch, recorded, hits, entries)
SELECT run_id, 0, MIN(started), COUNT(*),
       CAST(json_agg(json_build_array(cached_from, stage, instance) ORDER BY id) AS TEXT)
FROM executions
WHERE status = 'cached'
GROUP BY run_id;

-- Deleting a row checks every foreign key that points at executions (id). Two of them
-- (executions.cached_from, cache.execution_id) have no index, which makes each check a
-- table scan and the delete quadratic: minutes for a store of a few no-op runs of a
-- large sweep. Index them for the delete only.
CREATE INDEX migration_0006_cached_from ON executions (cached_from);
CREATE INDEX migration_0006_cache_execution ON cache (execution_id);
DELETE FROM executions WHERE status = 'cached';
DROP INDEX migration_0006_cached_from;
DROP INDEX migration_0006_cache_execution;
