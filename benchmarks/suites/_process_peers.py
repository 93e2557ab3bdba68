"""Peers of the ``process`` suite and :class:`Case`, the one place that measures them.

Every builder has the signature ``(n, fn, workers, kind, cap) -> body``; a body runs one
complete case from ``t0`` (its start: pool or pipeline built, consumed, shut down) and
returns the consumer stats of :mod:`benchmarks._workloads`.
"""

from __future__ import annotations

import multiprocessing
import time
import warnings
from collections.abc import Callable
from typing import Any

from benchmarks import _workloads as w
from benchmarks._timing import Check
from benchmarks.harness import PeerResult, Run, SuiteContext, describe_exception, new_tinypl

Body = Callable[[float], dict[str, Any]]
"""Runs one complete case from ``t0`` (the run's start) and returns consumer stats."""
Builder = Callable[[int, Callable[[Any], Any], int, str, "float | None"], "Body | w.LoggedRun"]
"""``(n, fn, workers, kind, cap) -> body`` (or a ready :class:`_workloads.LoggedRun`)."""

# --------------------------------------------------------------------------- peers


def serial_map(
    n: int, fn: Callable[[Any], Any], workers: int, kind: str, cap: float | None
) -> Body:
    """The reference: the same function and consumer in this process, no workers."""
    return lambda t0: w.consume(kind, map(fn, range(n)), t0, None)


def _pool(n: int, fn: Callable[[Any], Any], workers: int, kind: str, cap: float | None) -> Body:
    def body(t0: float) -> dict[str, Any]:
        with multiprocessing.Pool(workers) as pool:
            return w.consume(kind, pool.imap(fn, range(n)), t0, cap)

    return body


def _executor(n: int, fn: Callable[[Any], Any], workers: int, kind: str, cap: float | None) -> Body:
    from concurrent.futures import ProcessPoolExecutor

    def body(t0: float) -> dict[str, Any]:
        with ProcessPoolExecutor(workers) as executor:
            results: Any = executor.map(fn, range(n))  # a generator
            try:
                return w.consume(kind, results, t0, cap)
            finally:
                results.close()  # cancels the futures not started yet (capped run)

    return body


def _mpire(n: int, fn: Callable[[Any], Any], workers: int, kind: str, cap: float | None) -> Body:
    from mpire.pool import WorkerPool

    def body(t0: float) -> dict[str, Any]:
        with WorkerPool(n_jobs=workers) as pool:
            results = pool.imap(fn, range(n))
            try:
                return w.consume(kind, results, t0, cap)
            finally:
                results.close()

    return body


def _pypeln(n: int, fn: Callable[[Any], Any], workers: int, kind: str, cap: float | None) -> Body:
    with warnings.catch_warnings():
        # pypeln -> stopit imports the deprecated pkg_resources; not our concern here.
        warnings.simplefilter("ignore", UserWarning)
        import pypeln  # type: ignore[import-untyped]

    def body(t0: float) -> dict[str, Any]:
        results = iter(pypeln.process.map(fn, range(n), workers=workers))
        try:
            return w.consume(kind, results, t0, cap)
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()

    return body


def _torch(n: int, fn: Callable[[Any], Any], workers: int, kind: str, cap: float | None) -> Body:
    from torch.utils.data import DataLoader

    def body(t0: float) -> dict[str, Any]:
        dataset: Any = w.FunctionDataset(fn, n)  # duck-typed map-style dataset
        loader: Any = DataLoader(dataset, batch_size=None, num_workers=workers)
        it = iter(loader)
        stats = w.consume(kind, it, t0, cap)
        del it  # shuts its workers down (inside the timed run)
        return stats

    return body


def _tinypl_fluent(
    n: int, fn: Callable[[Any], Any], workers: int, kind: str, cap: float | None
) -> Body:
    pl = new_tinypl()

    def body(t0: float) -> dict[str, Any]:
        stage = iter(pl.Pipe(range(n)).map(fn).process(workers))
        stats = w.consume(kind, stage, t0, cap)
        if stats["capped"]:
            stage.close()
        return stats

    return body


def _tinypl_module_level(
    n: int, fn: Callable[[Any], Any], workers: int, kind: str, cap: float | None
) -> w.LoggedRun:
    # The same code as the tinypl 0.1.0 column (benchmarks._workloads).
    return w.tinypl_process_module_level(new_tinypl(), n, fn, workers, kind=kind, cap=cap)


def _logged(body: Body) -> w.LoggedRun:
    def run() -> dict[str, Any]:
        return body(time.perf_counter())

    return w.LoggedRun(run)


def _mp_default() -> str:
    try:
        return str(multiprocessing.get_context().get_start_method())
    except Exception as exc:  # pragma: no cover - defensive
        return f"? ({describe_exception(exc)})"


def _tinypl_default() -> str:
    try:
        new_tinypl()
        from tinypl._runtime._processes import default_start_method

        return str(default_start_method())
    except Exception:
        return "?"


def _mpire_default() -> str:
    try:
        from mpire.context import DEFAULT_START_METHOD

        return str(DEFAULT_START_METHOD)
    except Exception:
        return "?"


class Case:
    """One workload (function, size, consumer kind) and the results of its peers.

    ``expected_checksum`` defaults to the cheap closed form of
    :func:`_workloads.expected_process_checksum`.
    """

    def __init__(
        self,
        ctx: SuiteContext,
        name: str,
        fn_name: str,
        n: int,
        repeat: int,
        *,
        loops: int | None = None,
        cap: float | None = None,
        expected_checksum: float | None = None,
    ) -> None:
        self.ctx = ctx
        self.name = name
        self.fn_name = fn_name
        self.fn = w.process_function(fn_name, loops)
        self.kind = "array" if fn_name == "array" else "value"
        self.n = n
        self.loops = loops
        self.cap = cap
        self.repeat = repeat
        self.workers: int = ctx.options.workers
        if expected_checksum is None:
            expected_checksum = w.expected_process_checksum(fn_name, n)
        self.check: Check = w.make_stats_check(n, expected_checksum)
        self.results: dict[str, PeerResult] = {}
        self.start: dict[str, str] = {}

    @property
    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"n": self.n, "fn": self.fn_name, "workers": self.workers}
        if self.loops is not None:
            params["loops"] = self.loops
        if self.cap is not None:
            params["cap"] = self.cap
        return params

    def in_process(self, key: str, label: str, start: str, builder: Builder) -> PeerResult:
        def build() -> tuple[Run, Check]:
            body = builder(self.n, self.fn, self.workers, self.kind, self.cap)
            return (body if isinstance(body, w.LoggedRun) else _logged(body)), self.check

        return self.add(key, start, self._run(label, build))

    def _run(self, label: str, build: Callable[[], tuple[Run, Check]]) -> PeerResult:
        runs: list[w.LoggedRun] = []

        def tracked() -> tuple[Run, Check]:
            run, check = build()
            if isinstance(run, w.LoggedRun):
                runs.append(run)
            return run, check

        result = self.ctx.run_in_process(label, tracked, repeat=self.repeat, params=self.params)
        if runs and result.timing is not None:
            result.timing.extra["runs"] = runs[0].log
        return result

    def reference(self, key: str, label: str, build: Callable[[], tuple[Run, Check]]) -> None:
        self.add(key, "-", self._run(label, build))

    def legacy(self, key: str, label: str, **extra: Any) -> PeerResult:
        # Never capped: 0.1.0's stop() after a partial read sometimes times out
        # (WorkerEndTimeoutException after 10 s) or hangs and leaves a worker behind.
        params = {k: v for k, v in self.params.items() if k != "cap"}
        res = self.ctx.run_legacy(label, "process.map", {**params, **extra}, repeat=self.repeat)
        return self.add(key, "fork (mp default)" if res.ok else "-", res)

    def add(self, key: str, start: str, res: PeerResult) -> PeerResult:
        """Record ``res`` under ``key`` (the report keeps this order)."""
        self.results[key] = res
        self.start[key] = start
        return res

    def all_peers(self) -> None:
        """Every multi-process peer, in a fixed order."""
        mp_default = f"{_mp_default()} (mp default)"
        self.in_process("pool", "multiprocessing.Pool.imap", mp_default, _pool)
        self.in_process("ppe", "ProcessPoolExecutor.map", mp_default, _executor)
        self.in_process("mpire", "mpire WorkerPool.imap", _mpire_default(), _mpire)
        self.in_process("pypeln", "pypeln.process.map", mp_default, _pypeln)
        self.in_process("torch", "torch DataLoader", mp_default, _torch)
        self.legacy("t010", "tinypl 0.1.0 pl.process.map")
        tinypl_start = _tinypl_default()
        self.in_process("fluent", "tinypl Pipe.map.process (fluent)", tinypl_start, _tinypl_fluent)
        self.in_process("module", "tinypl pl.process.map", tinypl_start, _tinypl_module_level)

    def tinypl_with(self, key: str, label: str, fn: Callable[[Any], Any]) -> PeerResult:
        """The fluent tinypl row with another stage function (the arrays' in-place row)."""

        def builder(
            n: int, _fn: Callable[[Any], Any], workers: int, kind: str, cap: float | None
        ) -> Body:
            return _tinypl_fluent(n, fn, workers, kind, cap)

        return self.in_process(key, label, _tinypl_default(), builder)
