-- Cache hits as one compact record per batch of a run, instead of one `executions` row
-- per hit. A no-op re-run of a 10,000-member sweep used to insert 30,000 rows (and their
-- index entries) that said only "this instance reused that execution"; it now writes a
-- few rows of JSON. `entries` is a JSON array of [source execution id, stage, instance],
-- in the order the hits were found. Documented in docs/schema.md.
CREATE TABLE cache_hits (
    run_id INTEGER NOT NULL REFERENCES runs (id),
    batch INTEGER NOT NULL,
    recorded INTEGER NOT NULL,
    hits INTEGER NOT NULL,
    entries TEXT NOT NULL,
    PRIMARY KEY (run_id, batch)
);

-- The hits earlier runs recorded as `cached` executions move into the new table, so
-- that every reader has one representation to read.
INSERT INTO cache_hits (run_id, batch, recorded, hits, entries)
SELECT run_id, 0, MIN(started), COUNT(*),
       json_group_array(json_array(cached_from, stage, instance))
FROM (SELECT run_id, started, cached_from, stage, instance FROM executions
      WHERE status = 'cached' ORDER BY id)
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
