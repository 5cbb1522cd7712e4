-- The newest progress report of each execution (a stage's `progress` events: step of
-- total), so that `histodiff serve` can show per-stage progress and an ETA while a run
-- goes on. One row per execution, overwritten in place; the scheduler writes at most
-- about once a second per execution, plus the last report, so a fast stage does not
-- write a row per step. Mirrors migrations/sqlite/0005_progress.sql.
CREATE TABLE progress (
    execution_id BIGINT PRIMARY KEY REFERENCES executions (id),
    step BIGINT NOT NULL,
    total BIGINT NOT NULL,
    message TEXT,
    updated BIGINT NOT NULL
);
