"""Checks DEST/prov.json written by `histodiff export provenance --format prov-json` with
the W3C PROV reference library for Python (`prov`), against the store's SQLite database.

Usage: check_prov_json.py PROV_JSON STORE RUN_ID

The document must parse as PROV-JSON and hold: an activity per execution of the run (and
per execution its cache hits reused) with its start and end times, the run as an activity
that started each execution, an entity per artifact (`blake3:<hash>`), a `used` per input
edge, a `wasGeneratedBy` per output, a `wasAssociatedWith` for the run, and a
`wasInformedBy` from each cache hit to its source. Prints a JSON summary; exits 1 on any
failure.
"""
import collections
import json
import sqlite3
import sys

from prov.model import ProvActivity, ProvDocument

from store_rows import run_executions

problems = []


def check(condition, message):
    if not condition:
        problems.append(message)


def local(qname):
    return str(qname).split(":", 1)[1] if qname is not None else None


def activity_id(e):
    """A cache hit has no execution id of its own: its activity is named by run and instance."""
    if e["status"] == "cached":
        name = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in e["instance"])
        return f"run-{e['run_id']}-hit-{name}"
    return f"execution-{e['id']}"


def main():
    path, store, run_id = sys.argv[1], sys.argv[2], int(sys.argv[3])
    doc = ProvDocument.deserialize(source=path, format="json")
    records = collections.defaultdict(list)
    for record in doc.get_records():
        records[type(record).__name__].append(record)
    con = sqlite3.connect(f"file:{store}/histodiff.db?mode=ro", uri=True)
    executions = run_executions(con, run_id)
    activities = {local(a.identifier): a for a in records["ProvActivity"]}
    entities = {local(e.identifier) for e in records["ProvEntity"]}
    inputs = outputs = 0
    for e in executions:
        activity = activities.get(activity_id(e))
        if not activity:
            problems.append(f"execution {e['id']} is no activity")
            continue
        for attribute, column in ((activity.get_startTime(), "started"), (activity.get_endTime(), "finished")):
            if e[column] is not None:
                check(attribute is not None and round(attribute.timestamp() * 1000) == e[column], f"execution {e['id']}: time {attribute} != {e[column]}")
        source = e["cached_from"] or e["id"]
        if e["status"] in ("succeeded", "cached"):
            for (artifact,) in con.execute("SELECT artifact FROM execution_inputs WHERE execution_id = ?", (source,)):
                inputs += 1
                check(artifact in entities, f"input {artifact} of execution {e['id']} is no entity")
            for (artifact,) in con.execute("SELECT artifact FROM execution_outputs WHERE execution_id = ?", (source,)):
                outputs += 1
                check(artifact in entities, f"output {artifact} of execution {e['id']} is no entity")
        if e["cached_from"]:
            informed = [r for r in records["ProvCommunication"] if local(r.formal_attributes[0][1]) == activity_id(e)]
            check(any(local(r.formal_attributes[1][1]) == f"execution-{source}" for r in informed), f"cache hit {e['id']} is not informed by {source}")
    check(f"run-{run_id}" in activities, f"run {run_id} is no activity")
    check(len(records["ProvStart"]) == len(executions), f"{len(records['ProvStart'])} wasStartedBy for {len(executions)} executions")
    check(len(records["ProvUsage"]) >= inputs, f"{len(records['ProvUsage'])} used for {inputs} input edges")
    check(len(records["ProvGeneration"]) == outputs, f"{len(records['ProvGeneration'])} wasGeneratedBy for {outputs} outputs")
    check(len(records["ProvAssociation"]) >= 1, "no wasAssociatedWith")
    check(all(isinstance(a, ProvActivity) for a in activities.values()), "a non-activity among activities")
    summary = {kind: len(found) for kind, found in sorted(records.items())}
    print(json.dumps({"records": summary, "problems": problems}, indent=1))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
