"""Suite ``asyncio``: asyncio stages against asyncio peers (issue 16).

Two cases, every peer side by side in one run, concurrency 100:

* ``sleep``: 10,000 items, each ``await asyncio.sleep(0.001)``. The ideal is
  ``items / concurrency * 1 ms`` (the sleeps overlap perfectly);
* ``http``: a loopback HTTP/1.0 round trip per item (connect, ``GET``, read the answer)
  to a server in a subprocess (so that it does not share this interpreter's GIL), which
  answers at once and closes the connection (so TIME_WAIT stays on its side).

Peers: ``asyncio.gather`` over all items with a semaphore of 100 (the baseline), tinypl
``.map(fn).asyncio(100)`` (unordered, ordered, module-level, and consumed with ``async
for``), aiostream ``pipe.map(fn, task_limit=100, ordered=False)``, pypeln
``task.map(fn, workers=100)`` and SPDL ``pipe(fn, concurrency=100)``. Every run creates
and closes its event loop (``asyncio.run``, or the library's own), so each figure
includes start-up and shutdown. Target: tinypl within 1.2x of the baseline, ahead of
every peer.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import subprocess
import sys
import textwrap
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from benchmarks._timing import Check
from benchmarks.harness import PeerResult, Peers, Run, SuiteContext, new_tinypl
from benchmarks.report import (
    Section,
    SuiteReport,
    Table,
    fmt_float,
    fmt_ratio,
    ratio,
    target_max,
    timing_cells,
)
from benchmarks.suites.base import Part, Suite, add_part_option, run_parts

CONCURRENCY = 100
SLEEP_ITEMS = 10_000
HTTP_ITEMS = 2_000
TARGET = 1.2
REPEAT = 5

AsyncFn = Callable[[int], Any]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Suite-specific options."""
    add_part_option(parser, ["sleep", "http"])
    parser.add_argument("--sleep-items", type=int, default=SLEEP_ITEMS)
    parser.add_argument("--http-items", type=int, default=HTTP_ITEMS)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)


# --------------------------------------------------------------------------- workloads


async def sleep_1ms(x: int) -> int:
    await asyncio.sleep(0.001)
    return x


async def http_get(port: int, x: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET /{x} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    return int(answer.rpartition(b"\r\n\r\n")[2])


SERVER = textwrap.dedent(
    """
    import asyncio, sys

    async def handle(reader, writer):
        request = await reader.readuntil(b"\\r\\n\\r\\n")
        body = request.split(b" ", 2)[1][1:]
        writer.write(b"HTTP/1.0 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())
    """
)


@contextmanager
def http_server() -> Iterator[int]:
    """A loopback HTTP server in a subprocess; yields its port."""
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline())
    finally:
        assert process.stdin is not None
        process.stdin.close()  # the server exits when its stdin ends
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _check(n: int) -> Check:
    expected = Counter(range(n))

    def check(result: Any) -> str | None:
        got = Counter(result)
        return None if got == expected else f"wrong result: {len(result)} items"

    return check


# --------------------------------------------------------------------------- peers


def _gather(n: int, fn: AsyncFn, concurrency: int) -> tuple[Run, Check]:
    async def main() -> list[Any]:
        limit = asyncio.Semaphore(concurrency)

        async def limited(x: int) -> Any:
            async with limit:
                return await fn(x)

        return await asyncio.gather(*(limited(x) for x in range(n)))

    return lambda: asyncio.run(main()), _check(n)


def _tinypl(n: int, fn: AsyncFn, concurrency: int, *, ordered: bool) -> tuple[Run, Check]:
    pl = new_tinypl()
    pipe = pl.Pipe(range(n)).map(fn).asyncio(concurrency)
    if ordered:
        pipe = pipe.order()
    return lambda: list(pipe), _check(n)


def _tinypl_module(n: int, fn: AsyncFn, concurrency: int) -> tuple[Run, Check]:
    pl = new_tinypl()
    return lambda: list(pl.asyncio.map(range(n), fn, concurrency=concurrency)), _check(n)


def _tinypl_async_for(n: int, fn: AsyncFn, concurrency: int) -> tuple[Run, Check]:
    pl = new_tinypl()
    pipe = pl.Pipe(range(n)).map(fn).asyncio(concurrency)

    async def main() -> list[Any]:
        return [x async for x in pipe]

    return lambda: asyncio.run(main()), _check(n)


def _aiostream(n: int, fn: AsyncFn, concurrency: int) -> tuple[Run, Check]:
    from aiostream import pipe, stream  # type: ignore[import-not-found,unused-ignore]

    async def main() -> list[Any]:
        xs = stream.iterate(range(n)) | pipe.map(fn, task_limit=concurrency, ordered=False)
        return await stream.list(xs)  # type: ignore[no-any-return]

    return lambda: asyncio.run(main()), _check(n)


def _pypeln(n: int, fn: AsyncFn, concurrency: int) -> tuple[Run, Check]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # stopit imports pkg_resources
        import pypeln  # type: ignore[import-untyped,unused-ignore]

    return lambda: list(pypeln.task.map(fn, range(n), workers=concurrency)), _check(n)


def _spdl(n: int, fn: AsyncFn, concurrency: int) -> tuple[Run, Check]:
    from spdl.pipeline import PipelineBuilder  # type: ignore[import-not-found,unused-ignore]

    def run() -> list[Any]:
        builder = PipelineBuilder().add_source(range(n)).pipe(fn, concurrency=concurrency)
        pipeline = builder.add_sink(CONCURRENCY).build(num_threads=1)
        with pipeline.auto_stop():
            return list(pipeline)

    return run, _check(n)


def _measure(ctx: SuiteContext, n: int, fn: AsyncFn, repeat: int) -> dict[str, PeerResult]:
    c = ctx.options.concurrency

    def case(build: Callable[..., tuple[Run, Check]], **kw: Any) -> Callable[[], Any]:
        return functools.partial(build, n, fn, c, **kw)

    peers: Peers = {
        "gather": (f"asyncio.gather + Semaphore({c}) (baseline)", case(_gather)),
        "tinypl": (f"tinypl .map(fn).asyncio({c})", case(_tinypl, ordered=False)),
        "ordered": (f"tinypl .map(fn).asyncio({c}).order()", case(_tinypl, ordered=True)),
        "module": ("tinypl pl.asyncio.map", case(_tinypl_module)),
        "afor": ("tinypl async for over .asyncio()", case(_tinypl_async_for)),
        "aiostream": (f"aiostream pipe.map(task_limit={c})", case(_aiostream)),
        "pypeln": (f"pypeln task.map(workers={c})", case(_pypeln)),
        "spdl": (f"SPDL pipe(concurrency={c})", case(_spdl)),
    }
    return ctx.measure_peers(peers, params={"n": n, "concurrency": c}, repeat=repeat)


# --------------------------------------------------------------------------- report


def _table(title: str, results: dict[str, PeerResult], n: int, ctx: SuiteContext) -> Table:
    table = Table(
        title=title,
        headers=["peer", "runs", "best s", "median s", "us/item", "x gather", "target", "status"],
    )
    base = results["gather"].value(ctx.stat)
    for key, res in results.items():
        value = res.value(ctx.stat)
        rel = ratio(value, base)
        per_item = None if value is None else value / n * 1e6
        target = target_max(rel, TARGET) if key in ("tinypl", "ordered", "module") else ""
        table.add_row(
            [res.label, *timing_cells(res, 3), fmt_float(per_item, 1), fmt_ratio(rel), target,
             res.status]
        )  # fmt: skip
    return table


def _ahead(results: dict[str, PeerResult], stat: str) -> Section:
    ours = results["tinypl"].value(stat)
    lines = []
    for key in ("aiostream", "pypeln", "spdl"):
        rel = ratio(ours, results[key].value(stat))
        verdict = "n/a" if rel is None else ("ahead" if rel < 1 else "BEHIND")
        lines.append(f"tinypl / {results[key].label} = {fmt_ratio(rel)} ({verdict})")
    return Section(title=f"tinypl against the peers ({stat}; < 1 means faster)", lines=lines)


def _sleep(ctx: SuiteContext, repeat: int) -> tuple[list[Table | Section], dict[str, Any]]:
    n = ctx.options.sleep_items
    results = _measure(ctx, n, sleep_1ms, repeat)
    ideal = n / ctx.options.concurrency * 0.001
    table = _table(
        f"{n:,} x await asyncio.sleep(0.001), concurrency {ctx.options.concurrency}"
        f" (ideal {ideal:.3f} s)",
        results,
        n,
        ctx,
    )
    table.notes.append("every run starts and closes its event loop (and threads, if any)")
    data = {"items": n, "ideal_s": ideal, "rows": {k: r.to_dict() for k, r in results.items()}}
    return [table, _ahead(results, ctx.stat)], data


def _http(ctx: SuiteContext, repeat: int) -> tuple[list[Table | Section], dict[str, Any]]:
    n = ctx.options.http_items
    with http_server() as port:
        results = _measure(ctx, n, functools.partial(http_get, port), repeat)
    table = _table(
        f"{n:,} loopback HTTP/1.0 round trips (a connection each), concurrency"
        f" {ctx.options.concurrency}",
        results,
        n,
        ctx,
    )
    table.notes.append(
        f"server: asyncio.start_server in a subprocess; load average {os.getloadavg()[0]:.2f}"
    )
    data = {"items": n, "rows": {k: r.to_dict() for k, r in results.items()}}
    return [table, _ahead(results, ctx.stat)], data


PARTS: list[Part] = [("sleep", _sleep, REPEAT), ("http", _http, 3)]


def run(ctx: SuiteContext) -> SuiteReport:
    """Run the selected parts and build the report."""
    report = SuiteReport(suite="asyncio", title="asyncio: asyncio stages against peers")
    run_parts(ctx, report, PARTS)
    return report


SUITE = Suite(
    "asyncio",
    "asyncio stages: 10,000 x asyncio.sleep(0.001) and loopback HTTP, concurrency 100",
    REPEAT,
    run,
    add_arguments,
)
