#!/usr/bin/env python3
"""Engine overhead of histodiff against Snakemake and DVC on the same sweep.

Shape (issue "engine", point 9): prepare -> pretrain -> finetune -> N x (sample_i ->
select_i -> evaluate_i) -> report, every job a trivial shell command (`echo`, `cp`,
`cat`) writing a small file, so what is measured is the orchestrator, not the work.
Each sample_i also reads its own input file seeds/seed_i.txt, so a "one-leaf change"
edits seeds/seed_0.txt and must re-run exactly sample_0, select_0, evaluate_0, report.

For each N and tool, in a fresh directory:
  plan      histodiff plan / snakemake -n / dvc status   (wall time and peak RSS)
  full run  histodiff run / snakemake --cores J / dvc repro
  no-op     the same run again, nothing to do (median of NOOP_RUNS consecutive runs: it
            is idempotent, and one sample of a sub-second command on a shared machine
            can be twice its usual time)
  one leaf  seeds/seed_0.txt changed, run again
Peak RSS is the child's own (os.wait4), children of the child included once waited.
A full run is skipped when the tool's measured time at a smaller N, scaled linearly,
predicts more than --run-limit seconds; the table says so. For Snakemake the script then
writes the files that full run would have written (the same bytes, in dependency order so
every output is newer than its inputs) and still measures the no-op run and the one-leaf
change. Those files carry no Snakemake metadata, so its no-op checks modification times
only: a lower bound of its no-op time after a real run, which also reads 3N + 4 metadata
records.

Usage (after `source scripts/env.sh`):
  python benches/engine_vs_peers.py --sizes 100 1000 --histodiff target-run/release/histodiff
Writes the Markdown table to stdout and to the "Engine vs Snakemake and DVC" section of
BENCHMARKS.md (replacing that section if present).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Engine vs Snakemake and DVC"
STEPS = ("plan", "run", "noop", "leaf")
NOOP_RUNS = 3


@dataclass
class Measure:
    seconds: float | None = None
    rss_mb: float | None = None
    note: str = ""

    def cell(self, rss: bool = False) -> str:
        if self.seconds is None:
            return self.note or "—"
        text = f"{self.seconds:.2f}"
        if rss and self.rss_mb is not None:
            text += f" ({self.rss_mb:.0f} MB)"
        return text + (f" {self.note}" if self.note else "")


@dataclass
class Row:
    tool: str
    n: int
    jobs: int
    steps: dict[str, Measure] = field(default_factory=dict)


def timed(cmd: list[str], cwd: Path, timeout: float, env: dict[str, str]) -> Measure:
    """Runs `cmd`, returning wall time and the child's peak RSS; raises on failure."""
    start = time.perf_counter()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = start + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            return Measure(note=f"> {timeout:.0f} s (timeout)")
        time.sleep(0.005)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        log.seek(0)
        tail = log.read().decode(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd[:3])}... exited {code} in {cwd}:\n{tail}")
    # ru_maxrss is KiB on Linux.
    return Measure(seconds=seconds, rss_mb=usage.ru_maxrss / 1024)


# ---------------------------------------------------------------- workflow writers


def median_of(runs: int, cmd: list[str], cwd: Path, timeout: float, env: dict[str, str]) -> Measure:
    """`runs` consecutive runs of an idempotent command: the median time, the peak RSS."""
    measures = []
    for _ in range(runs):
        m = timed(cmd, cwd, timeout, env)
        if m.seconds is None:
            return m
        measures.append(m)
    seconds = sorted(m.seconds for m in measures)[len(measures) // 2]
    rss = max((m.rss_mb for m in measures if m.rss_mb is not None), default=None)
    return Measure(seconds=seconds, rss_mb=rss)


def write_seeds(d: Path, n: int) -> None:
    (d / "seeds").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (d / "seeds" / f"seed_{i}.txt").write_text(f"seed {i}\n")


def write_histodiff(d: Path, n: int, jobs: int) -> None:
    members = ", ".join(str(i) for i in range(n))
    # Commands run in their own work directory: the seed file is named by absolute path.
    seeds = d.resolve() / "seeds"
    (d / "pipeline.yaml").write_text(f"""version: 1
name: sweep
settings: {{ jobs: {jobs}, device: cpu }}
stages:
  prepare:
    uses: command
    run: echo data > ${{outs.data}}
    outs: {{ data: data.txt }}
  pretrain:
    uses: command
    run: cp ${{inputs.data}} ${{outs.model}}
    inputs: {{ data: prepare }}
    outs: {{ model: model.txt }}
  finetune:
    uses: command
    run: cp ${{inputs.model}} ${{outs.model}}
    inputs: {{ model: pretrain }}
    outs: {{ model: model.txt }}
  sample:
    uses: command
    matrix: {{ i: [{members}] }}
    run: cat ${{inputs.model}} {seeds}/seed_${{matrix.i}}.txt > ${{outs.images}}
    inputs: {{ model: finetune }}
    deps: [seeds/seed_${{matrix.i}}.txt]
    outs: {{ images: images.txt }}
  select:
    uses: command
    run: cp ${{inputs.pool}} ${{outs.images}}
    inputs: {{ pool: sample }}
    outs: {{ images: images.txt }}
  evaluate:
    uses: command
    run: cp ${{inputs.images}} ${{outs.metrics}}
    inputs: {{ images: select }}
    outs: {{ metrics: metrics.txt }}
  report:
    uses: command
    run: cat ${{inputs.results}} > ${{outs.table}}
    inputs: {{ results: "evaluate[*]" }}
    outs: {{ table: table.txt }}
""")


def write_snakemake(d: Path, n: int) -> None:
    (d / "Snakefile").write_text(f"""N = {n}

rule all:
    input: "report.txt"

rule prepare:
    output: "data.txt"
    shell: "echo data > {{output}}"

rule pretrain:
    input: "data.txt"
    output: "model.txt"
    shell: "cp {{input}} {{output}}"

rule finetune:
    input: "model.txt"
    output: "finetuned.txt"
    shell: "cp {{input}} {{output}}"

rule sample:
    input: model="finetuned.txt", seed="seeds/seed_{{i}}.txt"
    output: "sample/{{i}}.txt"
    shell: "cat {{input.model}} {{input.seed}} > {{output}}"

rule select:
    input: "sample/{{i}}.txt"
    output: "select/{{i}}.txt"
    shell: "cp {{input}} {{output}}"

rule evaluate:
    input: "select/{{i}}.txt"
    output: "evaluate/{{i}}.txt"
    shell: "cp {{input}} {{output}}"

rule report:
    input: expand("evaluate/{{i}}.txt", i=range(N))
    output: "report.txt"
    shell: "cat {{input}} > {{output}}"
""")


def synthesize_snakemake(d: Path, n: int) -> None:
    """The files `snakemake all` writes for write_snakemake's Snakefile, oldest first."""
    data = b"data\n"
    for name in ("data.txt", "model.txt", "finetuned.txt"):
        (d / name).write_bytes(data)
    samples = [data + (d / "seeds" / f"seed_{i}.txt").read_bytes() for i in range(n)]
    for stage in ("sample", "select", "evaluate"):
        (d / stage).mkdir(exist_ok=True)
        for i, content in enumerate(samples):
            (d / stage / f"{i}.txt").write_bytes(content)
    (d / "report.txt").write_bytes(b"".join(samples))


def write_dvc(d: Path, n: int, env: dict[str, str]) -> None:
    items = ", ".join(str(i) for i in range(n))
    evals = "\n".join(f"      - evaluate/{i}.txt" for i in range(n))
    (d / "dvc.yaml").write_text(f"""stages:
  prepare:
    cmd: echo data > data.txt
    outs: [data.txt]
  pretrain:
    cmd: cp data.txt model.txt
    deps: [data.txt]
    outs: [model.txt]
  finetune:
    cmd: cp model.txt finetuned.txt
    deps: [model.txt]
    outs: [finetuned.txt]
  sample:
    foreach: [{items}]
    do:
      cmd: mkdir -p sample && cat finetuned.txt seeds/seed_${{item}}.txt > sample/${{item}}.txt
      deps:
        - finetuned.txt
        - seeds/seed_${{item}}.txt
      outs:
        - sample/${{item}}.txt
  select:
    foreach: [{items}]
    do:
      cmd: mkdir -p select && cp sample/${{item}}.txt select/${{item}}.txt
      deps:
        - sample/${{item}}.txt
      outs:
        - select/${{item}}.txt
  evaluate:
    foreach: [{items}]
    do:
      cmd: mkdir -p evaluate && cp select/${{item}}.txt evaluate/${{item}}.txt
      deps:
        - select/${{item}}.txt
      outs:
        - evaluate/${{item}}.txt
  report:
    cmd: cat evaluate/*.txt > report.txt
    deps:
{evals}
    outs: [report.txt]
""")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        subprocess.run(cmd, cwd=d, check=True, env=env, stdout=subprocess.DEVNULL)


# ---------------------------------------------------------------- tools


@dataclass
class Tool:
    name: str
    plan: list[str]
    run: list[str]
    setup: object  # (dir, n) -> None
    # (dir, n) -> None: writes what a full run would, when a full run is not started.
    synthesize: object = None


def tools(histodiff: Path | None, jobs: int, env: dict[str, str]) -> list[Tool]:
    out = []
    if histodiff is not None:
        hd = str(histodiff)
        out.append(Tool("histodiff", [hd, "plan", "pipeline.yaml"], [hd, "run", "pipeline.yaml", "-j", str(jobs)],
                        lambda d, n: write_histodiff(d, n, jobs)))
    sm = ["snakemake", "--quiet", "all"]
    out.append(Tool("snakemake", ["snakemake", "-n", "--quiet", "all"], sm + ["--cores", str(jobs)],
                    lambda d, n: write_snakemake(d, n), synthesize_snakemake))
    out.append(Tool("dvc", ["dvc", "status", "-q"], ["dvc", "repro", "-q"], lambda d, n: write_dvc(d, n, env)))
    return out


def dvc_status(cmd: list[str], cwd: Path, timeout: float, env: dict[str, str]) -> Measure:
    """`dvc status -q` exits 1 when something changed (always, before the first run)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        pid, status, usage = os.wait4(proc.pid, 0) if timeout is None else _wait(proc, timeout)
    except TimeoutError:
        return Measure(note=f"> {timeout:.0f} s (timeout)")
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise RuntimeError(f"dvc status failed in {cwd}")
    return Measure(seconds=seconds, rss_mb=usage.ru_maxrss / 1024)


def _wait(proc: subprocess.Popen, timeout: float):
    deadline = time.perf_counter() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            return pid, status, usage
        if time.perf_counter() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            raise TimeoutError
        time.sleep(0.005)


def bench(tool: Tool, n: int, jobs: int, work: Path, args, env, previous: dict) -> Row:
    d = work / f"{tool.name}-{n}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    write_seeds(d, n)
    tool.setup(d, n)
    row = Row(tool.name, n, jobs)
    plan = dvc_status if tool.name == "dvc" else timed
    row.steps["plan"] = plan(tool.plan, d, args.plan_limit, env)
    # A full run predicted to take longer than the limit is not started.
    prev = previous.get(tool.name)
    if prev and prev[1].seconds is None:
        for step in ("run", "noop", "leaf"):
            row.steps[step] = Measure(note=f"skipped (timed out at N={prev[0]})")
        return row
    if prev and prev[1].seconds is not None:
        predicted = prev[1].seconds * n / prev[0]
        if predicted > args.run_limit:
            note = f"skipped (≈{predicted / 60:.0f} min predicted from N={prev[0]})"
            for step in ("run", "noop", "leaf"):
                row.steps[step] = Measure(note=note)
            if tool.synthesize is None:
                return row
            tool.synthesize(d, n)
            row.steps["run"] = Measure(note=note + "; its outputs written by the script")
            row.steps["noop"] = median_of(NOOP_RUNS, tool.run, d, args.run_limit, env)
            row.steps["noop"].note = "(lower bound: no metadata)"
            leaf_change(row, tool, d, n, args, env)
            return row
    row.steps["run"] = timed(tool.run, d, args.run_limit, env)
    if row.steps["run"].seconds is None:
        row.steps["noop"] = row.steps["leaf"] = Measure(note="not run (full run timed out)")
        return row
    row.steps["noop"] = median_of(NOOP_RUNS, tool.run, d, args.run_limit, env)
    leaf_change(row, tool, d, n, args, env)
    return row


def leaf_change(row: Row, tool: Tool, d: Path, n: int, args, env: dict[str, str]) -> None:
    """Edits one sample's input, runs again, and checks the report took the change."""
    (d / "seeds" / "seed_0.txt").write_text("seed 0, changed\n")
    row.steps["leaf"] = timed(tool.run, d, args.run_limit, env)
    check_outputs(tool, d, n, env)


def check_outputs(tool: Tool, d: Path, n: int, env: dict[str, str]) -> None:
    """The runs must have done the work: the report holds every evaluate output."""
    if tool.name == "histodiff":
        text = subprocess.run([tool.run[0], "cat", "report"], cwd=d, env=env, check=True,
                              capture_output=True, text=True).stdout
    else:
        text = (d / "report.txt").read_text()
    lines = text.splitlines()
    if len(lines) != 2 * n or "changed" not in "".join(lines):
        raise RuntimeError(f"{tool.name} N={n}: the report has {len(lines)} lines, expected {2 * n} with the change")


# ---------------------------------------------------------------- report


def table(rows: list[Row], machine: str) -> str:
    out = [SECTION, "",
           f"Machine: {machine}. Sweep: prepare → pretrain → finetune → N × (sample → select → evaluate) → report,",
           "trivial shell jobs (3N + 4 jobs). Times in seconds (wall), plan peak RSS in parentheses;",
           f"no-op: median of {NOOP_RUNS} consecutive runs, every other cell one run.",
           "histodiff and Snakemake run with the same number of concurrent jobs; `dvc repro` runs stages one",
           "at a time (it has no parallel mode). Produced by `python benches/engine_vs_peers.py`.", "",
           "| N | tool | jobs | plan (s, peak RSS) | full run (s) | no-op run (s) | one-leaf change (s) |",
           "|---:|---|---:|---|---|---|---|"]
    for r in rows:
        s = r.steps
        out.append(f"| {r.n} | {r.tool} | {r.jobs} | {s['plan'].cell(rss=True)} | {s['run'].cell()} | "
                   f"{s['noop'].cell()} | {s['leaf'].cell()} |")
    out.append("")
    speedups = speedup_rows(rows)
    if speedups:
        out += ["Speed-up of histodiff over the faster peer measured at the same N (peer time ÷ histodiff",
                "time; \"—\" where no peer has the figure):", "",
                "| N | plan | no-op run | one-leaf change | full run |", "|---:|---:|---:|---:|---:|"]
        out += speedups
        out.append("")
    return "\n".join(out)


def speedup_rows(rows: list[Row]) -> list[str]:
    lines = []
    for n in sorted({r.n for r in rows}):
        ours = next((r for r in rows if r.n == n and r.tool == "histodiff"), None)
        peers = [r for r in rows if r.n == n and r.tool != "histodiff"]
        if ours is None or not peers:
            continue
        cells = []
        for step in ("plan", "noop", "leaf", "run"):
            mine = ours.steps[step].seconds
            theirs = [p.steps[step].seconds for p in peers if p.steps[step].seconds is not None]
            cells.append(f"{min(theirs) / mine:.1f}×" if mine and theirs else "—")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if SECTION in text:
        start = text.index(SECTION)
        rest = text[start + len(SECTION):]
        nxt = rest.find("\n## ")
        end = len(text) if nxt < 0 else start + len(SECTION) + nxt + 1
        text = text[:start] + section + ("\n" + text[end:] if end < len(text) else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    p.add_argument("--histodiff", type=Path, default=Path(os.environ.get(
        "HISTODIFF_BIN", ROOT / "target-run/release/histodiff")))
    p.add_argument("--no-histodiff", action="store_true", help="measure the peers only")
    p.add_argument("--tools", nargs="+", default=["histodiff", "snakemake", "dvc"])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--run-limit", type=float, default=600, help="seconds; longer peer runs are skipped")
    p.add_argument("--plan-limit", type=float, default=600)
    p.add_argument("--work", type=Path, default=None, help="work directory [a temporary one]")
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--prior", nargs="*", default=[], metavar="TOOL:N:SECONDS",
                   help="a full-run time measured earlier (SECONDS or 'timeout'), to predict from")
    args = p.parse_args()

    env = dict(os.environ, DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="b@x",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="b@x")
    hd = None if args.no_histodiff or "histodiff" not in args.tools else args.histodiff.resolve()
    if hd is not None and not hd.exists():
        sys.exit(f"histodiff binary not found at {hd}: build it (cargo build --release --bin histodiff) "
                 "or pass --histodiff / --no-histodiff")
    chosen = [t for t in tools(hd, args.jobs, env) if t.name in args.tools]
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    work = args.work or Path(tempfile.mkdtemp(prefix="histodiff-bench-"))
    rows: list[Row] = []
    previous: dict[str, tuple[int, Measure]] = {}
    for prior in args.prior:
        name, n, secs = prior.split(":")
        previous[name] = (int(n), Measure(note=f"> {args.run_limit:.0f} s (timeout)") if secs == "timeout"
                          else Measure(seconds=float(secs)))
    for n in sorted(args.sizes):
        for tool in chosen:
            print(f"N={n} {tool.name} ...", file=sys.stderr, flush=True)
            row = bench(tool, n, args.jobs, work, args, env, previous)
            rows.append(row)
            print("  " + ", ".join(f"{k}={v.cell(rss=k == 'plan')}" for k, v in row.steps.items()),
                  file=sys.stderr, flush=True)
            if row.steps["run"].seconds is not None or "timeout" in row.steps["run"].note:
                previous[tool.name] = (n, row.steps["run"])
    section = table(rows, machine)
    print(section)
    write_section(args.out, section)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
