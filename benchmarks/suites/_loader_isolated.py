"""The ``dataloader`` suite's ``files`` part: every peer in a fresh interpreter.

2,000 JPEG files (written once into ``$XDG_CACHE_HOME/tinypl-bench``) are read, decoded,
cropped, flipped and normalized in batches of 32 by 2 workers. Each peer of
:mod:`benchmarks.suites._loader_peers` runs in its own child process (so that its memory
is its own: imports, workers, batches in flight), ``--rounds`` times, the peers
interleaved and their order rotated every round. Each child pulls one untimed epoch
(start-up included; "1st epoch s") and ``--epochs`` timed ones.

Figures: samples/s (median and best over all timed epochs of all rounds), the ratio to
the serial reference measured the same way, and the peak memory of the child's process
tree, sampled from this process every 50 ms: RSS summed over the processes (counts pages
shared by forked workers once per process) and PSS (splits them). Targets (issue 17):
the recommended tinypl loader >= 1.8x serial, >= 1.1x every peer, peak RSS <= torch
DataLoader's.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
from typing import Any

from benchmarks import report as r
from benchmarks.harness import REPO_ROOT, SuiteContext
from benchmarks.report import Section, Table
from benchmarks.suites._images import image_folder
from benchmarks.suites._loader_peers import BATCH, PEERS, WORKERS

SERIAL_TARGET = 1.8
PEER_MARGIN = 1.1
#: The data-loader page's recipe, with threads and with processes.
RECIPES = ("tinypl-threads", "tinypl-processes")


class TreeMemory:
    """Peak RSS and PSS (bytes) of a process and its descendants, sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        import psutil  # type: ignore[import-untyped]

        self._root = psutil.Process(pid)
        self._psutil = psutil
        self.interval = interval
        self.peak_rss = 0
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-tree-memory", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        rss = pss = 0
        for process in [self._root, *self._root.children(recursive=True)]:
            try:
                info = process.memory_full_info()
            except (self._psutil.NoSuchProcess, self._psutil.AccessDenied):
                continue
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._sample()
            except Exception:  # the root exited while read
                return

    def stop(self) -> None:
        """Stop sampling (the peaks stay readable)."""
        self._stop.set()
        self._thread.join()


def run_child(key: str, folder: str, epochs: int, timeout: float) -> dict[str, Any]:
    """One fresh interpreter running peer ``key``; its JSON result plus peak memory."""
    command = [sys.executable, "-B", "-m", "benchmarks.suites._loader_peers", key, folder]
    child = subprocess.Popen(
        [*command, str(epochs)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    memory = TreeMemory(child.pid)
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
        return {"error": f"timed out after {timeout:.0f} s"}
    finally:
        memory.stop()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        tail = err.strip().splitlines()[-1:] or [f"exit code {child.returncode}"]
        return {"error": tail[0][:200]}
    result: dict[str, Any] = json.loads(lines[-1])
    result["peak_rss_mb"] = memory.peak_rss / 2**20
    result["peak_pss_mb"] = memory.peak_pss / 2**20
    return result


def _collect(ctx: SuiteContext, keys: list[str], rounds: int, epochs: int) -> dict[str, Any]:
    folder = str(image_folder())
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in keys}
    for number in range(rounds):
        shift = number % len(keys)
        for key in keys[shift:] + keys[:shift]:
            ctx.progress(f"files: round {number + 1}/{rounds}: {key}")
            runs[key].append(run_child(key, folder, epochs, timeout=ctx.case_timeout * 5))
    return runs


def _figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    errors = [run["error"] for run in runs if "error" in run]
    good = [run for run in runs if "error" not in run]
    rates = [count / seconds for run in good for seconds, count in run["epochs"]]
    if not rates:
        return {"error": errors[0] if errors else "no run"}
    return {
        "median": statistics.median(rates),
        "best": max(rates),
        "epochs": len(rates),
        # One rate per round (None for a failed run), for the paired speedup.
        "round_rates": [
            None if "error" in run else statistics.median(c / s for s, c in run["epochs"])
            for run in runs
        ],
        "first_s": statistics.median(run["first_s"] for run in good),
        "peak_rss_mb": max(run["peak_rss_mb"] for run in good),
        "peak_pss_mb": max(run["peak_pss_mb"] for run in good),
        "errors": errors,
    }


def paired(rates: list[float | None], base: list[float | None]) -> float | None:
    """The median over rounds of ``rates[i] / base[i]`` (rounds where both ran).

    Examples:
        >>> paired([300.0, None, 200.0, 330.0], [100.0, 100.0, 200.0, 110.0])
        3.0
    """
    pairs = [a / b for a, b in zip(rates, base, strict=False) if a and b]
    return statistics.median(pairs) if pairs else None


def _table(figures: dict[str, dict[str, Any]], rounds: int, epochs: int) -> Table:
    serial = figures.get("serial", {})
    table = Table(
        title=f"JPEG files -> read, decode, crop, flip, normalize; batches of {BATCH}, "
        f"{WORKERS} workers; each peer in its own process, {rounds} rounds x {epochs} epochs",
        headers=[
            "key",
            "peer",
            "epochs",
            "samples/s (median)",
            "x serial (median)",
            "samples/s (best)",
            "x serial (best)",
            "x serial (paired)",
            "1st epoch s",
            "peak RSS MB",
            "peak PSS MB",
            "status",
        ],
        left=frozenset({1}),
    )
    for key, fig in figures.items():
        table.add_row(
            [
                key,
                PEERS[key][0],
                str(fig.get("epochs", "-")),
                r.fmt_float(fig.get("median"), 0),
                r.fmt_ratio(r.ratio(fig.get("median"), serial.get("median"))),
                r.fmt_float(fig.get("best"), 0),
                r.fmt_ratio(r.ratio(fig.get("best"), serial.get("best"))),
                r.fmt_ratio(_paired_of(fig, serial)),
                r.fmt_float(fig.get("first_s"), 2),
                r.fmt_float(fig.get("peak_rss_mb"), 0),
                r.fmt_float(fig.get("peak_pss_mb"), 0),
                f"n/a: {fig['error']}"
                if "error" in fig
                else ("ok" if not fig["errors"] else f"ok, {len(fig['errors'])} failed run(s)"),
            ]
        )
    return table


def _paired_of(fig: dict[str, Any], serial: dict[str, Any]) -> float | None:
    return paired(fig.get("round_rates", []), serial.get("round_rates", []))


def _summary(figures: dict[str, dict[str, Any]]) -> Section:
    section = Section(
        title=f"Summary (tinypl's recipes; targets: >= {SERIAL_TARGET:g}x serial, "
        f">= {PEER_MARGIN:g}x every peer, peak RSS <= torch's)"
    )
    for key in RECIPES:
        if key in figures:
            section.lines += _recipe_lines(key, figures)
    return section


def _recipe_lines(key: str, figures: dict[str, dict[str, Any]]) -> list[str]:
    ours = figures[key]
    peers = {
        k: f
        for k, f in figures.items()
        if k not in ("serial", "pool") and not k.startswith("tinypl") and "median" in f
    }
    lines = []
    serial = figures.get("serial", {})
    for stat in ("median", "best", "paired"):
        if stat == "paired":
            x_serial = _paired_of(ours, serial)
        else:
            x_serial = r.ratio(ours.get(stat), serial.get(stat))
        line = f"{key} {stat:6}: {r.fmt_ratio(x_serial)} serial"
        line += f" ({r.verdict_min(x_serial, SERIAL_TARGET)})"
        if peers:
            lead, best_key = _lead(ours, peers, stat)
            verdict = r.verdict_min(lead, PEER_MARGIN)
            line += f"; fastest peer {best_key}: {r.fmt_ratio(lead)} ({verdict})"
        lines.append(line)
    torch = figures.get("torch", {})
    for kind in ("rss", "pss"):
        mine, theirs = ours.get(f"peak_{kind}_mb"), torch.get(f"peak_{kind}_mb")
        if mine is not None and theirs is not None:
            verdict = "met" if mine <= theirs else "MISSED"
            lines.append(
                f"{key} peak {kind.upper()}: {mine:.0f} MB vs torch {theirs:.0f} MB ({verdict})"
            )
    return lines


def _lead(
    ours: dict[str, Any], peers: dict[str, dict[str, Any]], stat: str
) -> tuple[float | None, str]:
    """How far ``ours`` leads the fastest peer by ``stat``; ``paired``: the median over
    rounds of our rate over the fastest peer's rate in the same round."""
    if stat != "paired":
        best_key = max(peers, key=lambda k: peers[k][stat])
        return r.ratio(ours.get(stat), peers[best_key][stat]), best_key
    fastest = [
        max((p["round_rates"][i] or 0.0 for p in peers.values() if i < len(p["round_rates"])),
            default=None)
        for i in range(len(ours.get("round_rates", [])))
    ]
    return paired(ours.get("round_rates", []), fastest), "of each round"


def files_part(ctx: SuiteContext, rounds: int) -> tuple[list[Table | Section], dict[str, Any]]:
    """Measure every peer (``--files-peers``) in fresh interpreters, interleaved."""
    wanted = ctx.options.files_peers
    keys = list(PEERS) if wanted == "all" else wanted.split(",")
    unknown = [key for key in keys if key not in PEERS]
    if unknown:
        raise SystemExit(f"unknown --files-peers {unknown}; choose from {list(PEERS)}")
    epochs = ctx.options.epochs
    runs = _collect(ctx, keys, rounds, epochs)
    figures = {key: _figures(runs[key]) for key in keys}
    table = _table(figures, rounds, epochs)
    table.notes += [
        "x serial: samples/s over the serial row's by the same statistic; every timed "
        "epoch of every round counts (median and best over them)",
        "peak RSS: summed over the child's process tree (a forked worker's shared pages "
        "count in each process); PSS splits shared pages. Both include the peer's imports",
        "1st epoch s: the untimed first epoch of a process (imports excluded, worker start "
        "included), median over rounds",
        "paired: the median over rounds of the peer's rate over serial's in the same round "
        "(cancels the machine's drift between rounds)",
    ]
    return [table, _summary(figures)], {
        "rounds": rounds,
        "epochs": epochs,
        "figures": figures,
        "runs": runs,
    }
