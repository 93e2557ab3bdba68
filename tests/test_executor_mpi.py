"""The executor stage on MPI (issue 15): ``mpi4py.futures.MPIPoolExecutor(max_workers=2)``
in spawn mode, with the ``mpich`` wheel, compared with the synchronous run and with
``.process(2)``: results, order, markers, errors, early close.

Everything MPI runs in one child interpreter with a session of its own (see
``executors.run_mpi_script``); its report is one JSON line per check.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from executors import run_mpi_output, run_mpi_script

SCRIPT = r'''
import json, os, time
import tinypl as pl
from tinypl import Marker, Pipe

END = Marker("end")


def pipeline(source):
    pipe = Pipe(source).map(lambda x: 3 * x).filter(lambda x: x % 2)
    return pipe.map(lambda x: list(range(x % 4))).flatten()


def bad(x):
    if x == 7:
        raise KeyError(f"no {x}")
    return x


def slow(x):
    time.sleep(0.2)
    return x


def report(name, value):
    print(json.dumps({"check": name, "value": value}), flush=True)


def error_of(pipe):
    try:
        list(pipe)
    except Exception as error:
        cause = error.__cause__
        return [type(error).__name__, list(error.args), getattr(error, "__notes__", []),
                type(cause).__name__, "bad" in getattr(cause, "text", "")]
    return None


def main():
    from mpi4py.futures import MPIPoolExecutor

    with MPIPoolExecutor(max_workers=2) as pool:
        expected = list(pipeline(range(60)))
        report("sync", expected)
        report("process", list(pipeline(range(60)).process(2).order()))
        report("mpi-ordered", list(pipeline(range(60)).executor(pool).order()))
        report("mpi-sorted", sorted(pipeline(range(60)).executor(pool)))
        marked = Pipe(range(40)).insert_marker(END, every=7).map(lambda x: 3 * x)
        split = dict(markers="after", split_on_marker=True)
        report("markers-sync", list(marked.partition(100, **split)))
        report("markers-mpi", list(marked.executor(pool).order().partition(100, **split)))
        report("error-process", error_of(Pipe(range(20)).map(bad).process(2)))
        report("error-mpi", error_of(Pipe(range(20)).map(bad).executor(pool)))
        stage = iter(Pipe(range(100)).map(slow).executor(pool, maxsize=4, chunksize=1))
        next(stage)
        start = time.monotonic()
        stage.close()
        report("close-seconds", time.monotonic() - start)
        start = time.monotonic()
        report("still-works", pool.submit(abs, -3).result(timeout=10))
        report("next-task-seconds", time.monotonic() - start)
        report("workers", iter(Pipe([1]).map(abs).executor(pool)).workers)


if __name__ == "__main__":
    main()
'''


@pytest.fixture(scope="module")
def mpi_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    lines = run_mpi_script(SCRIPT, Path(tmp_path_factory.mktemp("mpi")))
    return {line["check"]: line["value"] for line in lines}


@pytest.mark.timeout(150)
def test_results_and_order_match_the_sync_run_and_process_stage(
    mpi_report: dict[str, object],
) -> None:
    expected = mpi_report["sync"]
    assert isinstance(expected, list) and expected
    assert mpi_report["process"] == expected
    assert mpi_report["mpi-ordered"] == expected
    assert mpi_report["mpi-sorted"] == sorted(expected)


@pytest.mark.timeout(150)
def test_markers_keep_their_places(mpi_report: dict[str, object]) -> None:
    assert mpi_report["markers-mpi"] == mpi_report["markers-sync"]
    assert len(mpi_report["markers-sync"]) == 6  # type: ignore[arg-type]


@pytest.mark.timeout(150)
def test_errors_keep_type_note_and_remote_traceback(mpi_report: dict[str, object]) -> None:
    error = mpi_report["error-mpi"]
    assert error == mpi_report["error-process"]
    assert error is not None and error[0] == "KeyError" and error[3] == "RemoteTraceback"  # type: ignore[index]
    assert error[4] is True  # type: ignore[index]


@pytest.mark.timeout(150)
def test_early_close_is_quick_and_leaves_the_pool_working(mpi_report: dict[str, object]) -> None:
    assert mpi_report["close-seconds"] < 2.0  # type: ignore[operator]
    assert mpi_report["still-works"] == 3
    assert mpi_report["next-task-seconds"] < 2.0  # type: ignore[operator]
    assert mpi_report["workers"] == 2


@pytest.mark.timeout(150)
def test_the_mpi_script_of_the_docs_prints_what_the_page_says(tmp_path: Path) -> None:
    from test_docs import ROOT, normalize, parse_blocks

    blocks = parse_blocks((ROOT / "docs" / "scaling.md").read_text())
    (script,) = [b for b in blocks if b.lang == "python" and "mpi_pipeline.py" in b.info]
    assert script.opted_out and script.expected_output is not None  # run here instead
    printed = run_mpi_output(script.code, tmp_path)
    assert normalize(printed) == normalize(script.expected_output)
