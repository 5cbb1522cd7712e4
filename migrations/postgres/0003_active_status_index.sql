-- The only query by status looks for executions in progress (`histodiff status`); the
-- full status index gained an entry for each of the 30,000 cache-hit rows a no-op run of
-- a 10,000-member sweep records, a quarter of what recording them cost. It now holds the
-- executions in progress only; a query uses it with `status IN ('pending', 'running')`.
DROP INDEX executions_status;
CREATE INDEX executions_active ON executions (status) WHERE status IN ('pending', 'running');
