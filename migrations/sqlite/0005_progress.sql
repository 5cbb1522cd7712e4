-- The newest progress report of each execution (a stage's `progress` events: step of
-- total), so that `histodiff serve` can show per-stage progress and an ETA while a run
-- goes on. One row per execution, overwritten in place; the scheduler writes at most
-- about once a second per execution, plus the last report, so a fast stage does not
-- write a row per step. Documented in docs/schema.md.
CREATE TABLE progress (
    execution_id INTEGER PRIMARY KEY REFERENCES executions (id),
    step INTEGER NOT NULL,
    total INTEGER NOT NULL,
    message TEXT,
    updated INTEGER NOT NULL
);
