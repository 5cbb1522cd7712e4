#!/usr/bin/env python3
r"""Engine overhead of histodiff against Snakemake and DVC on the same sweep.

Shape (issue "engine", point 9): prepare -> pretrain -> finetune -> N x (sample_i ->
select_i -> evaluate_i) -> report, every job a trivial shell command (`echo`, `cp`,
`cat`) writing a small file, so what is measured is the orchestrator, not the work.
Each sample_i also reads its own input file seeds/seed_i.txt, so a "one-leaf change"
edits seeds/seed_0.txt and must re-run exactly sample_0, select_0, evaluate_0, report.
The report job concatenates N files as `printf '%s\n' PATHS | xargs cat`: at N = 100,000
a `cat PATHS` exceeds the kernel's argument limit, while both histodiff and Snakemake
hand a line over 64 KiB to the shell as a script file, in which `printf` is a builtin.

For each N and tool, in a fresh directory:
  plan      histodiff plan / snakemake -n / dvc status   (wall time and peak RSS)
  full run  histodiff run / snakemake --cores J / dvc repro
  no-op     the same run again, nothing to do (median of NOOP_RUNS consecutive runs: it
            is idempotent, and one sample of a sub-second command on a shared machine
            can be twice its usual time)
  one leaf  seeds/seed_0.txt changed, run again
Peak RSS is the child's own (os.wait4), children of the child included once waited.

Limits. histodiff is the subject: its full run is started at every N, with its own limit
(--histodiff-run-limit, 3600 s), so that its no-op and one-leaf change are always
measured. A peer's steps are limited by --plan-limit and --run-limit (600 s each); a step
that does not finish is killed with its process group and recorded as a lower bound,
"> 600 s (did not finish)". A peer whose plan does not finish is not run: a run builds at
least the DAG its plan builds, so its full run, no-op and one-leaf cells are recorded as
"≥ 600 s" lower bounds, and so is its plan at every larger N. A peer's full run is also
skipped when its time at a smaller N, scaled linearly, predicts more than --run-limit. For
Snakemake the script then writes the files that full run would have written (the same
bytes, in dependency order so every output is newer than its inputs) and still measures
the no-op run and the one-leaf change. Those files carry no Snakemake metadata, so its
no-op checks modification times only: a lower bound of its no-op time after a real run,
which also reads 3N + 4 metadata records. The speed-up table shows "≥ X×" where the peer's
figure is a lower bound. A step that fails is reported on stderr and as a "failed" cell,
and the script goes on with the next tool and N (exit status 1 at the end).

Usage (after `source scripts/env.sh`):
  python benches/engine_vs_peers.py --sizes 1000 10000 100000 \
      --histodiff target/release/histodiff --prior dvc:100:timeout
Writes the Markdown table, with the histodiff commit and the date, to stdout and to the
"Engine vs Snakemake and DVC" section of BENCHMARKS.md (replacing that section if present).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Engine vs Snakemake and DVC"
STEPS = ("plan", "run", "noop", "leaf")
SUBJECT = "histodiff"
NOOP_RUNS = 3
ONE_SAMPLE_OVER = 60.0


def seconds_text(s: float) -> str:
    return f"{s:.0f}" if float(s).is_integer() else f"{s:.2f}"


def duration_text(s: float) -> str:
    """A limit as the issue words it: "10 min", or seconds when not whole minutes."""
    return f"{s / 60:.0f} min" if s >= 60 and s % 60 == 0 else f"{seconds_text(s)} s"


def rounded_text(s: float) -> str:
    """A prediction: whole minutes from two minutes on, else whole seconds."""
    return f"{s / 60:.0f} min" if s >= 120 else f"{s:.0f} s"


@dataclass
class Measure:
    """One cell: a time, a lower bound on it, or a note why there is none."""

    seconds: float | None = None
    rss_mb: float | None = None
    note: str = ""
    # "": `seconds` was measured; ">": the command did not finish within `seconds`;
    # "≥": the true figure is at least `seconds`, from another measurement.
    bound: str = ""

    @classmethod
    def timeout(cls, limit: float) -> Measure:
        return cls(seconds=limit, bound=">", note="(did not finish)")

    @classmethod
    def at_least(cls, seconds: float, why: str) -> Measure:
        return cls(seconds=seconds, bound="≥", note=f"({why})")

    def cell(self, rss: bool = False) -> str:
        if self.seconds is None:
            return self.note or "—"
        text = f"{self.bound} {seconds_text(self.seconds)} s" if self.bound else f"{self.seconds:.2f}"
        if rss and self.rss_mb is not None:
            text += f" ({self.rss_mb:.0f} MB)"
        return text + (f" {self.note}" if self.note else "")


@dataclass
class Row:
    tool: str
    n: int
    jobs: int
    steps: dict[str, Measure] = field(default_factory=dict)
    failed: bool = False


@dataclass
class Past:
    """What a peer did at smaller N: the grounds for skipping or bounding it at larger N."""

    run: tuple[int, Measure] | None = None  # the last full run measured or timed out
    plan_timeout_n: int | None = None  # the N at which its plan did not finish


def timed(cmd: list[str], cwd: Path, timeout: float, env: dict[str, str], ok: tuple[int, ...] = (0,)) -> Measure:
    """Runs `cmd`: its wall time and peak RSS, or Measure.timeout when it does not finish in
    `timeout` seconds (its process group is then killed). Raises on an exit code not in `ok`."""
    log = tempfile.TemporaryFile()
    # Every step starts with the previous step's writes on disk: otherwise a no-op run
    # timed right after a full run shares the disk and the CPU with the kernel writing
    # back that run's outputs, which is the full run's cost, not the no-op's.
    os.sync()
    start = time.perf_counter()
    # Its own process group, so that a timeout also kills the jobs it started.
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    status, usage, killed = wait_with_deadline(proc, timeout)
    seconds = time.perf_counter() - start
    if killed:
        return Measure.timeout(timeout)
    code = os.waitstatus_to_exitcode(status)
    if code not in ok:
        log.seek(0)
        tail = log.read().decode(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd[:3])}... exited {code} in {cwd}:\n{tail}")
    # ru_maxrss is KiB on Linux.
    return Measure(seconds=seconds, rss_mb=usage.ru_maxrss / 1024)


def wait_with_deadline(proc: subprocess.Popen, timeout: float):
    """Waits for `proc` (blocking, so the time is exact), killing its process group at the
    deadline or when this script is interrupted. Returns (status, rusage, killed)."""
    fired = threading.Event()

    def kill() -> None:
        fired.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        kill()
        raise
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return status, usage, fired.is_set()


def median_of(runs: int, cmd: list[str], cwd: Path, timeout: float, env: dict[str, str]) -> Measure:
    """`runs` consecutive runs of an idempotent command: the median time, the peak RSS; the
    first run that does not finish is the result. A run slower than ONE_SAMPLE_OVER seconds
    is not repeated: at that length one sample is steady, and three would cost the
    session's time."""
    measures = []
    for _ in range(runs):
        m = timed(cmd, cwd, timeout, env)
        if m.bound:
            return m
        measures.append(m)
        if m.seconds > ONE_SAMPLE_OVER:
            m.note = "(one run)"
            return m
    seconds = sorted(m.seconds for m in measures)[len(measures) // 2]
    rss = max((m.rss_mb for m in measures if m.rss_mb is not None), default=None)
    return Measure(seconds=seconds, rss_mb=rss)


# ---------------------------------------------------------------- workflow writers


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
    run: printf '%s\\n' ${{inputs.results}} | xargs cat > ${{outs.table}}
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
    shell: "printf '%s\\\\n' {{input}} | xargs cat > {{output}}"
""")


def synthesize_snakemake(d: Path, n: int) -> None:
    """The files `snakemake all` writes for write_snakemake's Snakefile, oldest first: one write
    per file, O(N) (N = 100,000: 300,000 files in about 9 s)."""
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
    cmd: printf '%s\\n' evaluate/*.txt | xargs cat > report.txt
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
    plan_name: str = "plan"  # how the cells name its plan step
    plan_ok: tuple[int, ...] = (0,)  # exit codes of a plan that worked
    # (dir, n) -> None: writes what a full run would, when a full run is not started.
    synthesize: object = None


def tools(histodiff: Path | None, jobs: int, env: dict[str, str]) -> list[Tool]:
    out = []
    if histodiff is not None:
        hd = str(histodiff)
        out.append(Tool(SUBJECT, [hd, "plan", "pipeline.yaml"], [hd, "run", "pipeline.yaml", "-j", str(jobs)],
                        lambda d, n: write_histodiff(d, n, jobs)))
    sm = ["snakemake", "--quiet", "all"]
    out.append(Tool("snakemake", ["snakemake", "-n", "--quiet", "all"], sm + ["--cores", str(jobs)],
                    lambda d, n: write_snakemake(d, n), "dry run", synthesize=synthesize_snakemake))
    # `dvc status -q` exits 1 when something changed (always, before the first run).
    out.append(Tool("dvc", ["dvc", "status", "-q"], ["dvc", "repro", "-q"], lambda d, n: write_dvc(d, n, env),
                    "`dvc status`", (0, 1)))
    return out


def bench(tool: Tool, n: int, work: Path, args, env: dict[str, str], past: Past) -> Row:
    """One tool at one N, in a fresh directory; a step that fails leaves "failed" cells."""
    d = work / f"{tool.name}-{n}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    row = Row(tool.name, n, args.jobs)
    try:
        write_seeds(d, n)
        tool.setup(d, n)
        measure(row, tool, d, n, args, env, past)
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        print(f"{tool.name} N={n} failed: {e}", file=sys.stderr, flush=True)
        row.failed = True
        for step in STEPS:
            row.steps.setdefault(step, Measure(note="failed (error on stderr)"))
    return row


def measure(row: Row, tool: Tool, d: Path, n: int, args, env: dict[str, str], past: Past) -> None:
    """Fills `row` step by step; a peer's steps may be skipped or bounded, histodiff's never."""
    subject = tool.name == SUBJECT
    row.steps["plan"] = plan_step(tool, d, args, env, past, subject)
    if row.steps["plan"].bound and not subject:
        bound_by_plan(row, tool, args.plan_limit)
        return
    skip = None if subject else skip_reason(n, past, args.run_limit)
    if skip is not None:
        skipped_run(row, tool, d, n, skip, args.run_limit, env)
        return
    limit = args.histodiff_run_limit if subject else args.run_limit
    row.steps["run"] = timed(tool.run, d, limit, env)
    if row.steps["run"].bound:
        row.steps["noop"] = row.steps["leaf"] = Measure(note="not run (full run did not finish)")
        return
    noop_and_leaf(row, tool, d, n, limit, env)


def plan_step(tool: Tool, d: Path, args, env: dict[str, str], past: Past, subject: bool) -> Measure:
    """The plan's time, or for a peer whose plan did not finish at a smaller N, a bound:
    a plan at larger N builds a larger DAG."""
    if past.plan_timeout_n is not None and not subject:
        limit = duration_text(args.plan_limit)
        return Measure.at_least(args.plan_limit, f"lower bound: not started, it did not finish in {limit} "
                                                 f"at N={past.plan_timeout_n}")
    return timed(tool.plan, d, args.plan_limit, env, tool.plan_ok)


def bound_by_plan(row: Row, tool: Tool, plan_limit: float) -> None:
    """A peer whose plan did not finish: every run builds at least that DAG, so none is
    started and each is recorded as a lower bound."""
    why = f"its {tool.plan_name} did not finish in {duration_text(plan_limit)}"
    row.steps["run"] = Measure.at_least(plan_limit, f"lower bound, not started: {why}")
    row.steps["noop"] = Measure.at_least(plan_limit, f"lower bound: {why}")
    row.steps["leaf"] = Measure.at_least(plan_limit, f"lower bound: {why}")


def skip_reason(n: int, past: Past, run_limit: float) -> str | None:
    """Why a peer's full run is not started at `n`, or None to start it."""
    if past.run is None:
        return None
    n0, run = past.run
    if run.bound:
        return f"skipped (did not finish in {duration_text(run.seconds)} at N={n0})"
    predicted = run.seconds * n / n0
    if predicted > run_limit:
        return f"skipped (≈{rounded_text(predicted)} predicted from N={n0})"
    return None


def skipped_run(row: Row, tool: Tool, d: Path, n: int, reason: str, limit: float, env: dict[str, str]) -> None:
    """A peer's full run not started: where the script can write that run's outputs, its no-op
    run and one-leaf change are still measured, the no-op as a lower bound (no metadata)."""
    row.steps["run"] = row.steps["noop"] = row.steps["leaf"] = Measure(note=reason)
    if tool.synthesize is None:
        return
    tool.synthesize(d, n)
    row.steps["run"] = Measure(note=reason + "; its outputs written by the script")
    noop_and_leaf(row, tool, d, n, limit, env, synthesized=True)


def noop_and_leaf(row: Row, tool: Tool, d: Path, n: int, limit: float, env: dict[str, str],
                  synthesized: bool = False) -> None:
    noop = row.steps["noop"] = median_of(NOOP_RUNS, tool.run, d, limit, env)
    if noop.bound:
        # A one-leaf change does at least a no-op's work: it checks every job too.
        row.steps["leaf"] = Measure.at_least(limit, "lower bound: its no-op run did not finish")
        return
    if synthesized:
        noop.bound, noop.note = "≥", "(lower bound: no metadata)"
    leaf_change(row, tool, d, n, limit, env)


def leaf_change(row: Row, tool: Tool, d: Path, n: int, limit: float, env: dict[str, str]) -> None:
    """Edits one sample's input, runs again, and checks the report took the change."""
    (d / "seeds" / "seed_0.txt").write_text("seed 0, changed\n")
    row.steps["leaf"] = timed(tool.run, d, limit, env)
    if not row.steps["leaf"].bound:
        check_outputs(tool, d, n, env)


def check_outputs(tool: Tool, d: Path, n: int, env: dict[str, str]) -> None:
    """The runs must have done the work: the report holds every evaluate output."""
    if tool.name == SUBJECT:
        text = subprocess.run([tool.run[0], "cat", "report"], cwd=d, env=env, check=True,
                              capture_output=True, text=True).stdout
    else:
        text = (d / "report.txt").read_text()
    lines = text.splitlines()
    if len(lines) != 2 * n or "changed" not in "".join(lines):
        raise RuntimeError(f"{tool.name} N={n}: the report has {len(lines)} lines, expected {2 * n} with the change")


def remember(past: Past, row: Row) -> None:
    """Keeps what later N's skipping and bounds rest on."""
    plan, run = row.steps["plan"], row.steps["run"]
    if plan.bound and past.plan_timeout_n is None:
        past.plan_timeout_n = row.n
    if run.seconds is not None and run.bound in ("", ">"):
        past.run = (row.n, run)


# ---------------------------------------------------------------- report


def table(rows: list[Row], machine: str, build: str, args) -> str:
    out = [SECTION, "",
           f"Machine: {machine}. Sweep: prepare → pretrain → finetune → N × (sample → select → evaluate) → report,",
           "trivial shell jobs (3N + 4 jobs). Times in seconds (wall), plan peak RSS in parentheses;",
           f"no-op: median of {NOOP_RUNS} consecutive runs (one run where it took over {ONE_SAMPLE_OVER:.0f} s), every other cell one run.",
           "histodiff and Snakemake run with the same number of concurrent jobs; `dvc repro` runs stages one",
           "at a time (it has no parallel mode). Produced by `python benches/engine_vs_peers.py`.",
           f"Limits: a peer's plan {seconds_text(args.plan_limit)} s, its runs {seconds_text(args.run_limit)} s; "
           f"histodiff's runs {seconds_text(args.histodiff_run_limit)} s.",
           "\"> T s (did not finish)\": killed at the limit T; \"≥ T s\": a lower bound, its note says why.",
           build, "",
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
                "time; \"≥\" where that peer's figure is a lower bound (a limit or a no-metadata no-op); \"—\" where no",
                "peer has the figure):", "",
                "| N | plan | no-op run | one-leaf change | full run |", "|---:|---:|---:|---:|---:|"]
        out += speedups
        out.append("")
    return "\n".join(out)


def speedup_rows(rows: list[Row]) -> list[str]:
    lines = []
    for n in sorted({r.n for r in rows}):
        ours = next((r for r in rows if r.n == n and r.tool == SUBJECT), None)
        peers = [r for r in rows if r.n == n and r.tool != SUBJECT]
        if ours is None or not peers:
            continue
        cells = [speedup(ours.steps[step], [p.steps[step] for p in peers]) for step in ("plan", "noop", "leaf", "run")]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines


def speedup(ours: Measure, peers: list[Measure]) -> str:
    """Fastest peer ÷ histodiff. A peer's lower bound is the fastest only when it is below
    every measured peer time, and then the ratio is a lower bound too."""
    figures = [(m.seconds, bool(m.bound)) for m in peers if m.seconds is not None]
    if not ours.seconds or not figures:
        return "—"
    theirs, peer_bound = min(figures)  # on a tie the measured figure comes first
    if ours.bound and peer_bound:
        return "—"
    prefix = "≥ " if peer_bound else "≤ " if ours.bound else ""
    return f"{prefix}{theirs / ours.seconds:.1f}×"


def build_line(histodiff: Path | None) -> str:
    """The commit of the tree the table was made from, the binary's build time, the date."""
    today = datetime.date.today().isoformat()
    if histodiff is None:
        return f"Made on {today} (peers only)."
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    built = datetime.datetime.fromtimestamp(histodiff.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    return f"histodiff at commit {commit} (binary built {built}); made on {today}."


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


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    p.add_argument("--histodiff", type=Path, default=Path(os.environ.get(
        "HISTODIFF_BIN", ROOT / "target-run/release/histodiff")))
    p.add_argument("--no-histodiff", action="store_true", help="measure the peers only")
    p.add_argument("--tools", nargs="+", default=[SUBJECT, "snakemake", "dvc"])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--run-limit", type=float, default=600,
                   help="seconds a peer's run may take; a longer one is a lower bound, and a full run "
                        "predicted to be longer is skipped")
    p.add_argument("--histodiff-run-limit", type=float, default=3600,
                   help="seconds a histodiff run may take; its full run is never skipped")
    p.add_argument("--plan-limit", type=float, default=600,
                   help="seconds a plan may take; a peer whose plan does not finish is not run")
    p.add_argument("--work", type=Path, default=None, help="work directory [a temporary one]")
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--prior", nargs="*", default=[], metavar="TOOL:N:SECONDS",
                   help="a peer's full-run time measured earlier (SECONDS or 'timeout'), to predict from")
    return p.parse_args()


def priors(args) -> dict[str, Past]:
    past: dict[str, Past] = {}
    for prior in args.prior:
        name, n, secs = prior.split(":")
        run = Measure.timeout(args.run_limit) if secs == "timeout" else Measure(seconds=float(secs))
        past[name] = Past(run=(int(n), run))
    return past


def main() -> int:
    args = parse_args()
    env = dict(os.environ, DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="b@x",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="b@x")
    hd = None if args.no_histodiff or SUBJECT not in args.tools else args.histodiff.resolve()
    if hd is not None and not hd.exists():
        sys.exit(f"histodiff binary not found at {hd}: build it (cargo build --release --bin histodiff) "
                 "or pass --histodiff / --no-histodiff")
    chosen = [t for t in tools(hd, args.jobs, env) if t.name in args.tools]
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    work = args.work or Path(tempfile.mkdtemp(prefix="histodiff-bench-"))
    rows: list[Row] = []
    past = priors(args)
    for n in sorted(args.sizes):
        for tool in chosen:
            print(f"N={n} {tool.name} ...", file=sys.stderr, flush=True)
            row = bench(tool, n, work, args, env, past.setdefault(tool.name, Past()))
            rows.append(row)
            print("  " + ", ".join(f"{k}={v.cell(rss=k == 'plan')}" for k, v in row.steps.items()),
                  file=sys.stderr, flush=True)
            remember(past[tool.name], row)
    section = table(rows, machine, build_line(hd), args)
    print(section)
    write_section(args.out, section)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if any(r.failed for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
