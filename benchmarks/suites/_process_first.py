"""The ``cpu`` workload in fresh interpreters: the first run of a process, and a second.

In the in-process table every peer runs after a warm-up, so nobody pays a first run
there (tinypl's forkserver boot, the imports of each library). Here each repeat is a
new interpreter (``python -m benchmarks.suites._process_first PEER ...``) that imports
its peer, runs the serial map once as its own reference, then the peer twice: the
first run of the process and a warm second run, each timed from building the pool or
pipeline to its shutdown.  Speedup = that process's serial time / the run's time,
median over ``--first-repeat`` processes.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import _workloads as w
from benchmarks._bytecode import code_note, code_root
from benchmarks.harness import SuiteContext
from benchmarks.report import Table, fmt_float, fmt_ratio, verdict_min
from benchmarks.suites import _process_peers as p
from benchmarks.suites.startup import _clean_env

MARKER = "@@BENCH_FIRST@@ "
TARGET = 1.8
"""Issue 17: speedup >= 1.8 with default settings, the first run of the process too."""

PEERS: dict[str, tuple[str, Any]] = {
    "ppe": ("ProcessPoolExecutor.map (fork)", p._executor),
    "mpire": ("mpire WorkerPool.imap (fork)", p._mpire),
    "torch": ("torch DataLoader (fork)", p._torch),
    "fluent": ("tinypl Pipe.map.process (defaults)", p._tinypl_fluent),
    "cold": ("tinypl, pl.process.keep_warm(0)", p._tinypl_fluent),
}


HEADERS = ["peer", "first run s", "speedup", "target", "first item s", "2nd run s"]
HEADERS += ["speedup", "target", "first item s", "status"]


def _child(peer: str, n: int, loops: int, workers: int) -> dict[str, Any]:
    """Runs in the fresh interpreter."""
    fn = w.process_function("spin", loops)
    label, builder = PEERS[peer]
    if peer == "cold":
        p.new_tinypl().process.keep_warm(0)
    body = builder(n, fn, workers, "value", None)  # imports its library
    t0 = time.perf_counter()
    serial = w.consume("value", map(fn, range(n)), t0, None)
    out: dict[str, Any] = {"serial_s": time.perf_counter() - t0, "runs": []}
    for _ in range(2):
        t0 = time.perf_counter()
        stats = body(t0)
        elapsed = time.perf_counter() - t0
        if stats["checksum"] != serial["checksum"] or stats["items"] != n:
            raise RuntimeError(f"{label}: WRONG RESULT")
        out["runs"].append({"run_s": elapsed, "first_s": stats["first_s"]})
    return out


def _fresh(peer: str, n: int, loops: int, workers: int, root: Path) -> dict[str, Any]:
    """One fresh interpreter run from ``root`` (see ``_bytecode.code_root``)."""
    command = [sys.executable, "-B", "-m", "benchmarks.suites._process_first"]
    proc = subprocess.run(
        [*command, peer, str(n), str(loops), str(workers)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
        env=_clean_env(),
        check=False,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            result: dict[str, Any] = json.loads(line[len(MARKER) :])
            return result
    tail = (proc.stderr.strip().splitlines() or ["<no output>"])[-1]
    raise RuntimeError(f"exit {proc.returncode}: {tail[:160]}")


def first_run_table(ctx: SuiteContext, n: int, loops: int) -> tuple[Table, list[dict[str, Any]]]:
    """Every peer in ``--first-repeat`` fresh processes, interleaved (peer by peer
    within each round, so the machine's load drifts over all of them alike)."""
    repeat, workers = ctx.options.first_repeat, ctx.options.workers
    samples: dict[str, list[dict[str, Any]]] = {key: [] for key in PEERS}
    errors: dict[str, str] = {}
    root = code_root(ctx.options.from_source)
    for round_ in range(repeat):
        for key in PEERS:
            if key in errors:
                continue
            ctx.progress(f"cpu, fresh process: {PEERS[key][0]} (round {round_ + 1}/{repeat})")
            try:
                samples[key].append(_fresh(key, n, loops, workers, root))
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                errors[key] = str(exc)
    table = Table(
        title=f"cpu, fresh process per repeat: spin x {n} items, {workers} workers, median of "
        f"{repeat} (speedup = that process's serial time / run time; target >= {TARGET:g}x)",
        headers=HEADERS,
    )
    rows: list[dict[str, Any]] = []
    for key, (label, _) in PEERS.items():
        if key in errors or not samples[key]:
            table.add_row([label, *["-"] * 8, f"n/a: {errors.get(key, 'no run')}"])
            continue
        row = _row(samples[key])
        rows.append({"peer": key, **row})
        cells = []
        for run in ("first", "second"):
            speedup = row[f"{run}_speedup"]
            cells += [fmt_float(row[f"{run}_s"], 3), fmt_ratio(speedup)]
            cells += [verdict_min(speedup, TARGET), fmt_float(row[f"{run}_item_s"], 3)]
        table.add_row([label, *cells, "ok"])
    table.notes += [
        "each repeat is a new interpreter: the first run pays everything a script that runs "
        "one pipeline pays (pool start, tinypl's forkserver boot, imports in the workers); "
        "the second run of the same process shows what is left once warm (tinypl reuses "
        "the workers of the first run unless keep_warm(0))",
        "peers with their defaults (fork on Linux for ProcessPoolExecutor, mpire and torch)",
        code_note(ctx.options.from_source),
    ]
    return table, rows


def _row(samples: list[dict[str, Any]]) -> dict[str, float]:
    def median(values: list[float]) -> float:
        return float(statistics.median(values))

    serial = median([s["serial_s"] for s in samples])
    row: dict[str, float] = {"serial_s": serial}
    for index, run in enumerate(("first", "second")):
        seconds = median([s["runs"][index]["run_s"] for s in samples])
        row[f"{run}_s"] = seconds
        row[f"{run}_speedup"] = serial / seconds
        row[f"{run}_item_s"] = median([s["runs"][index]["first_s"] for s in samples])
    return row


if __name__ == "__main__":
    peer_arg, n_arg, loops_arg, workers_arg = sys.argv[1:5]
    result = _child(peer_arg, int(n_arg), int(loops_arg), int(workers_arg))
    print(MARKER + json.dumps(result), flush=True)
