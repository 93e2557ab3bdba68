"""Booting the fork server at ``iter()``, before the run is built (``_forkserver``)."""

from __future__ import annotations

import errno
import json
import multiprocessing
import subprocess
import sys
import textwrap

import pytest

from tinypl._runtime import _forkserver

pytestmark = pytest.mark.skipif(
    "forkserver" not in multiprocessing.get_all_start_methods(), reason="no forkserver here"
)

# A fresh interpreter: in the test process a fork server may run already.
FRESH = textwrap.dedent(
    """
    import json, os
    from multiprocessing import forkserver
    import tinypl as pl

    server = forkserver._forkserver
    before = server._forkserver_pid
    stage = iter(pl.Pipe(range(6)).map(lambda x: (x, os.getppid())).process(2))
    at_iter = server._forkserver_pid
    items = sorted(stage)
    print(json.dumps({"before": before, "at_iter": at_iter,
                      "items": [x for x, _ in items], "parents": sorted({p for _, p in items})}))
    """
)


@pytest.mark.timeout(60)
def test_iter_boots_the_server_that_forks_the_workers() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FRESH], capture_output=True, text=True, timeout=50, check=False
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["before"] is None
    assert seen["at_iter"] is not None  # running before the first item was asked for
    assert seen["items"] == list(range(6))
    assert seen["parents"] == [seen["at_iter"]]  # the workers are that server's children


# The first backend build of a run notes whether the server runs by then.
BEFORE_BUILD = textwrap.dedent(
    """
    import json
    from multiprocessing import forkserver
    import tinypl as pl
    from tinypl._runtime import _registry

    seen = []
    load_backends = _registry.load_backends

    def noting():
        seen.append(forkserver._forkserver._forkserver_pid is not None)
        load_backends()

    _registry.load_backends = noting
    pipe = pl.Pipe(range(6)).map(abs).thread(2).map(abs).process(2).order()
    print(json.dumps({"seen": seen, "items": list(pipe)}))
    """
)


@pytest.mark.timeout(60)
def test_a_run_boots_the_server_before_it_builds_its_first_stage() -> None:
    # The process stage comes after a thread stage, so the build reaches it last: the
    # boot must not wait for that (issue 17: ~20 ms of backend imports on a first run).
    done = subprocess.run(
        [sys.executable, "-c", BEFORE_BUILD],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["items"] == list(range(6))
    assert seen["seen"] and seen["seen"][0] is True


@pytest.mark.timeout(60)
def test_boot_is_idempotent_and_only_for_forkserver() -> None:
    from multiprocessing import forkserver

    assert _forkserver.boot("spawn") is False
    assert _forkserver.boot("fork") is False
    assert _forkserver.boot("forkserver") is True
    pid = forkserver._forkserver._forkserver_pid
    assert _forkserver.boot(None) is True  # the default here is forkserver
    assert forkserver._forkserver._forkserver_pid == pid


@pytest.mark.timeout(60)
def test_a_boot_that_fails_is_left_to_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from multiprocessing import forkserver

    import tinypl as pl

    def refuse(*args: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    pl.process.shutdown()  # no warm set may take the run: its workers must start
    monkeypatch.setattr(forkserver, "ensure_running", refuse)  # what boot() calls
    monkeypatch.setattr(forkserver.ForkServer, "ensure_running", refuse)  # a start's
    assert _forkserver.boot("forkserver") is False
    with pytest.raises(OSError, match=r"process\(map\): too many open files") as caught:
        list(pl.Pipe(range(3)).map(abs).process(2, start_method="forkserver"))
    assert caught.value.errno == errno.EMFILE


@pytest.mark.timeout(60)
def test_boot_for_looks_at_process_stages_only() -> None:
    import tinypl as pl
    from tinypl._plan import chain
    from tinypl._planner import optimize

    def physical(pipe: pl.Pipe[int]) -> list[object]:
        return list(chain(optimize(pipe.plan)))

    assert _forkserver.boot_for(physical(pl.Pipe(range(3)).map(abs))) is False
    spawn = pl.Pipe(range(3)).map(abs).process(2, start_method="spawn")
    assert _forkserver.boot_for(physical(spawn)) is False  # spawn needs no server
    assert _forkserver.boot_for(physical(pl.Pipe(range(3)).map(abs).process(2))) is True
