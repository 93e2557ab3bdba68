"""``sync --isolate``: every peer of the sync suite in fresh interpreters.

In one process the peers share an allocator, a warm CPU cache and whatever the earlier
peers left behind; a user's script runs one of them alone. With ``--isolate`` each
measurement is a fresh interpreter (``python -B -m benchmarks.suites._sync_isolated KEY
N REPEAT``) that builds one peer, runs it once untimed, then ``REPEAT`` timed runs
(``gc.collect()`` before each), and prints their durations as one JSON line. The parent
starts ``--rounds`` such processes per peer, the peers interleaved and their order rotated
every round, and pools every timed run of a peer into one :class:`Timing` (best and
median over all processes). Interpreter start-up and imports are not timed.
``--clock cpu`` times the runs by the CPU time of the thread (``time.thread_time``)
instead of the wall clock: on a shared machine the wall clock counts the time other
processes hold the core, which made single runs vary by 2-3x here.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from typing import Any

from benchmarks._timing import Timing
from benchmarks.harness import REPO_ROOT, PeerResult, SuiteContext

ISOLATED_PEERS = ("builtins", "toolz", "fluent", "module")
"""The in-process peers of the sync suite (tinypl 0.1.0 runs in its own venv anyway)."""


def _child(key: str, n: int, repeat: int) -> dict[str, Any]:
    from benchmarks.suites import sync

    builds = {
        "builtins": sync._builtins,
        "toolz": sync._toolz,
        "fluent": sync._tinypl_fluent,
        "module": sync._tinypl_module_level,
    }
    run, check = builds[key](n)
    start = time.perf_counter()
    result = run()
    warmup = time.perf_counter() - start
    error = None if check is None else check(result)
    del result
    samples, cpu = [], []
    for _ in range(repeat):
        gc.collect()
        start, start_cpu = time.perf_counter(), time.thread_time()
        run()
        cpu.append(time.thread_time() - start_cpu)
        samples.append(time.perf_counter() - start)
    return {"samples": samples, "cpu": cpu, "warmup": warmup, "check_error": error}


def measure_isolated(ctx: SuiteContext, n: int, labels: dict[str, str]) -> dict[str, PeerResult]:
    """``--rounds`` fresh processes per peer, interleaved; one pooled result per peer."""
    rounds: int = ctx.options.rounds
    pooled: dict[str, list[float]] = {key: [] for key in ISOLATED_PEERS}
    warmups: dict[str, list[float]] = {key: [] for key in ISOLATED_PEERS}
    errors: dict[str, str] = {}
    keys = list(ISOLATED_PEERS)
    for number in range(rounds):
        shift = number % len(keys)
        for key in keys[shift:] + keys[:shift]:
            ctx.progress(f"isolated round {number + 1}/{rounds}: {key}")
            command = [sys.executable, "-B", "-m", __name__, key, str(n), str(ctx.repeat)]
            done = subprocess.run(
                command, cwd=REPO_ROOT, capture_output=True, text=True, check=False
            )
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            if not lines:
                errors[key] = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
                continue
            data = json.loads(lines[-1])
            if data["check_error"]:
                errors[key] = f"WRONG RESULT: {data['check_error']}"
            pooled[key] += data["cpu" if ctx.options.clock == "cpu" else "samples"]
            warmups[key].append(data["warmup"])
    results = {}
    for key in keys:
        clock = "CPU time" if ctx.options.clock == "cpu" else "isolated"
        result = PeerResult(label=f"{labels[key]} [{clock}]", params={"n": n})
        if pooled[key]:
            result.timing = Timing(
                samples=pooled[key],
                warmup=min(warmups[key]),
                check_error=errors.get(key),
                extra={"processes": len(warmups[key]), "requested_repeat": len(pooled[key])},
            )
        else:
            result.error = errors.get(key, "no run")
        results[key] = result
    return results


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))), flush=True)
