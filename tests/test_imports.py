"""``import tinypl`` stays light (issue #8): numpy, cloudpickle, multiprocessing and the
shared-memory module are imported when a process stage or shared memory is first used;
asyncio when an asyncio stage first runs (issue 16)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from procwatch import REPO

HEAVY = [
    "numpy",
    "cloudpickle",
    "multiprocessing",
    "tinypl._shm",
    "tinypl._runtime._processes",
    "tinypl._dataloader",
    "asyncio",
    "tinypl._runtime._asyncio",
    "tinypl._runtime._asource",
]

PROBE = """
import json, sys
def loaded():
    return sorted(m for m in HEAVY if m in sys.modules)
HEAVY = json.loads(sys.argv[1])
report = {}
import tinypl as pl
report["import"] = loaded()
pipe = pl.Pipe(range(4)).map(abs).process(2)
report["build"] = loaded()
list(pl.Pipe(range(4)).map(abs).thread(2))
report["thread"] = loaded()
async def fetch(x):
    return x
aio = pl.Pipe(range(4)).map(fetch).asyncio(2).order()
report["asyncio build"] = loaded()
report["asyncio run"] = list(aio) == [0, 1, 2, 3] and loaded()
report["all"] = sorted(pl.process.__all__)
ring = pl.process.SharedMemoryRingBuffer
report["ring"] = loaded()
print(json.dumps(report))
"""


def _probe(script: str, *args: str) -> Any:
    """What ``script`` printed as JSON, run in a fresh interpreter on this checkout."""
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        check=False,
        text=True,
        timeout=50,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.timeout(60)
def test_import_and_building_a_process_pipe_stay_light() -> None:
    report = _probe(PROBE, json.dumps(HEAVY))
    assert report["import"] == []
    assert report["build"] == []
    assert report["thread"] == []
    assert report["asyncio build"] == []
    assert report["asyncio run"] == [
        "asyncio",
        "tinypl._runtime._asource",
        "tinypl._runtime._asyncio",
    ]
    assert "SharedMemoryRingBuffer" in report["all"]
    # The ring buffer's class loads the shm package, which itself leaves numpy for later.
    assert "tinypl._shm" in report["ring"]
    assert "numpy" not in report["ring"]


def test_lazy_names_are_the_shared_memory_ones() -> None:
    import tinypl as pl
    from tinypl import _shm

    assert pl.process.SharedMemoryRingBuffer is _shm.SharedMemoryRingBuffer
    assert pl.process.RingBufferRef is _shm.RingBufferRef
    assert pl.process.BufferClosedError is _shm.BufferClosedError
    assert "SharedMemoryRingBuffer" in dir(pl.process)
    with pytest.raises(AttributeError, match="no_such_name"):
        pl.process.no_such_name  # noqa: B018


WORKER_PROBE = """
import json, sys
import tinypl._runtime._worker, tinypl._shm
print(json.dumps(sorted(m for m in sys.modules if m.startswith("tinypl"))))
"""

BUILDER = ["tinypl._pipe", "tinypl._planner", "tinypl._checkpoint", "tinypl._compat"]
BUILDER += ["tinypl._runtime._registry", "tinypl._runtime._threads", "tinypl.asyncio"]


@pytest.mark.timeout(60)
def test_what_a_worker_imports_leaves_the_builder_and_the_backends_out() -> None:
    # A forkserver boots on these imports (issue 17): the pipe builder, the planner and
    # the backends doubled its boot, and every first run of a process stage waited on it.
    loaded = _probe(WORKER_PROBE)
    assert "tinypl._runtime._worker" in loaded
    assert [m for m in BUILDER if m in loaded] == []


STDLIB_PROBE = """
import json, sys
import multiprocessing.forkserver
before = set(sys.modules)
import tinypl._runtime._worker, tinypl._shm, tinypl._workerinfo
new = set(sys.modules) - before
print(json.dumps(sorted(m for m in ("pathlib", "logging", "secrets") if m in new)))
"""


@pytest.mark.timeout(60)
def test_a_worker_imports_no_stdlib_module_it_only_might_need() -> None:
    # Issue 17: pathlib (by way of importlib.abc), logging and secrets cost a fork
    # server 5-11 ms of its boot and each worker more, for a base class, a warning that
    # is rarely logged and a random segment name.
    assert _probe(STDLIB_PROBE) == []


def test_every_public_name_resolves_to_its_module_attribute() -> None:
    import importlib

    import tinypl as pl

    assert sorted(pl._LAZY) == sorted(pl.__all__)
    for name, (module, attribute) in pl._LAZY.items():
        target = importlib.import_module(module, "tinypl")
        expected = target if attribute is None else getattr(target, attribute)
        assert getattr(pl, name) is expected, name
    assert pl.flatten_lazy is pl.flatten
    with pytest.raises(AttributeError, match="no_such_name"):
        pl.no_such_name  # noqa: B018
