"""Measure one case with tinypl 0.1.0; executed by the *old* venv's interpreter.

Usage (normally invoked by the harness, see ``benchmarks.legacy``)::

    /work/venvs/t010/bin/python -B -E -s benchmarks/_legacy_runner.py CASE PARAMS_JSON

``CASE`` is a key of :data:`CASES`; ``PARAMS_JSON`` is a JSON object with the case
parameters plus ``repeat`` and ``warmup``.  The script prints exactly one line starting
with :data:`RESULT_MARKER` followed by a JSON document (other output, such as messages
printed by the library, is ignored by the harness).

The script imports its siblings ``_timing`` and ``_workloads`` as top-level modules (the
script's directory is ``sys.path[0]``); it must never put the repository root on
``sys.path``, because ``import tinypl`` would then pick up the *new* library.

To add a case for a new suite: write a builder ``(pl, params) -> (run, check)`` and
register it in :data:`CASES`.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _timing  # type: ignore[import-not-found]
import _workloads  # type: ignore[import-not-found]

RESULT_MARKER = "@@TINYPL_LEGACY_RESULT@@ "

Run = Callable[[], Any]
Check = Callable[[Any], "str | None"]
Builder = Callable[[Any, dict[str, Any]], tuple[Run, Check]]


def _sync_module_level(pl: Any, params: dict[str, Any]) -> tuple[Run, Check]:
    n = int(params["n"])
    return _workloads.tinypl_sync_module_level(pl, n), _workloads.make_sync_check(n)


def _thread_map(pl: Any, params: dict[str, Any]) -> tuple[Run, Check]:
    n = int(params["n"])
    fn = _workloads.FUNCTIONS[str(params["fn"])]
    run = _workloads.tinypl_thread_module_level(pl, n, fn, int(params["workers"]))
    return run, _workloads.make_multiset_check(n)


def _process_map(pl: Any, params: dict[str, Any]) -> tuple[Run, Check]:
    """``pl.process.map`` (0.1.0 defaults: ``multiprocessing`` context, i.e. fork on Linux).

    With ``ring_bytes``, results travel as in 0.1.0's README: the worker writes them into
    a ``pl.process.SharedMemoryRingBuffer`` (created once per case, like a module-level
    buffer) and the consumer reads them back.  A capped run leaves unread entries in the
    ring, so the next run gets a fresh buffer.
    """
    n, workers, name = int(params["n"]), int(params["workers"]), str(params["fn"])
    cap = params.get("cap")
    cap = None if cap is None else float(cap)
    kind = "array" if name == "array" else "value"
    fn = _workloads.process_function(name, params.get("loops"))
    check = _workloads.make_stats_check(n, _workloads.expected_process_checksum(name, n))
    ring_bytes = params.get("ring_bytes")
    if not ring_bytes:
        plain = _workloads.tinypl_process_module_level(pl, n, fn, workers, kind=kind, cap=cap)
        return plain, check
    rings = [pl.process.SharedMemoryRingBuffer(int(ring_bytes))]

    def ring_run() -> dict[str, Any]:
        ring = rings[-1]
        ring_fn = functools.partial(_workloads.write_to_ring, ring, fn)
        one_run = _workloads.tinypl_process_module_level(
            pl, n, ring_fn, workers, kind=kind, cap=cap, read=ring.read
        )
        stats: dict[str, Any] = one_run()
        if stats["capped"]:
            rings.append(pl.process.SharedMemoryRingBuffer(int(ring_bytes)))
        return stats

    return _workloads.LoggedRun(ring_run), check


CASES: dict[str, Builder] = {
    "sync.module_level": _sync_module_level,
    "thread.map": _thread_map,
    "process.map": _process_map,
}
"""Case name -> builder.  Extension point for the ``process``/``dataloader`` suites."""


def _environment(pl: Any) -> dict[str, Any]:
    from importlib import metadata

    try:
        version = metadata.version("tinypl")
    except metadata.PackageNotFoundError:
        version = None
    return {
        "tinypl_version": version,
        "tinypl_file": getattr(pl, "__file__", None),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "implementation": platform.python_implementation(),
    }


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.flush()
    sys.stdout.write(RESULT_MARKER + json.dumps(payload) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    """Entry point; returns the process exit status."""
    if len(argv) != 2 or argv[0] not in {*CASES, "info"}:
        _emit({"ok": False, "error": f"usage: CASE PARAMS_JSON with CASE in {sorted(CASES)}"})
        return 2
    case, params = argv[0], json.loads(argv[1])
    try:
        import tinypl as pl
    except Exception as exc:
        _emit({"ok": False, "error": f"import tinypl failed: {type(exc).__name__}: {exc}"})
        return 1
    env = _environment(pl)
    repo_root = Path(__file__).resolve().parent.parent
    pl_file = env["tinypl_file"]
    if pl_file is None or Path(pl_file).resolve().is_relative_to(repo_root):
        _emit({"ok": False, "error": f"imported the wrong tinypl ({pl_file})", "env": env})
        return 1
    if case == "info":
        _emit({"ok": True, "env": env})
        return 0
    try:
        run, check = CASES[case](pl, params)
        time_cap = params.get("time_cap")
        timing = _timing.measure(
            run,
            int(params["repeat"]),
            warmup=int(params.get("warmup", 1)),
            check=check,
            time_cap=None if time_cap is None else float(time_cap),
        )
    except Exception as exc:
        _emit(
            {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
                "env": env,
            }
        )
        return 1
    log = getattr(run, "log", None)
    if log is not None:  # per-run consumer stats (process suite), warm-up first
        timing.extra["runs"] = log
    _emit({"ok": True, "env": env, "timing": timing.to_dict()})
    return 0


if __name__ == "__main__":
    status = main(sys.argv[1:])
    sys.stdout.flush()
    # tinypl 0.1.0 uses daemon worker threads; exit without waiting on stragglers.
    os._exit(status)
