"""A run's executions read straight from the store's SQLite database, as docs/schema.md
describes them: the `executions` rows of the run, and its cache hits, which are not rows
of their own but entries of `cache_hits` (migration 0006) that name the execution each
instance reused. A hit is returned as a dict with the source's `id`, `stage_key` and
`kind`, its own `run_id`, `stage` and `instance`, status `cached`, `cached_from` set, and
its batch's `recorded` time as `started` and `finished`, as histodiff reads it back."""
import json
import sqlite3


def run_executions(con: sqlite3.Connection, run_id: int) -> list[dict]:
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM executions WHERE run_id = ? ORDER BY id", (run_id,))]
    batches = con.execute("SELECT recorded, entries FROM cache_hits WHERE run_id = ? ORDER BY batch", (run_id,))
    for recorded, entries in batches.fetchall():
        for source_id, stage, instance in json.loads(entries):
            source = dict(con.execute("SELECT * FROM executions WHERE id = ?", (source_id,)).fetchone())
            rows.append(dict(source, run_id=run_id, stage=stage, instance=instance, status="cached",
                             attempt=0, host=None, worker_pid=None, slurm_job_id=None, device=None,
                             started=recorded, finished=recorded, duration=0, error=None,
                             cached_from=source_id))
    return rows
