#!/usr/bin/env python3
"""Data-set scale: two builds of histodiff side by side on small and large image sets.

For each build (`--before DIR`, `--after DIR`: each DIR holds a `histodiff` binary and its
`libhistodiff_stages.so`) and each cell, in the build's own store:

  train-autoencoder, train-diffusion (preset tiny, device cpu, 1 thread) on generated
      sets of N images (default 2,000 and 200,000 at 32 px, 300 steps of 8; 2,000 and
      20,000 at 256 px, 10 steps of 1, where the tiny models' activations are gigabytes):
      peak RSS of the worker that trains, images/s = steps x batch size / the execution's
      own time (`executions.finished - started` in the store's histodiff.db), and, where
      the build records them, the metrics `data/images_per_s` (what the background loader
      prepares per second of its own work) and `train/images_per_s` (what the step
      consumes) and their ratio ("—" for a build that records neither).
  sample (preset tiny, default 2,000 per class x 9 classes at 32 px, 5 DDIM steps):
      the bytes the sampling worker writes against the size of the image set it outputs.

Each image set is generated once as a uint8 .npy (N, H, W, 3) under --data-dir (seeded
noise on a per-class colour, written in chunks, so this script stays small in memory).
data/npy reads images only (its output is unlabeled), so no label file is written.
A cell runs two pipelines: a preparation one (the data/npy ingest, and for
train-diffusion a tiny autoencoder trained for a few steps; for sample the whole tiny
chain demo data -> image-folder -> autoencoder -> diffusion -> latent classifier), run
unmeasured and cached in the store from then on, and the measured one: the same stages
(all cached) plus the measured stage. The measured stage's `seed` is fresh in every
invocation of this script, so its key is new and it really executes (a cache hit would
measure nothing); the seed changes the numbers drawn, not the work done.

Peak RSS: the training stage runs in a `histodiff worker` process, a child of the
`histodiff run` process this script starts (a grandchild of this script). os.wait4 on
`histodiff run` would give max(orchestrator, every reaped worker), not the worker alone,
so the script polls /proc every --poll-ms (50 ms) for children of `histodiff run` and
keeps the largest VmHWM (the kernel's own high-water mark of the worker's resident set,
so a peak between two polls is not missed; only growth in the last poll interval before
exit can be) of the worker whose pid the store records for the measured execution.
The wait4 figure is kept in the JSON (`rusage_maxrss_mb`) as a cross-check (an upper
bound of the worker's peak).

Bytes written by the sampling worker: `wchar` of /proc/PID/io (bytes passed to write(2)
and its relatives), sampled every --io-poll-ms (10 ms) until the worker exits; the last
sample is kept. wchar is exact per call whatever the page cache does; `write_bytes`
(also kept in the JSON) counts a page once when it becomes dirty, so a page rewritten
before writeback, or a file deleted before writeback (the old checkpoints the driver
prunes: `cancelled_write_bytes`), hides part of what was written. wchar also counts the
worker's progress lines to the orchestrator (a few kB). Writes in the last poll interval
before exit can be missed. The table reports written / output bytes: 1 plus the
checkpoints' share; a build that rewrites every image so far after each batch writes
about total_batches / 2 times the output.

A measured run longer than --timeout-s is interrupted (SIGINT to `histodiff run`: its
worker checkpoints and stops; SIGKILL to both after a grace period); the cell then shows
lower bounds: the peak RSS so far, and images/s from the last step the worker recorded a
metric for, divided by the time so far. Any run (preparation or measured) is killed at
once when the machine's MemAvailable falls below --mem-floor-mb (2 GB), before the
kernel's OOM killer chooses a victim on a shared machine; the cell then shows the peak
RSS so far as a lower bound.

Usage (after `source scripts/env.sh`, with both builds copied into directories):
  python benches/data_scale.py --before /work/bench-before --after target/release \
      --data-dir /work/bench-data --json results.json
  # smoke run:
  python benches/data_scale.py --before B --after A --small-n 200 2000 --large-n 50 200 \
      --steps 30 --large-steps 3 --sample-per-class 50
  # one build now, the other from an earlier JSON:
  python benches/data_scale.py --after target/release --only after --prior before-full.json
Prints the Markdown tables to stdout; --json FILE writes the raw numbers (after every cell).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

CLASSES = 9
# Per-class base colours (RGB); noise in [0, NOISE) is added on top.
PALETTE = np.array(
    [[200, 80, 120], [90, 160, 60], [60, 90, 200], [210, 190, 70], [150, 60, 170],
     [70, 180, 180], [230, 130, 40], [120, 120, 120], [180, 170, 220]],
    dtype=np.uint8,
)
NOISE = 56
CHUNK_BYTES = 64 << 20
GRACE_S = 60.0
DATA_RATE, TRAIN_RATE = "data/images_per_s", "train/images_per_s"


# ---------------------------------------------------------------- data


def generate_npy(path: Path, n: int, px: int, seed: int = 0) -> float | None:
    """Writes (n, px, px, 3) uint8 to `path` in chunks (deterministic content); returns
    the seconds it took, None when the file already exists with that shape."""
    if path.exists():
        arr = np.load(path, mmap_mode="r")
        if arr.shape == (n, px, px, 3) and arr.dtype == np.uint8:
            return None
        path.unlink()
    start = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    per_chunk = max(1, CHUNK_BYTES // (px * px * 3))
    with open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "|u1", "fortran_order": False, "shape": (n, px, px, 3)})
        for c, lo in enumerate(range(0, n, per_chunk)):
            hi = min(n, lo + per_chunk)
            rng = np.random.default_rng([seed, px, c])
            chunk = rng.integers(0, NOISE, size=(hi - lo, px, px, 3), dtype=np.uint8)
            chunk += PALETTE[np.arange(lo, hi) % CLASSES][:, None, None, :]
            f.write(chunk.tobytes())
            del chunk
    tmp.rename(path)
    return time.perf_counter() - start


# ---------------------------------------------------------------- pipelines


def scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(scalar(x) for x in v) + "]"
    return json.dumps(str(v))


def stage_yaml(sid: str, kind: str, with_: dict, inputs: dict | None = None,
               cpus: int | None = None) -> str:
    out = f"  {sid}:\n    uses: {kind}\n"
    if inputs:
        out += "    inputs: { " + ", ".join(f"{k}: {v}" for k, v in inputs.items()) + " }\n"
    out += "    with: { " + ", ".join(f"{k}: {scalar(v)}" for k, v in with_.items()) + " }\n"
    if cpus:
        out += f"    resources: {{ cpus: {cpus} }}\n"
    return out


def pipeline_yaml(name: str, device: str, stages: list[str]) -> str:
    return (f"version: 1\nname: {name}\nsettings: {{ device: {device}, jobs: 1 }}\n"
            "stages:\n" + "".join(stages))


@dataclass
class Cell:
    """One measurement: kind (autoencoder | diffusion | sample), image size, set size."""
    kind: str
    px: int
    n: int
    steps: int
    batch: int
    scale_images: int = 0

    @property
    def name(self) -> str:
        if self.kind == "sample":
            return f"sample-{self.px}px-{self.n}"
        return f"{self.kind}-{self.px}px-{self.n}"


def data_stage(sid: str, npy: Path, px: int) -> str:
    return stage_yaml(sid, "data/npy", {"paths": [str(npy)], "image_size": px})


def cell_pipelines(cell: Cell, args, npy_of, small_n: int, seed: int) -> tuple[str, str, str]:
    """(preparation YAML, measured YAML, measured stage id)."""
    dev, cpus = args.device, args.cpus
    train_common = {
        "preset": "tiny",
        "steps": cell.steps,
        "batch_size": cell.batch,
        "checkpoint_every": args.checkpoint_every or cell.steps,
        "checkpoint_minutes": 0.0,
        "seed": seed,
    }
    if cell.kind == "autoencoder":
        data = data_stage("data", npy_of(cell.px, cell.n), cell.px)
        train = stage_yaml("train", "histodiffusion/train-autoencoder",
                           {**train_common, "perceptual_weight": 0.0}, {"images": "data"}, cpus)
        return (pipeline_yaml("ingest", dev, [data]),
                pipeline_yaml("measure", dev, [data, train]), "train")
    if cell.kind == "diffusion":
        prep = [data_stage("data", npy_of(cell.px, cell.n), cell.px)]
        ae_input = "data"
        if cell.n != small_n:
            prep.append(data_stage("ae_data", npy_of(cell.px, small_n), cell.px))
            ae_input = "ae_data"
        prep.append(stage_yaml(
            "ae", "histodiffusion/train-autoencoder",
            {"preset": "tiny", "steps": args.prep_steps, "batch_size": min(2, cell.batch),
             "perceptual_weight": 0.0, "seed": 0}, {"images": ae_input}, cpus))
        train = stage_yaml(
            "train", "histodiffusion/train-diffusion",
            {**train_common, "scale_images": cell.scale_images},
            {"images": "data", "autoencoder": "ae"}, cpus)
        return (pipeline_yaml("prepare", dev, prep),
                pipeline_yaml("measure", dev, prep + [train]), "train")
    # sample: the tiny chain of examples/quickstart.yaml on demo data, few steps each.
    p = args.prep_steps
    prep = [
        stage_yaml("demo", "data/demo", {"per_class": args.sample_demo_per_class,
                                         "image_size": 64, "seed": 0}),
        stage_yaml("labeled", "data/image-folder", {"image_size": cell.px}, {"folder": "demo"}),
        stage_yaml("ae", "histodiffusion/train-autoencoder",
                   {"preset": "tiny", "steps": p, "batch_size": 4, "perceptual_weight": 0.0,
                    "seed": 0}, {"images": "labeled"}, cpus),
        stage_yaml("dm", "histodiffusion/train-diffusion",
                   {"preset": "tiny", "steps": p, "batch_size": 4, "scale_images": 16,
                    "seed": 0}, {"images": "labeled", "autoencoder": "ae"}, cpus),
        stage_yaml("latent_cls", "histodiffusion/train-latent-classifier",
                   {"preset": "tiny", "steps": p, "batch_size": 4, "seed": 0},
                   {"images": "labeled", "autoencoder": "ae", "unet": "dm"}, cpus),
    ]
    sample = stage_yaml(
        "sample", "histodiffusion/sample",
        {"preset": "tiny", "steps": cell.steps, "per_class": cell.n,
         "batch_size": cell.batch, "seed": seed},
        {"unet": "dm", "classifier": "latent_cls", "autoencoder": "ae", "images": "labeled"},
        cpus)
    return (pipeline_yaml("prepare", dev, prep),
            pipeline_yaml("measure", dev, prep + [sample]), "sample")


# ---------------------------------------------------------------- processes


def children_of(ppid: int) -> list[int]:
    """Pids whose parent is `ppid` (this kernel has no /proc/PID/task/TID/children)."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the command name, which may hold spaces and parentheses.
        rest = stat[stat.rfind(b")") + 2:].split()
        if len(rest) > 1 and int(rest[1]) == ppid:
            out.append(int(entry.name))
    return out


def read_kv(path: str) -> dict[str, int]:
    out = {}
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.partition(":")
                v = v.split()
                if v and v[0].isdigit():
                    out[k.strip()] = int(v[0])
    except OSError:
        pass
    return out


@dataclass
class Watched:
    hwm_kb: int = 0
    rss_kb: int = 0
    io: dict[str, int] = field(default_factory=dict)
    gone: bool = False


@dataclass
class RunResult:
    code: int | None
    wall_s: float
    timed_out: bool
    out_of_memory: bool
    workers: dict[int, Watched]
    rusage_maxrss_kb: int | None
    log: str


def mem_available_mb() -> float:
    return read_kv("/proc/meminfo").get("MemAvailable", 1 << 40) / 1024


def run_watched(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float,
                poll_s: float, io_poll_s: float, mem_floor_mb: float,
                log_path: Path) -> RunResult:
    """Runs `cmd` (a `histodiff run`), watching its worker children in /proc.

    Past `timeout`: SIGINT to `histodiff run` (its workers checkpoint and stop), SIGKILL
    to it and its workers GRACE_S later. When the machine's MemAvailable falls below
    `mem_floor_mb`: SIGKILL at once, before the kernel's OOM killer picks a victim
    (on a shared machine, possibly someone else's process)."""
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
    workers: dict[int, Watched] = {}
    deadline = start + timeout
    timed_out = out_of_memory = False
    killed_at = None
    next_scan = next_rss = 0.0
    status = usage = None

    def kill_all() -> None:
        for c in (c for c, w in workers.items() if not w.gone):
            try:
                os.kill(c, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.kill()

    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        now = time.perf_counter()
        if now >= next_scan:
            for c in children_of(proc.pid):
                workers.setdefault(c, Watched())
            # Scanning /proc costs CPU the worker could use: once a worker is found
            # (a measured run has one), look for others only once a second.
            next_scan = now + (1.0 if workers else poll_s)
        if now >= next_rss:
            next_rss = now + poll_s
            for c, w in workers.items():
                if not w.gone:
                    st = read_kv(f"/proc/{c}/status")
                    w.hwm_kb = max(w.hwm_kb, st.get("VmHWM", 0))
                    w.rss_kb = max(w.rss_kb, st.get("VmRSS", 0))
            if not out_of_memory and mem_available_mb() < mem_floor_mb:
                out_of_memory = True
                kill_all()
        for c, w in workers.items():
            if not w.gone:
                io = read_kv(f"/proc/{c}/io")
                if io:
                    w.io = io
                else:  # reaped: keep the last sample, never read a reused pid
                    w.gone = True
        if now > deadline and not timed_out:
            timed_out = True
            killed_at = now
            proc.send_signal(signal.SIGINT)
        elif timed_out and now - killed_at > GRACE_S:
            kill_all()
            killed_at = float("inf")
        time.sleep(min(poll_s, io_poll_s))
    wall = time.perf_counter() - start
    return RunResult(
        code=os.waitstatus_to_exitcode(status),
        wall_s=wall,
        timed_out=timed_out,
        out_of_memory=out_of_memory,
        workers=workers,
        rusage_maxrss_kb=usage.ru_maxrss if usage else None,
        log=log_path.read_text(errors="replace")[-4000:],
    )


# ---------------------------------------------------------------- builds and stores


@dataclass
class Build:
    label: str
    dir: Path
    id: str = ""

    @property
    def binary(self) -> Path:
        return self.dir / "histodiff"

    @property
    def lib(self) -> Path:
        return self.dir / "libhistodiff_stages.so"

    def check(self) -> None:
        for f in (self.binary, self.lib):
            if not f.is_file():
                sys.exit(f"{self.label}: {f} is missing")
        h = hashlib.blake2b(digest_size=6)
        for f in (self.binary, self.lib):
            with open(f, "rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
        self.id = h.hexdigest()

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["HISTODIFF_STAGES_LIB"] = str(self.lib)
        env.pop("HISTODIFF_STORE", None)
        return env


def query(db: Path, sql: str, params=()) -> list[tuple]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def measured_execution(db: Path, stage: str, worker_pids: set[int]) -> dict | None:
    """The execution of `stage` that one of this run's workers ran (another invocation
    may run in the same store at the same time, so "the newest run" is not enough)."""
    rows = query(db, """
        SELECT id, status, started, finished, worker_pid FROM executions
        WHERE stage = ? AND status <> 'cached' ORDER BY id DESC LIMIT 50""", (stage,))
    rows = [r for r in rows if r[4] in worker_pids]
    if not rows:
        return None
    eid, status, started, finished, pid = rows[0]
    out = {"id": eid, "status": status, "worker_pid": pid,
           "exec_s": (finished - started) / 1000 if started and finished else None}
    metrics = {}
    for name, step, value in query(
            db, "SELECT name, step, value FROM metrics WHERE execution_id = ?", (eid,)):
        metrics.setdefault(name, []).append((step, value))
    out["last_metric_step"] = max(
        (s for vals in metrics.values() for s, _ in vals if s is not None), default=None)
    for key, name in (("data_images_per_s", DATA_RATE), ("train_images_per_s", TRAIN_RATE)):
        vals = metrics.get(name)
        if not vals:
            out[key] = None
            continue
        final = [v for s, v in vals if s is None]
        stepped = sorted(v for s, v in vals if s is not None)
        # A final value when the build records one, else the median of the stepped ones.
        out[key] = final[-1] if final else stepped[len(stepped) // 2]
        out[key + "_values"] = len(vals)
    out["output_bytes"] = None
    rows = query(db, """
        SELECT SUM(a.size) FROM execution_outputs o JOIN artifacts a ON a.hash = o.artifact
        WHERE o.execution_id = ?""", (eid,))
    if rows and rows[0][0] is not None:
        out["output_bytes"] = rows[0][0]
    return out


def measure_cell(build: Build, cell: Cell, args, npy_of, small_n: int, seed: int) -> dict:
    store_dir = args.data_dir / "stores" / f"{build.label}-{build.id}"
    cell_dir = store_dir / cell.name
    cell_dir.mkdir(parents=True, exist_ok=True)
    # One store per build, shared by its cells: pipelines in store_dir, store next to them.
    prep_yaml, measure_yaml, stage = cell_pipelines(cell, args, npy_of, small_n, seed)
    prep_file = store_dir / f"{cell.name}.prepare.yaml"
    measure_file = store_dir / f"{cell.name}.measure.yaml"
    prep_file.write_text(prep_yaml)
    measure_file.write_text(measure_yaml)
    env = build.env()
    rec = {"build": build.label, "build_dir": str(build.dir), "build_id": build.id,
           **asdict(cell), "cell": cell.name, "seed": seed, "store": str(store_dir)}
    t0 = time.perf_counter()
    watch = (args.poll_ms / 1000, args.io_poll_ms / 1000, args.mem_floor_mb)
    r = run_watched([str(build.binary), "run", str(prep_file)], store_dir, env,
                    args.prep_timeout_s, *watch, cell_dir / "prepare.log")
    rec["prepare_s"] = r.wall_s
    if r.code != 0 or r.timed_out or r.out_of_memory:
        peak = max((w.hwm_kb for w in r.workers.values()), default=0) / 1024
        why = ("timed out" if r.timed_out else
               f"stopped at MemAvailable < {args.mem_floor_mb:.0f} MB" if r.out_of_memory
               else f"exit {r.code}")
        rec.update(status="prepare failed",
                   error=f"preparation {why} (worker peak {peak:.0f} MB):\n{r.log[-2000:]}")
        return rec
    r = run_watched([str(build.binary), "run", str(measure_file)], store_dir, env,
                    args.timeout_s, *watch, cell_dir / "measure.log")
    rec["cell_s"] = time.perf_counter() - t0
    rec["wall_s"] = r.wall_s
    rec["rusage_maxrss_mb"] = r.rusage_maxrss_kb / 1024 if r.rusage_maxrss_kb else None
    ex = measured_execution(store_dir / ".histodiff" / "histodiff.db", stage, set(r.workers))
    rec["execution"] = ex
    if r.out_of_memory:
        rec["status"] = "memory"
    elif r.timed_out:
        rec["status"] = "timeout"
    elif r.code != 0 or not ex or ex["status"] != "succeeded":
        rec.update(status="failed", error=r.log[-2000:])
    else:
        rec["status"] = "ok"
    w = r.workers.get(ex["worker_pid"]) if ex and ex.get("worker_pid") else None
    if w is None and len(r.workers) == 1:
        w = next(iter(r.workers.values()))
    if w is not None:
        rec["peak_rss_mb"] = w.hwm_kb / 1024 if w.hwm_kb else None
        rec["max_polled_rss_mb"] = w.rss_kb / 1024 if w.rss_kb else None
        rec["worker_io"] = w.io
    if cell.kind != "sample" and ex:
        images = cell.steps * cell.batch
        if rec["status"] == "ok" and ex.get("exec_s"):
            rec["images_per_s"] = images / ex["exec_s"]
        elif rec["status"] == "timeout" and ex.get("last_metric_step"):
            # Lower bound: steps with a recorded metric over the whole time so far.
            rec["images_per_s"] = ex["last_metric_step"] * cell.batch / args.timeout_s
    if cell.kind == "sample" and ex and w is not None:
        rec["written_bytes"] = w.io.get("wchar")
        rec["write_bytes"] = w.io.get("write_bytes")
        if ex.get("output_bytes"):
            rec["written_over_output"] = (rec["written_bytes"] or 0) / ex["output_bytes"]
    return rec


# ---------------------------------------------------------------- table


def fmt(v, spec: str, lower: bool = False) -> str:
    if v is None:
        return "—"
    return ("≥ " if lower else "") + format(v, spec)


def lookup(cells: list[dict], label: str, name: str) -> dict | None:
    found = [c for c in cells if c["build"] == label and c["cell"] == name]
    return found[-1] if found else None


def cell_note(c: dict | None) -> str:
    """Why a cell has no figures ("" when it has them, lower bounds included)."""
    if c is None:
        return "not run"
    if c["status"] in ("ok", "timeout", "memory"):
        return ""
    return c["status"]


def bound(c: dict) -> str:
    """The suffix of a lower bound: why the run stopped early."""
    if c["status"] == "timeout":
        return f" (> {c.get('wall_s', 0):.0f} s)"
    if c["status"] == "memory":
        return " (stopped: memory)"
    return ""


def figure(c: dict | None, key: str, spec: str, scale: float = 1.0) -> str:
    note = cell_note(c)
    if note:
        return note
    v = c.get(key)
    low = c["status"] != "ok"
    return fmt(v * scale if v is not None else None, spec, low) + (bound(c) if low else "")


def tables(cells: list[dict], labels: list[str], names: list[Cell]) -> str:
    out = []
    train = [c for c in names if c.kind != "sample"]
    if train:
        head = "| stage | px | N | steps × batch |"
        sep = "|---|---:|---:|---:|"
        for what in ("peak RSS (MB)", "images/s", "cell time (s)"):
            for label in labels:
                head += f" {what} {label} |"
                sep += "---:|"
        out += ["### Training: worker peak RSS and throughput", "", head, sep]
        for cell in train:
            row = f"| train-{cell.kind} | {cell.px} | {cell.n:,} | {cell.steps} × {cell.batch} |"
            recs = [lookup(cells, label, cell.name) for label in labels]
            row += "".join(f" {figure(c, 'peak_rss_mb', '.0f')} |" for c in recs)
            row += "".join(f" {figure(c, 'images_per_s', '.2f')} |" for c in recs)
            for c in recs:
                t = None if c is None else (c.get("prepare_s") or 0) + (c.get("wall_s") or 0)
                row += f" {fmt(t, '.0f')} |"
            out.append(row)
        out += ["", "### Training: data loading rate vs step rate (images/s; metrics "
                f"`{DATA_RATE}`, `{TRAIN_RATE}`)", ""]
        head = "| stage | px | N |"
        sep = "|---|---:|---:|"
        for label in labels:
            head += f" loader {label} | step {label} | loader / step {label} |"
            sep += "---:|---:|---:|"
        out += [head, sep]
        for cell in train:
            row = f"| train-{cell.kind} | {cell.px} | {cell.n:,} |"
            for label in labels:
                c = lookup(cells, label, cell.name)
                ex = (c or {}).get("execution") or {}
                d, t = ex.get("data_images_per_s"), ex.get("train_images_per_s")
                ratio = d / t if d is not None and t else None
                row += f" {fmt(d, '.1f')} | {fmt(t, '.1f')} | {fmt(ratio, '.2f')} |"
            out.append(row)
    for cell in (c for c in names if c.kind == "sample"):
        out += ["", f"### Sampling: bytes the worker writes ({cell.n:,} per class × "
                f"{CLASSES} classes at {cell.px} px, {cell.steps} DDIM steps, batch {cell.batch})",
                "", "| build | written (MB) | output (MB) | written / output | execution (s) | "
                "cell time (s) |", "|---|---:|---:|---:|---:|---:|"]
        for label in labels:
            c = lookup(cells, label, cell.name)
            note = cell_note(c)
            if note:
                out.append(f"| {label} | {note} | | | | |")
                continue
            ex = c.get("execution") or {}
            ob = ex.get("output_bytes")
            out.append(
                f"| {label} | {figure(c, 'written_bytes', '.1f', 1e-6)} | "
                f"{fmt(ob / 1e6 if ob else None, '.1f')} | "
                f"{figure(c, 'written_over_output', '.1f')} | "
                f"{fmt(ex.get('exec_s'), '.1f')} | "
                f"{fmt((c.get('prepare_s') or 0) + (c.get('wall_s') or 0), '.0f')} |")
    return "\n".join(out)


def machine_line(args, builds: list[Build]) -> str:
    load = os.getloadavg()[0]
    return (f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, device {args.device}, "
            f"{args.cpus} thread(s) per worker; load average {load:.1f} at the end; builds: "
            + ", ".join(f"{b.label} = {b.dir} ({b.id})" for b in builds)
            + ". Peak RSS: VmHWM of the worker; images/s = steps × batch / execution time; "
            "cell time = preparation (ingest, cached after the first run) + measured run.")


# ---------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", type=Path, help="directory with the old histodiff + libhistodiff_stages.so")
    p.add_argument("--after", type=Path, help="directory with the new histodiff + libhistodiff_stages.so")
    p.add_argument("--only", choices=["before", "after"], help="measure one build only")
    p.add_argument("--prior", type=Path, nargs="*", default=[],
                   help="JSON files of earlier runs: their cells fill builds not measured now")
    p.add_argument("--data-dir", type=Path,
                   default=Path(tempfile.gettempdir()) / "histodiff-data-scale",
                   help="generated .npy files and per-build stores (reused between runs)")
    p.add_argument("--json", type=Path, help="write the raw numbers here")
    p.add_argument("--report-only", action="store_true",
                   help="measure nothing: print the tables of the --prior files")
    p.add_argument("--small-px", type=int, default=32)
    p.add_argument("--small-n", type=int, nargs="*", default=[2000, 200000])
    p.add_argument("--large-px", type=int, default=256)
    p.add_argument("--large-n", type=int, nargs="*", default=[2000, 20000])
    p.add_argument("--kinds", nargs="+", default=["autoencoder", "diffusion", "sample"],
                   choices=["autoencoder", "diffusion", "sample"])
    p.add_argument("--steps", type=int, default=300, help="training steps at --small-px")
    # At 256 px the tiny models are large in memory: the autoencoder's mid-block attention
    # (encoder and decoder) runs over its 128 x 128 latent (16,384 tokens: 1 GiB of scores
    # per image), so a batch of 4 took 18 GB; train-diffusion encodes its scale_images
    # 16 at a time (22 GB, killed). Batch 1 and scale_images 1 keep that to a quarter.
    p.add_argument("--large-steps", type=int, default=10, help="training steps at --large-px")
    p.add_argument("--batch-size", type=int, default=8, help="batch at --small-px")
    p.add_argument("--large-batch-size", type=int, default=1, help="batch at --large-px")
    p.add_argument("--checkpoint-every", type=int, default=0,
                   help="training checkpoint cadence in steps (0: once, at the last step)")
    p.add_argument("--prep-steps", type=int, default=3,
                   help="steps of each unmeasured preparation model (autoencoder, diffusion, ϕ)")
    p.add_argument("--scale-images", type=int, default=64,
                   help="train-diffusion `scale_images` at --small-px (images encoded for "
                   "s = 1/std(z), 16 at a time)")
    p.add_argument("--large-scale-images", type=int, default=1,
                   help="train-diffusion `scale_images` at --large-px")
    p.add_argument("--sample-px", type=int, default=32)
    p.add_argument("--sample-per-class", type=int, default=2000)
    p.add_argument("--sample-steps", type=int, default=5, help="DDIM steps")
    p.add_argument("--sample-batch", type=int, default=500)
    p.add_argument("--sample-demo-per-class", type=int, default=20,
                   help="demo images per class for the sampling chain's tiny models")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cpus", type=int, default=1,
                   help="`resources: cpus` of each worker (its thread count; 1 by default: on "
                   "a shared 2-core machine, 2 threads made the same 30 steps take 6 s "
                   "in one run and 57 s in the next)")
    p.add_argument("--timeout-s", type=float, default=1800, help="limit of one measured run")
    p.add_argument("--prep-timeout-s", type=float, default=7200,
                   help="limit of one preparation run (ingest, tiny models)")
    p.add_argument("--mem-floor-mb", type=float, default=2048,
                   help="kill a run when the machine's MemAvailable falls below this")
    p.add_argument("--poll-ms", type=float, default=50, help="/proc scan for workers, VmHWM")
    p.add_argument("--io-poll-ms", type=float, default=10, help="/proc/PID/io of the workers")
    args = p.parse_args()

    if args.report_only:
        recs = [c for f in args.prior for c in json.loads(f.read_text())["cells"]]
        cells = []
        for c in recs:
            cell = Cell(c["kind"], c["px"], c["n"], c["steps"], c["batch"])
            if all(x.name != cell.name for x in cells):
                cells.append(cell)
        labels = [lb for lb in ("before", "after") if any(c["build"] == lb for c in recs)]
        print("From " + ", ".join(str(f) for f in args.prior) + ".\n")
        print(tables(recs, labels, cells))
        return 0

    builds = []
    for label in ("before", "after"):
        d = getattr(args, label)
        if args.only and args.only != label:
            continue
        if d is None:
            p.error(f"--{label} DIR is needed (or --only the other one)")
        builds.append(Build(label, d.resolve()))
    for b in builds:
        b.check()
    args.data_dir = args.data_dir.resolve()
    args.data_dir.mkdir(parents=True, exist_ok=True)

    cells: list[Cell] = []
    for px, ns, steps, batch, scale in (
            (args.small_px, args.small_n, args.steps, args.batch_size, args.scale_images),
            (args.large_px, args.large_n, args.large_steps, args.large_batch_size,
             args.large_scale_images)):
        for n in ns:
            for kind in ("autoencoder", "diffusion"):
                if kind in args.kinds:
                    cells.append(Cell(kind, px, n, steps, batch,
                                      scale if kind == "diffusion" else 0))
    if "sample" in args.kinds:
        cells.append(Cell("sample", args.sample_px, args.sample_per_class, args.sample_steps,
                          args.sample_batch))

    def npy_of(px: int, n: int) -> Path:
        return args.data_dir / "npy" / f"images-{px}px-{n}.npy"

    generated = {}
    for px, ns in ((args.small_px, args.small_n), (args.large_px, args.large_n)):
        for n in ns:
            if any(c.px == px and c.n == n and c.kind != "sample" for c in cells):
                s = generate_npy(npy_of(px, n), n, px)
                generated[npy_of(px, n).name] = s
                print(f"data: {npy_of(px, n)} "
                      + ("reused" if s is None else f"generated in {s:.1f} s"),
                      file=sys.stderr)

    # A fresh seed for the measured stages in every invocation (see the module doc).
    seed = time.time_ns() // 1000 % (1 << 31)
    prior: list[dict] = []
    for f in args.prior:
        prior += [c for c in json.loads(f.read_text())["cells"]
                  if c["build"] not in {b.label for b in builds}]
    for c in prior:
        same = [x for x in cells if x.name == c["cell"]]
        if same and (same[0].steps, same[0].batch) != (c["steps"], c["batch"]):
            print(f"warning: {c['build']} {c['cell']} from --prior ran {c['steps']} x "
                  f"{c['batch']}, this run {same[0].steps} x {same[0].batch}", file=sys.stderr)
    results: list[dict] = []

    def dump() -> None:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({
                "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "machine": {"arch": platform.machine(), "cpus": os.cpu_count(),
                            "loadavg": os.getloadavg()},
                "builds": {b.label: {"dir": str(b.dir), "id": b.id} for b in builds},
                "generated_s": generated, "seed": seed,
                "cells": results + prior,
            }, indent=1, default=str))

    for cell in cells:
        # Builds alternate cell by cell, so load on a shared machine hits both alike.
        small_n = min(args.small_n if cell.px == args.small_px else args.large_n, default=cell.n)
        for b in builds:
            print(f"{b.label}: {cell.name} ...", file=sys.stderr, flush=True)
            rec = measure_cell(b, cell, args, npy_of, small_n, seed)
            results.append(rec)
            print(f"{b.label}: {cell.name} {rec['status']} in "
                  f"{rec.get('prepare_s') or 0:.0f} + {rec.get('wall_s') or 0:.0f} s"
                  + (f": {rec.get('error', '')[-600:]}" if "error" in rec else ""),
                  file=sys.stderr, flush=True)
            dump()

    labels = [label for label in ("before", "after")
              if any(c["build"] == label for c in results + prior)]
    print(machine_line(args, builds)
          + (" Cells of builds not measured now: from " + ", ".join(map(str, args.prior)) + "."
             if prior else ""))
    print()
    print(tables(results + prior, labels, cells))
    dump()
    return 0 if all(r["status"] in ("ok", "timeout", "memory") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
