"""Suite ``startup``: import time and time to the first item of a process stage.

Every figure comes from a fresh interpreter (a subprocess of this harness), so nothing
is cached between repeats except the operating system's file cache.

1. ``import``: ``python -X importtime -c "import tinypl"`` against the same for
   ``toolz``; the cumulative microseconds of the top-level module, median of
   ``--import-repeat`` fresh processes.  Target: tinypl <= 3x toolz.
2. ``first-item``: a user script (written to a temporary folder) runs
   ``Pipe(range(n)).map(f).process(2, start_method=M)`` for M in fork, forkserver and
   spawn, once with ``import torch`` at its top and once without, once with the stage
   function taken from a user's module that imports torch, and torch's
   ``DataLoader(num_workers=2, multiprocessing_context=M)`` as the peer.  Each script
   runs the pipeline twice: the first run pays the start of the workers (and for
   forkserver the server's boot), the second shows a warm run in the same process.
   Targets (issue 17): first item <= 200 ms on the first run, <= 50 ms warm.

The same parts run as ``python -m benchmarks process --part startup``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._bytecode import code_note, code_root
from benchmarks.harness import SuiteContext
from benchmarks.report import Section, SuiteReport, Table, fmt_float, fmt_ratio, ratio
from benchmarks.suites.base import Part, Suite, add_part_option, run_parts

IMPORT_TARGET = 3.0
FIRST_TARGET_S = 0.2
WARM_TARGET_S = 0.05
IMPORT_REPEAT = 7
FIRST_REPEAT = 3
METHODS = ("fork", "forkserver", "spawn")
HEAVY = ("numpy", "cloudpickle", "multiprocessing", "torch")
"""Modules whose presence after ``import tinypl`` is reported (issue 8)."""
MARKER = "@@BENCH_STARTUP@@ "
LIBRARY = "bench_user_library"

# The user's script: its top-level imports are what each spawn/forkserver worker pays
# again when it imports the main module.
SCRIPT = """\
import sys, time
_T0 = time.perf_counter()
sys.path.insert(0, {root!r})
{imports}
IMPORTS_S = time.perf_counter() - _T0

if "work" not in globals():  # not imported from the user's library module

    def work(x):
        return x + 1


def one_run(peer, method, n):
    t0 = time.perf_counter()
    if peer == "tinypl":
        it = iter(tinypl.Pipe(range(n)).map(work).process(2, start_method=method))
    else:
        loader = DataLoader(_Items(n), batch_size=None, num_workers=2,
                            multiprocessing_context=method)
        it = iter(loader)
    first = next(it)
    first_s = time.perf_counter() - t0
    total = int(first) + sum(int(x) for x in it)
    if peer == "tinypl":
        it.close()
    del it
    return {{"first_s": first_s, "run_s": time.perf_counter() - t0, "sum": total}}


class _Items:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return work(i)


if __name__ == "__main__":
    import json
    peer, method, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    runs = [one_run(peer, method, n) for _ in range(2)]
    print({marker!r} + json.dumps({{"imports_s": IMPORTS_S, "runs": runs}}), flush=True)
"""

CONFIGS = {
    "tinypl": ("tinypl", "import tinypl"),
    "tinypl+torch": ("tinypl", "import torch\nimport tinypl"),
    "tinypl+torch lib": ("tinypl", f"import tinypl\nfrom {LIBRARY} import work"),
    "DataLoader": ("torch", "import torch\nfrom torch.utils.data import DataLoader"),
}
"""Config key -> (peer, top-level imports of the user's script)."""
LIBRARY_SOURCE = "import torch\n\n\ndef work(x):\n    return x + 1\n"
"""The user's library module of ``tinypl+torch lib``: the stage function lives in a module
that imports torch, so workers that unpickle it by reference import torch too."""


def add_arguments(parser: argparse.ArgumentParser, *, with_part: bool = True) -> None:
    """Suite-specific options (``with_part=False`` when the process suite adds them)."""
    if with_part:
        add_part_option(parser, [name for name, _, _ in PARTS])
    parser.add_argument("--import-repeat", type=int, default=IMPORT_REPEAT)
    parser.add_argument("--first-repeat", type=int, default=FIRST_REPEAT)
    parser.add_argument("--first-items", type=int, default=100)
    parser.add_argument(
        "--from-source",
        action="store_true",
        help="fresh interpreters import this checkout's tinypl from source (default: a "
        "byte-compiled copy in the cache folder, as pip installs it; see _bytecode.py)",
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma-separated start methods (default: %(default)s)",
    )


def _clean_env() -> dict[str, str]:
    """This environment without PYTHON* variables, so that the child imports the
    repository's tinypl only through the path the script or command gives it."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}


def _python(
    args: list[str], *, timeout: float, root: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``root`` (see ``_bytecode.code_root``): on ``PYTHONPATH`` too. A forkserver imports
    tinypl (its preload) before it applies the parent's ``sys.path``, so a script that only
    inserts ``root`` into ``sys.path`` gets workers running another installed tinypl."""
    env = _clean_env()
    if root is not None:
        env["PYTHONPATH"] = str(root)
    return subprocess.run(
        [sys.executable, "-B", "-s", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tempfile.gettempdir(),
        env=env,
        check=False,
    )


# --------------------------------------------------------------------------- import time


def import_times(module: str, root: Path) -> dict[str, float]:
    """Cumulative import time (us) of every module in one fresh ``import module``, with
    ``root`` first on ``sys.path``."""
    code = f"import sys; sys.path.insert(0, {str(root)!r}); import {module}"
    proc = _python(["-X", "importtime", "-c", code], timeout=120)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise RuntimeError(f"import {module} failed: {tail}")
    times: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) == 3 and fields[1].strip().isdigit():
            times[fields[2].strip()] = float(fields[1])
    return times


def _import_part(ctx: SuiteContext, repeat: int) -> tuple[list[Table | Section], dict[str, Any]]:
    repeat = ctx.options.import_repeat
    medians: dict[str, float | None] = {}
    loaded: dict[str, list[str]] = {}
    table = Table(
        title=f"import time: python -X importtime -c 'import M', {repeat} fresh processes "
        f"(target: tinypl <= {IMPORT_TARGET:g}x toolz)",
        headers=["module", "runs", "best ms", "median ms", "x toolz (median)", "status"],
    )
    root = code_root(ctx.options.from_source)
    for module in ("toolz", "tinypl"):
        ctx.progress(f"import {module} x {repeat} (fresh processes)")
        try:
            runs = [import_times(module, root) for _ in range(repeat)]
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            medians[module] = None
            table.add_row([module, "0", "-", "-", "-", f"n/a: {exc}"])
            continue
        tops = [run[module] / 1e3 for run in runs]
        medians[module] = statistics.median(tops)
        loaded[module] = [name for name in HEAVY if name in runs[0]]
        rel = ratio(medians[module], medians.get("toolz"))
        table.add_row(
            [
                module,
                str(repeat),
                fmt_float(min(tops), 1),
                fmt_float(medians[module], 1),
                fmt_ratio(rel),
                "ok",
            ]
        )
    rel = ratio(medians.get("tinypl"), medians.get("toolz"))
    verdict = "n/a" if rel is None else ("met" if rel <= IMPORT_TARGET else "MISSED")
    table.notes += [
        "figure = cumulative time of the top-level module in -X importtime (interpreter "
        "start-up excluded)",
        "heavy modules loaded by import tinypl: " + (", ".join(loaded.get("tinypl", [])) or "none"),
        code_note(ctx.options.from_source),
    ]
    summary = Section(
        title="Summary",
        lines=[
            f"import tinypl / import toolz = {fmt_ratio(rel)} (target <= "
            f"{IMPORT_TARGET:g}x: {verdict})"
        ],
    )
    data = {"median_ms": medians, "ratio": rel, "heavy_loaded": loaded}
    return [table, summary], data


# --------------------------------------------------------------------------- first item


def first_item_runs(script: Path, peer: str, method: str, n: int, root: Path) -> dict[str, Any]:
    """One fresh process running the script: its imports and its two runs."""
    proc = _python([str(script), peer, method, str(n)], timeout=300, root=root)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            result: dict[str, Any] = json.loads(line[len(MARKER) :])
            return result
    tail = (proc.stderr.strip().splitlines() or ["<no output>"])[-1]
    raise RuntimeError(f"exit {proc.returncode}: {tail[:120]}")


def _measure_config(
    ctx: SuiteContext, folder: Path, root: Path, key: str, method: str
) -> dict[str, Any]:
    peer, imports = CONFIGS[key]
    script = folder / f"user_{key.replace('+', '_').replace(' ', '_')}.py"
    (folder / f"{LIBRARY}.py").write_text(LIBRARY_SOURCE, encoding="utf-8")
    text = SCRIPT.format(root=str(root), imports=imports, marker=MARKER)
    script.write_text(text, encoding="utf-8")
    n, repeat = ctx.options.first_items, ctx.options.first_repeat
    ctx.progress(f"first item: {key} {method} x {repeat} (fresh processes)")
    try:
        results = [first_item_runs(script, peer, method, n, root) for _ in range(repeat)]
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)}
    expected = sum(range(1, n + 1))
    if any(run["sum"] != expected for r in results for run in r["runs"]):
        return {"error": "WRONG RESULT"}

    def median(pick: Callable[[dict[str, Any]], float]) -> float:
        return float(statistics.median(pick(r) for r in results))

    return {
        "imports_s": median(lambda r: r["imports_s"]),
        "first_s": median(lambda r: r["runs"][0]["first_s"]),
        "run_s": median(lambda r: r["runs"][0]["run_s"]),
        "warm_first_s": median(lambda r: r["runs"][1]["first_s"]),
    }


def _verdict(value: float | None, limit: float) -> str:
    return "n/a" if value is None else ("met" if value <= limit else "MISSED")


FIRST_HEADERS = ["config", "start method", "imports s", "first item s", "target"]
FIRST_HEADERS += ["first run s", "warm first item s", "target", "status"]


def _first_item_cells(key: str, method: str, row: dict[str, Any]) -> list[str]:
    keys = ("imports_s", "first_s", "run_s", "warm_first_s")
    imports, first, run_s, warm = (fmt_float(row.get(k), 3) for k in keys)
    first_ok = _verdict(row.get("first_s"), FIRST_TARGET_S)
    warm_ok = _verdict(row.get("warm_first_s"), WARM_TARGET_S)
    status = f"n/a: {row['error']}" if "error" in row else "ok"
    return [key, method, imports, first, first_ok, run_s, warm, warm_ok, status]


def _first_item_part(
    ctx: SuiteContext, repeat: int
) -> tuple[list[Table | Section], dict[str, Any]]:
    methods = [m for m in ctx.options.methods.split(",") if m]
    table = Table(
        title=f"time to first item: {ctx.options.first_items} x (x + 1), 2 workers, fresh "
        f"process per repeat (median of {ctx.options.first_repeat}; targets: first run "
        f"<= {FIRST_TARGET_S * 1e3:g} ms, warm <= {WARM_TARGET_S * 1e3:g} ms)",
        headers=FIRST_HEADERS,
        left=frozenset({1}),
    )
    rows: list[dict[str, Any]] = []
    root = code_root(ctx.options.from_source)
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as folder:
        for method in methods:
            for key in CONFIGS:
                row = _measure_config(ctx, Path(folder), root, key, method)
                rows.append({"config": key, "start_method": method, **row})
                table.add_row(_first_item_cells(key, method, row))
    table.notes += [
        "config: tinypl = the script imports tinypl only; tinypl+torch = it imports torch "
        "at its top as well; tinypl+torch lib = the stage function comes from a module of "
        "the user's that imports torch; DataLoader = torch's DataLoader, the peer",
        "imports s: the script's top-level imports in the main process; first item s: from "
        "building the pipeline to its first result, in the first run of the process "
        "(workers start; forkserver boots its server); warm: the same in a second run",
        "tinypl ships stage functions with cloudpickle: one defined in the script travels "
        "by value, one from a library module by reference, so each spawn or forkserver "
        "worker imports that module (and torch); DataLoader's spawn and forkserver workers "
        "import the main script, so its torch import",
        code_note(ctx.options.from_source),
    ]
    return [table], {"items": ctx.options.first_items, "rows": rows}


PARTS: list[Part] = [("import", _import_part, IMPORT_REPEAT), ("first-item", _first_item_part, 1)]
"""The repeat counts come from ``--import-repeat`` and ``--first-repeat``."""


def run_startup(ctx: SuiteContext, repeat: int) -> tuple[list[Table | Section], dict[str, Any]]:
    """Both parts, as one part of another suite (``process --part startup``)."""
    blocks: list[Table | Section] = []
    data: dict[str, Any] = {}
    for name, function, _ in PARTS:
        part_blocks, data[name] = function(ctx, repeat)
        blocks += part_blocks
    return blocks, data


def run(ctx: SuiteContext) -> SuiteReport:
    """Run the selected parts and build the report."""
    report = SuiteReport(suite="startup", title="startup: import time and time to first item")
    run_parts(ctx, report, PARTS)
    return report


SUITE = Suite(
    name="startup",
    description="import time vs toolz; time to first item of a process stage (fork, "
    "forkserver, spawn; with and without torch) vs torch DataLoader",
    default_repeat=1,
    add_arguments=add_arguments,
    run=run,
)
