-- histodiff store schema, version 1 (SQLite). Documented in docs/schema.md: these tables
-- are a supported interface. Never edit an applied migration; add a new one.
-- Timestamps are INTEGER milliseconds since the Unix epoch; JSON is TEXT; hashes are
-- 64-digit lowercase hex TEXT. migrations/postgres/ mirrors this file.

CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    pipeline TEXT NOT NULL,
    file TEXT NOT NULL,
    started INTEGER NOT NULL,
    finished INTEGER,
    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted')),
    host TEXT NOT NULL,
    pid INTEGER NOT NULL
);

CREATE TABLE executions (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs (id),
    stage_key TEXT NOT NULL,
    stage TEXT NOT NULL,
    instance TEXT NOT NULL,
    kind TEXT NOT NULL,
    kind_version INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN
        ('pending', 'running', 'succeeded', 'failed', 'interrupted', 'cached')),
    attempt INTEGER NOT NULL DEFAULT 1,
    host TEXT,
    worker_pid INTEGER,
    slurm_job_id TEXT,
    device TEXT,
    started INTEGER,
    finished INTEGER,
    duration INTEGER,
    fingerprint TEXT,
    error TEXT,
    cached_from INTEGER REFERENCES executions (id)
);
CREATE INDEX executions_instance ON executions (instance, id);
CREATE INDEX executions_stage_key ON executions (stage_key);
CREATE INDEX executions_run ON executions (run_id);
CREATE INDEX executions_status ON executions (status);

CREATE TABLE artifacts (
    hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('file', 'dir')),
    size INTEGER NOT NULL,
    created INTEGER NOT NULL
);

CREATE TABLE execution_inputs (
    execution_id INTEGER NOT NULL REFERENCES executions (id),
    slot TEXT NOT NULL,
    position INTEGER NOT NULL,
    artifact TEXT NOT NULL REFERENCES artifacts (hash),
    PRIMARY KEY (execution_id, slot, position)
);
CREATE INDEX execution_inputs_artifact ON execution_inputs (artifact);

CREATE TABLE execution_outputs (
    execution_id INTEGER NOT NULL REFERENCES executions (id),
    name TEXT NOT NULL,
    artifact TEXT NOT NULL REFERENCES artifacts (hash),
    PRIMARY KEY (execution_id, name)
);
CREATE INDEX execution_outputs_artifact ON execution_outputs (artifact);

CREATE TABLE cache (
    stage_key TEXT PRIMARY KEY,
    execution_id INTEGER NOT NULL REFERENCES executions (id),
    created INTEGER NOT NULL
);

CREATE TABLE checkpoints (
    stage_key TEXT NOT NULL,
    step INTEGER NOT NULL,
    file TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (stage_key, step)
);

CREATE TABLE metrics (
    execution_id INTEGER NOT NULL REFERENCES executions (id),
    name TEXT NOT NULL,
    step INTEGER,
    value REAL NOT NULL
);
CREATE INDEX metrics_execution ON metrics (execution_id, name);

CREATE TABLE stat_cache (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    hash TEXT NOT NULL,
    checked INTEGER NOT NULL
);

CREATE TABLE reservations (
    stage_key TEXT PRIMARY KEY,
    run_id INTEGER REFERENCES runs (id),
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    slurm_job_id TEXT,
    heartbeat INTEGER NOT NULL,
    created INTEGER NOT NULL
);
