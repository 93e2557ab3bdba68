"""Running peers: in-process measurements, fail-soft handling and the suite context.

A *peer* is one implementation of a benchmark case (builtins, toolz, a thread pool,
pypeln, the new tinypl, tinypl 0.1.0, ...).  Every peer is measured with
:func:`benchmarks._timing.measure` (one warm-up run, then ``repeat`` timed runs) and
yields a :class:`PeerResult`.  Failures never abort a suite: a peer that cannot be
imported, raises, returns a wrong result or hangs is reported as ``n/a: <reason>``.
"""

from __future__ import annotations

import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from benchmarks._timing import Check, Timing, measure

REPO_ROOT = Path(__file__).resolve().parent.parent
"""Repository root; the new tinypl must be imported from ``REPO_ROOT / "tinypl"``."""

Run = Callable[[], Any]
Build = Callable[[], "tuple[Run, Check | None]"]
"""Builds a case: returns the zero-argument workload and an optional result check.

Imports of optional peers belong *inside* the build function, so that a missing
dependency turns into an ``n/a`` cell instead of an error.
"""

Peers = Mapping[str, "tuple[str, Build | str]"]
"""key -> (label, build); a ``str`` build names a tinypl 0.1.0 case of ``_legacy_runner``."""


@dataclass
class PeerResult:
    """Outcome of measuring one peer for one case."""

    label: str
    timing: Timing | None = None
    error: str | None = None
    skipped: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when timing figures are available and the result check passed."""
        return self.timing is not None and self.error is None and self.timing.check_error is None

    def value(self, stat: str) -> float | None:
        """The requested statistic in seconds, or ``None`` if not usable."""
        return self.timing.stat(stat) if self.ok and self.timing is not None else None

    @property
    def runs_text(self) -> str:
        """Number of timed runs, flagged when the time cap reduced it."""
        if self.timing is None:
            return "-"
        runs = len(self.timing.samples)
        requested = self.timing.extra.get("requested_repeat", runs)
        return f"{runs}" if runs >= requested else f"{runs} (cap)"

    @property
    def status(self) -> str:
        """Short human-readable status for the report."""
        if self.skipped is not None:
            return f"skipped: {self.skipped}"
        if self.error is not None:
            return f"n/a: {self.error}"
        if self.timing is not None and self.timing.check_error is not None:
            return f"WRONG RESULT: {self.timing.check_error}"
        return "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {
            "label": self.label,
            "status": self.status,
            "params": self.params,
            "info": self.info,
            "timing": None if self.timing is None else self.timing.to_dict(),
        }


class CaseTimeoutError(Exception):
    """Raised (from a SIGALRM handler) when an in-process case exceeds its budget."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`CaseTimeoutError` in the main thread after ``seconds``.

    Uses ``SIGALRM``; blocking lock/queue waits are interruptible on POSIX, so a
    deadlocked pipeline is abandoned instead of hanging the harness.  A no-op when
    ``seconds`` is falsy or when not running in the main thread.
    """
    usable = (
        bool(seconds)
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable or seconds is None:
        yield
        return

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise CaseTimeoutError(f"timed out after {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def describe_exception(exc: BaseException) -> str:
    """One-line description of an exception, with its innermost source location."""
    text = f"{type(exc).__name__}: {exc}".strip()
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        text += f" [{Path(last.filename).name}:{last.lineno}]"
    return text if len(text) <= 160 else text[:157] + "..."


# --------------------------------------------------------------------------- new tinypl

_NEW_TINYPL: ModuleType | None = None
_NEW_TINYPL_ERROR: str | None = None


def new_tinypl() -> ModuleType:
    """Import the *new* tinypl from the repository (cached; raises ``ImportError``).

    Raises with a descriptive message if the package is not importable yet (for
    example, no ``__init__.py`` so far), or if ``import tinypl`` resolved to some other
    installation.
    """
    global _NEW_TINYPL, _NEW_TINYPL_ERROR
    if _NEW_TINYPL is not None:
        return _NEW_TINYPL
    if _NEW_TINYPL_ERROR is not None:
        raise ImportError(_NEW_TINYPL_ERROR)
    root = str(REPO_ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        import tinypl
    except Exception as exc:
        _NEW_TINYPL_ERROR = f"import tinypl failed: {describe_exception(exc)}"
        raise ImportError(_NEW_TINYPL_ERROR) from exc
    location = getattr(tinypl, "__file__", None)
    if location is None:
        _NEW_TINYPL_ERROR = f"{REPO_ROOT / 'tinypl'} is not importable yet (no __init__.py)"
    elif not Path(location).resolve().is_relative_to(REPO_ROOT):
        _NEW_TINYPL_ERROR = f"import tinypl resolved to {location}, not the repository"
    if _NEW_TINYPL_ERROR is not None:
        raise ImportError(_NEW_TINYPL_ERROR)
    _NEW_TINYPL = tinypl
    return tinypl


def new_tinypl_status() -> dict[str, Any]:
    """Describe the new tinypl for the report header (never raises)."""
    try:
        pl = new_tinypl()
    except ImportError as exc:
        return {"available": False, "error": str(exc)}
    version = getattr(pl, "__version__", None)
    if version is None:
        from importlib import metadata

        try:
            version = metadata.version("tinypl")  # e.g. an editable install of the repo
        except metadata.PackageNotFoundError:
            version = None
    return {"available": True, "file": getattr(pl, "__file__", None), "version": version}


# --------------------------------------------------------------------------- context


@dataclass
class SuiteContext:
    """Options and services shared by all suites (built by the CLI)."""

    repeat: int
    stat: str
    case_timeout: float
    legacy: Any  # benchmarks.legacy.LegacyRunner (kept untyped to avoid an import cycle)
    options: Any  # the argparse namespace, for suite-specific options
    time_cap: float | None = None
    repeat_explicit: bool = False
    timed_out: bool = False

    def progress(self, message: str) -> None:
        """Progress line on stderr, so that stdout carries only the report."""
        sys.stderr.write(f"[bench] {message}\n")
        sys.stderr.flush()

    def run_in_process(
        self,
        label: str,
        build: Build,
        *,
        repeat: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> PeerResult:
        """Build and measure one in-process peer; never raises for peer failures."""
        result = PeerResult(label=label, params=dict(params or {}))
        repeat = self.repeat if repeat is None else repeat
        self.progress(f"{label} {result.params or ''} (warm-up + {repeat} runs)")
        try:
            run, check = build()
        except ImportError as exc:
            result.error = str(exc) if type(exc) is ImportError else describe_exception(exc)
            return result
        except Exception as exc:
            result.error = describe_exception(exc)
            return result
        budget = self.case_timeout * (repeat + 1) if self.case_timeout > 0 else None
        try:
            with time_limit(budget):
                result.timing = measure(run, repeat, warmup=1, check=check, time_cap=self.time_cap)
        except CaseTimeoutError as exc:
            self.timed_out = True
            result.error = f"{exc} (later figures may be disturbed by leftover threads)"
        except Exception as exc:
            result.error = describe_exception(exc)
        return result

    def run_legacy(
        self,
        label: str,
        case: str,
        params: dict[str, Any],
        *,
        repeat: int | None = None,
    ) -> PeerResult:
        """Measure a tinypl 0.1.0 case in the legacy venv (see :mod:`benchmarks.legacy`)."""
        repeat = self.repeat if repeat is None else repeat
        self.progress(f"{label} {params} (subprocess, warm-up + {repeat} runs)")
        result: PeerResult = self.legacy.run(label, case, params, repeat)
        return result

    def measure_peers(
        self,
        peers: Peers,
        *,
        params: dict[str, Any],
        repeat: int | None = None,
    ) -> dict[str, PeerResult]:
        """Measure every peer of one case, in order, with the same parameters: a build
        runs in this process, a case name in the tinypl 0.1.0 subprocess."""
        results: dict[str, PeerResult] = {}
        for key, (label, build) in peers.items():
            if isinstance(build, str):
                results[key] = self.run_legacy(label, build, params, repeat=repeat)
            else:
                results[key] = self.run_in_process(label, build, repeat=repeat, params=params)
        return results
