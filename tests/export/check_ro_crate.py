"""Checks a crate written by `histodiff export provenance` against the store it came from.

Usage: check_ro_crate.py CRATE STORE RUN_ID

Reads the crate with rocrate (ROCrate), compares it with the store's SQLite database
(read directly, not through histodiff): the pipeline file is the main entity and holds
the recorded file's bytes; every execution of the run is a CreateAction of a tool with
its stage key, status, times, inputs (`object`) and outputs (`result`) by blake3 hash,
orchestrated by a ControlAction; copied artifacts hold the object's bytes. Then runs
rocrate-validator with the provenance-run-crate-0.5 profile (which includes the Workflow
Run Crate, Process Run Crate, Workflow RO-Crate and RO-Crate 1.1 profiles) and fails on
any REQUIRED-level issue. Prints a JSON summary; exits 1 on any failure.
"""
import datetime
import json
import pathlib
import sqlite3
import sys
import urllib.parse

from rocrate.rocrate import ROCrate

import offline_context
from store_rows import run_executions

PROFILE = "provenance-run-crate-0.5"
COMPLETED = "http://schema.org/CompletedActionStatus"
FAILED = "http://schema.org/FailedActionStatus"

problems = []


def check(condition, message):
    if not condition:
        problems.append(message)
    return condition


def ms(iso):
    return round(datetime.datetime.fromisoformat(iso).timestamp() * 1000)


def as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def load_store(db, run_id):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    run = con.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    executions = run_executions(con, run_id)
    edges = {}
    for e in executions:
        source = e["cached_from"] or e["id"]
        inputs = {r["artifact"] for r in con.execute("SELECT artifact FROM execution_inputs WHERE execution_id = ?", (source,))}
        outputs = {r["artifact"] for r in con.execute("SELECT artifact FROM execution_outputs WHERE execution_id = ?", (source,))}
        edges[action_id(e)] = (inputs, outputs)
    return run, executions, edges


def action_id(e):
    """A cache hit has no execution id of its own: its action is named by run and instance."""
    if e["status"] == "cached":
        return f"#run-{e['run_id']}-hit/" + urllib.parse.quote(e["instance"], safe="-._~!$&'()*+,;=:@/")
    return f"#execution-{e['id']}"


def hashes(entities):
    found = set()
    for entity in entities:
        identifier = entity.get("identifier")
        if isinstance(identifier, str) and identifier.startswith("blake3:"):
            found.add(identifier[len("blake3:"):])
    return found


def check_workflow(crate, crate_dir, run):
    main = crate.mainEntity
    if not check(main is not None, "the crate has no mainEntity"):
        return
    check("ComputationalWorkflow" in as_list(main.type), f"mainEntity {main.id} is not a ComputationalWorkflow: {main.type}")
    copy = crate_dir / main.id
    check(copy.is_file(), f"the pipeline file {main.id} is not in the crate")
    if copy.is_file():
        check(copy.read_bytes() == pathlib.Path(run["file"]).read_bytes(), f"{main.id} differs from {run['file']}")
    check(len(as_list(main.get("hasPart"))) > 0, "the workflow lists no tools (hasPart)")


def check_execution(crate, e, edges):
    action = crate.get(action_id(e))
    if not check(action is not None, f"execution {e['id']} ({e['instance']}) has no CreateAction"):
        return
    check(action.type == "CreateAction", f"{action.id} is a {action.type}")
    tool = action.get("instrument")
    check(tool is not None and "SoftwareApplication" in as_list(tool.type), f"{action.id}: instrument is not a SoftwareApplication: {tool}")
    key = action.get("identifier")
    check(key is not None and key.get("value") == e["stage_key"], f"{action.id}: stage key {key and key.get('value')} != {e['stage_key']}")
    for field, column in (("startTime", "started"), ("endTime", "finished")):
        if e[column] is not None:
            value = action.get(field)
            check(value is not None and ms(value) == e[column], f"{action.id}: {field} {value} != {e[column]} ms")
    status = action.get("actionStatus")
    status = status.id if hasattr(status, "id") else status
    expected = COMPLETED if e["status"] in ("succeeded", "cached") else FAILED
    check(status == expected, f"{action.id}: actionStatus {status} for status {e['status']}")
    if e["status"] == "failed":
        check(bool(action.get("error")), f"{action.id}: a failed execution without its error")
    inputs, outputs = edges[action_id(e)]
    read = hashes(as_list(action.get("object")))
    written = hashes(as_list(action.get("result")))
    check(inputs <= read, f"{action.id}: object lacks inputs {sorted(inputs - read)}")
    check(written == outputs, f"{action.id}: result {sorted(written)} != outputs {sorted(outputs)}")
    controls = [c for c in crate.get_entities() if c.type == "ControlAction" and c.get("object") is action]
    check(len(controls) == 1, f"{action.id}: {len(controls)} ControlActions orchestrate it")


def check_copies(crate, crate_dir, store):
    copied = 0
    for entity in crate.get_entities():
        identifier = entity.get("identifier")
        path = crate_dir / entity.id
        if entity.type == "File" and isinstance(identifier, str) and entity.id.startswith("artifacts/"):
            digest = identifier[len("blake3:"):]
            obj = store / "objects" / digest[:2] / digest[2:]
            check(path.is_file() and path.read_bytes() == obj.read_bytes(), f"{entity.id} differs from object {digest}")
            copied += 1
    return copied


def validate(crate_dir, severity):
    from rocrate_validator import models, services

    settings = models.ValidationSettings(
        rocrate_uri=str(crate_dir),
        profile_identifier=PROFILE,
        requirement_severity=severity,
    )
    result = services.validate(settings)
    return [
        {"severity": i.severity.name, "check": i.check.identifier, "message": i.message}
        for i in result.issues
    ]


def main():
    crate_dir, store, run_id = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3])
    run, executions, edges = load_store(store / "histodiff.db", run_id)
    check(run is not None, f"no run {run_id} in the store")
    crate = ROCrate(crate_dir)
    check_workflow(crate, crate_dir, run)
    for e in executions:
        check_execution(crate, e, edges)
    copied = check_copies(crate, crate_dir, store)
    offline_context.install()
    from rocrate_validator import models

    required = validate(crate_dir, models.Severity.REQUIRED)
    recommended = [i for i in validate(crate_dir, models.Severity.RECOMMENDED) if i["severity"] != "REQUIRED"]
    for issue in required:
        problems.append(f"validator ({PROFILE}) REQUIRED: {issue['check']}: {issue['message']}")
    summary = {
        "executions": len(executions),
        "copied": copied,
        "profile": PROFILE,
        "required_issues": required,
        "recommended_issues": sorted({i["check"] + ": " + i["message"] for i in recommended}),
        "problems": problems,
    }
    print(json.dumps(summary, indent=1))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
