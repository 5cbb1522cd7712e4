"""Reads what `histodiff export tensorboard` wrote, with TensorBoard's own reader, and the
run's metrics from the store's SQLite database (directly, not through histodiff).

Usage: check_tensorboard.py LOGDIR STORE RUN_ID

Prints one JSON object: "tensorboard" maps each run directory to its scalar tags, each a
list of [step, value, wall_time]; "database" lists the run's metric rows as
[instance, execution_id, name, step or null, value]. The Rust test compares the two.
"""
import json
import pathlib
import sqlite3
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_logs(logdir):
    runs = {}
    for run_dir in sorted(p for p in logdir.iterdir() if p.is_dir()):
        files = list(run_dir.glob("events.out.tfevents.*"))
        if len(files) != 1:
            sys.exit(f"{run_dir}: expected one event file, found {[f.name for f in files]}")
        accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        accumulator.Reload()
        if accumulator.file_version != 2.0:
            sys.exit(f"{run_dir}: file_version {accumulator.file_version}, expected 2 (brain.Event:2)")
        runs[run_dir.name] = {
            tag: [[s.step, s.value, s.wall_time] for s in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]
        }
    return runs


def read_store(db, run_id):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute(
        "SELECT e.instance, e.id, m.name, m.step, m.value FROM metrics m "
        "JOIN executions e ON e.id = m.execution_id WHERE e.run_id = ? ORDER BY e.id, m.name, m.step",
        (run_id,),
    )
    return [list(r) for r in rows]


def main():
    logdir, store, run_id = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3])
    print(json.dumps({"tensorboard": read_logs(logdir), "database": read_store(store / "histodiff.db", run_id)}))


if __name__ == "__main__":
    main()
