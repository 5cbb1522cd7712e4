-- Each cache row carries its execution's outputs, so a cache lookup reads one row per
-- key instead of joining execution_outputs and artifacts: the three layers of 10,000
-- lookups of a no-op run of a 10,000-member sweep spent half their time in that join.
-- A JSON array of [name, hash, kind, size], the same facts as execution_outputs joined
-- with artifacts (which stay the lineage record); `[]` for an execution without outputs.
ALTER TABLE cache ADD COLUMN outputs TEXT;
UPDATE cache SET outputs = (
    SELECT json_group_array(json_array(o.name, a.hash, a.kind, a.size))
    FROM execution_outputs o JOIN artifacts a ON a.hash = o.artifact
    WHERE o.execution_id = cache.execution_id
);
