"""Command line interface: ``python -m benchmarks <suite> [options]``."""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import platform
import sys
import threading
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

from benchmarks.harness import SuiteContext, new_tinypl_status
from benchmarks.legacy import LegacyRunner, default_t010_python
from benchmarks.suites import SUITES

PEER_DISTRIBUTIONS = ("toolz", "pypeln", "numpy", "mpire", "torch", "torchdata")


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed runs per measurement after one warm-up run (default: per suite)",
    )
    group.add_argument(
        "--stat",
        choices=("best", "median"),
        default="best",
        help="statistic used for derived figures and ratios (default: %(default)s)",
    )
    group.add_argument(
        "--t010-python",
        type=Path,
        default=default_t010_python(),
        help="interpreter of the tinypl 0.1.0 venv (default: /work/venvs/t010/bin/python "
        "if it exists, otherwise the tinypl 0.1.0 column is skipped)",
    )
    group.add_argument("--no-t010", action="store_true", help="skip the tinypl 0.1.0 column")
    group.add_argument(
        "--case-timeout",
        type=float,
        default=60.0,
        help="seconds allowed per run of a case before it is abandoned as n/a "
        "(0 disables; default: %(default)s)",
    )
    group.add_argument(
        "--time-cap",
        type=float,
        default=15.0,
        help="seconds of timed runs per measurement; slower cases get fewer runs "
        "(never fewer than 3; 0 disables; default: %(default)s)",
    )
    group.add_argument(
        "--json", type=Path, default=None, metavar="PATH", help="also write results as JSON"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per suite."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="tinypl benchmarks. Figures are informational; nothing is asserted.",
    )
    sub = parser.add_subparsers(dest="suite", required=True, metavar="SUITE")
    common = _common_options()
    for suite in SUITES.values():
        suite_parser = sub.add_parser(
            suite.name,
            parents=[common],
            help=suite.description,
            description=f"{suite.description} (default --repeat {suite.default_repeat})",
        )
        suite.add_arguments(suite_parser)
    return parser


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PEER_DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _environment(legacy: LegacyRunner) -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg": load,
        "versions": _versions(),
        "tinypl_new": new_tinypl_status(),
        "tinypl_010": {"python": str(legacy.python), **legacy.info()},
    }


def _header(env: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v or 'missing'}" for k, v in env["versions"].items())
    new = env["tinypl_new"]
    new_text = (
        f"{new['file']}" + (f" (version {new['version']})" if new.get("version") else "")
        if new["available"]
        else f"n/a: {new['error']}"
    )
    old = env["tinypl_010"]
    if old.get("ok"):
        old_env = old.get("env") or {}
        old_text = (
            f"{old_env.get('tinypl_version')} via {old['python']} (Python {old_env.get('python')})"
        )
        if old.get("warning"):
            old_text += f" WARNING: {old['warning']}"
    else:
        old_text = f"skipped: {old.get('error')}"
    load = env["loadavg"]
    load_text = "?" if load is None else " ".join(f"{x:.2f}" for x in load)
    return "\n".join(
        [
            f"date {env['date']}  python {env['python']}  {env['platform']}",
            f"cpus {env['cpu_count']}  loadavg {load_text}",
            f"peers: {versions}",
            f"tinypl (new):   {new_text}",
            f"tinypl (0.1.0): {old_text}",
        ]
    )


def main(argv: list[str] | None = None) -> NoReturn:
    """Parse arguments, run one suite, print the report, then exit (see
    :func:`_exit_after_report`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    suite = SUITES[args.suite]
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be >= 1")

    time_cap = args.time_cap or None
    legacy = LegacyRunner(
        None if args.no_t010 else args.t010_python,
        case_timeout=args.case_timeout,
        time_cap=time_cap,
    )
    if args.no_t010:
        legacy.skip_reason = "--no-t010"
    ctx = SuiteContext(
        repeat=args.repeat if args.repeat is not None else suite.default_repeat,
        repeat_explicit=args.repeat is not None,
        stat=args.stat,
        case_timeout=args.case_timeout,
        time_cap=time_cap,
        legacy=legacy,
        options=args,
    )
    env = _environment(legacy)
    print(_header(env), flush=True)
    report = suite.run(ctx)
    print()
    print(report.render(), flush=True)
    if args.json is not None:
        document = {"suite": suite.name, "environment": env, "results": report.data}
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
        ctx.progress(f"wrote {args.json}")
    _exit_after_report(ctx)


EXIT_HANDLERS_TIMEOUT = 10.0
"""Seconds the interpreter's exit handlers may take once the report is out."""


def _exit_after_report(ctx: SuiteContext) -> NoReturn:
    """Tear peers down and exit, never waiting on what they left behind.

    Peers such as ``multiprocessing.Pool``, mpire and pypeln leave ``multiprocessing``
    queue feeder threads behind; the exit handler of ``multiprocessing`` joins them and
    can wait forever, and an abandoned case (``ctx.timed_out``) may have left non-daemon
    threads.  So: terminate leftover child processes, run the exit handlers (tinypl's
    shared-memory cleanup among them) for a bounded time, then ``os._exit``.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    if "multiprocessing" in sys.modules:
        import multiprocessing

        for child in multiprocessing.active_children():
            child.terminate()
            child.join(timeout=5)
    if not ctx.timed_out:
        handlers = threading.Thread(target=atexit._run_exitfuncs, daemon=True)
        handlers.start()
        handlers.join(EXIT_HANDLERS_TIMEOUT)
        if handlers.is_alive():
            ctx.progress(f"exit handlers still running after {EXIT_HANDLERS_TIMEOUT:g} s")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
