"""Insight (issue 12): ``stage.stats()``, ``stage.explain()``, ``.progress()`` and
``.report()`` on live runs."""

from __future__ import annotations

import io
import itertools
import json
import logging
import threading
import time
from typing import Any

import pytest
from threadwatch import gone_within, tinypl_threads

import tinypl as pl
from tinypl import Pipe

SLOW = 0.002


def slow(x: int) -> int:
    time.sleep(SLOW)  # the workload of the stage that holds the run back
    return x


def fast(x: int) -> int:
    return x + 1


def odd(x: int) -> bool:
    return x % 2 == 1


def inverse(x: int) -> float:
    return 1 / x


def rows_of(stats: pl.Stats) -> dict[str, pl.StageStats]:
    return {row.name: row for row in stats.rows}


# -- the values ----------------------------------------------------------------------------


def test_rows_totals_and_names_of_a_sync_run() -> None:
    run = iter(Pipe(range(10)).map(fast).filter(odd).map(str))
    assert list(run) == ["1", "3", "5", "7", "9"]
    stats = run.stats()
    assert [(r.name, r.items_in, r.items_out) for r in stats.rows] == [
        ("source", 10, 10),
        ("map(fast)", 10, 10),
        ("filter(odd)", 10, 5),
        ("map(str)", 5, 5),
    ]
    assert stats.delivered == 5
    assert stats.elapsed_s > 0
    assert stats.throughput == pytest.approx(5 / stats.elapsed_s)
    for row in stats.rows:
        assert (row.workers, row.utilization, row.capacity, row.mean_fill, row.wait_s) == (
            None,
        ) * 5


def test_to_dict_is_plain_json_with_one_key_per_attribute() -> None:
    run = iter(Pipe(range(20)).map(slow).thread(2))
    list(run)
    data = json.loads(json.dumps(run.stats().to_dict()))
    assert set(data) == {"elapsed_s", "delivered", "throughput", "rows", "bottleneck"}
    assert set(data["rows"][0]) == {
        "name", "items_in", "items_out", "markers", "errors", "busy_s", "workers",
        "utilization", "capacity", "mean_fill", "wait_s",
    }  # fmt: skip
    assert set(data["bottleneck"]) == {"stage", "reason"}
    assert data["delivered"] == 20


def test_str_is_a_table_with_a_row_per_stage_and_the_bottleneck() -> None:
    run = iter(Pipe(range(8)).map(slow).thread(2).map(fast))
    list(run)
    lines = str(run.stats()).splitlines()
    assert lines[0].split()[:3] == ["stage", "in", "out"]
    assert [line.split()[0] for line in lines[1:5]] == [
        "source", "map(slow)", "thread(2)", "map(fast)"
    ]  # fmt: skip
    assert lines[-2].startswith("8 items in ")
    assert lines[-1] == "bottleneck: map(slow) in thread(2): " + lines[-1].split(": ", 2)[2]


def test_bottleneck_str_is_stage_colon_reason() -> None:
    neck = pl.Bottleneck("map(f) in thread(4)", "workers busy 97% of the time")
    assert str(neck) == "map(f) in thread(4): workers busy 97% of the time"


# -- the bottleneck --------------------------------------------------------------------------


def test_a_slow_sync_step_is_the_bottleneck() -> None:
    run = Pipe(range(40)).map(fast).map(slow).filter(odd).iter(stats=True)
    list(run)
    stats = run.stats()
    assert stats.bottleneck is not None
    assert stats.bottleneck.stage == "map(slow)"
    assert stats.bottleneck.reason.startswith("consumer waits ")
    assert rows_of(stats)["map(slow)"].busy_s >= 40 * SLOW * 0.9


def test_a_slow_thread_stage_is_the_bottleneck() -> None:
    run = iter(Pipe(range(60)).map(fast).map(slow).thread(2).map(str))
    list(run)
    stats = run.stats()
    assert stats.bottleneck is not None
    assert stats.bottleneck.stage == "map(slow) in thread(2)"
    assert "workers busy" in stats.bottleneck.reason
    assert "more workers or processes would help" in stats.bottleneck.reason
    thread = rows_of(stats)["thread(2)"]
    assert thread.workers == 2 and thread.capacity == 4
    assert thread.utilization is not None and 0.5 < thread.utilization <= 1.0


@pytest.mark.timeout(120)
def test_a_slow_process_stage_is_the_bottleneck() -> None:
    run = iter(Pipe(range(200)).map(fast).filter(bool).map(slow).process(2).map(str))
    list(run)
    stats = run.stats()
    name = "map(slow) in process(2)"
    assert stats.bottleneck is not None
    assert stats.bottleneck.stage == name
    row = rows_of(stats)[name]
    assert (row.items_in, row.items_out, row.workers) == (200, 200, 2)
    assert row.busy_s >= 200 * SLOW * 0.9  # measured in the workers
    assert row.utilization is not None and 0 < row.utilization <= 1
    assert row.wait_s is not None and row.wait_s > 0


def test_a_slow_source_is_the_bottleneck() -> None:
    def numbers() -> Any:
        for x in range(30):
            time.sleep(SLOW)
            yield x

    run = Pipe(numbers()).map(fast).iter(stats=True)
    list(run)
    stats = run.stats()
    assert stats.bottleneck is not None
    assert stats.bottleneck.stage == "source"
    assert stats.bottleneck.reason.startswith("consumer waits ")


def test_a_run_faster_than_its_consumer_names_the_consumer() -> None:
    run = Pipe(range(5)).map(fast).iter(stats=True)
    for _ in run:
        time.sleep(SLOW * 5)  # the consumer's own work
    stats = run.stats()
    assert stats.bottleneck is not None and stats.bottleneck.stage == "consumer"


# -- counts --------------------------------------------------------------------------------


def test_an_exception_of_a_stage_function_counts_one_error_of_its_step() -> None:
    run = iter(Pipe([1, 0, 2, 0, 4]).map(inverse).map(fast))
    out = []
    while True:
        try:
            out.append(next(run))
        except ZeroDivisionError:
            continue
        except StopIteration:
            break
    assert out == [2.0, 1.5, 1.25]
    rows = rows_of(run.stats())
    assert (rows["map(inverse)"].items_in, rows["map(inverse)"].errors) == (5, 2)
    assert rows["map(inverse)"].items_out == 3
    assert rows["map(fast)"].errors == 0


def _counts(run: Any) -> list[tuple[str, int, int, int]]:
    rows = rows_of(run.stats())
    names = ("map(_fails_at_6)", "filter(odd)", "map(_pair)", "flatten()")
    return [(name, rows[name].items_in, rows[name].items_out, rows[name].errors) for name in names]


def _fails_at_6(x: int) -> int:
    if x == 6:
        raise ValueError("six")
    return x


def _pair(x: int) -> list[int]:
    return [x, x]


def test_a_sync_run_counts_exactly_between_items_and_across_a_restart() -> None:
    # A fused run counts a filter's drops and a flatten's elements where the GIL holds
    # in cells of its generated code (tinypl._runtime._tally): each read sees every
    # count up to the item the run is suspended at, in the untimed form (before the
    # first stats() call), in the timed one and after an error restarted it.
    mark = pl.Marker("tick")
    pipe = Pipe(iter(range(10))).insert_marker(mark, every=4)
    run = iter(pipe.map(_fails_at_6).filter(odd).map(_pair).flatten())
    assert [next(run), next(run), next(run)] == [1, 1, 3]
    # suspended at the first element of pair(3): 0-3 pulled, 0 and 2 dropped
    assert _counts(run) == [
        ("map(_fails_at_6)", 4, 4, 0),
        ("filter(odd)", 4, 2, 0),
        ("map(_pair)", 2, 2, 0),
        ("flatten()", 2, 3, 0),
    ]
    assert [next(run), next(run), next(run)] == [3, 5, 5]
    with pytest.raises(ValueError, match="six"):
        next(run)
    assert list(run) == [7, 7, 9, 9]
    assert _counts(run) == [
        ("map(_fails_at_6)", 10, 9, 1),
        ("filter(odd)", 9, 5, 0),
        ("map(_pair)", 5, 5, 0),
        ("flatten()", 5, 10, 0),
    ]
    assert rows_of(run.stats())["filter(odd)"].markers == 2


def test_ignored_errors_are_counted_in_thread_and_process_stages() -> None:
    run = iter(Pipe([1, 0, 2, 0]).map(inverse).thread(2).ignore_errors(log=False))
    assert sorted(run) == [0.5, 1.0]
    assert rows_of(run.stats())["map(inverse)"].errors == 2
    run = iter(Pipe([1, 0, 2, 0]).map(inverse).process(2).ignore_errors(log=False))
    assert sorted(run) == [0.5, 1.0]
    assert rows_of(run.stats())["map(inverse) in process(2)"].errors == 2


def test_markers_are_counted_and_never_as_items() -> None:
    mark = pl.Marker("epoch")
    run = iter(Pipe(range(6)).insert_marker(mark, every=2).map(fast).thread(2))
    assert sorted(run) == [1, 2, 3, 4, 5, 6]
    rows = rows_of(run.stats())
    assert rows["map(fast)"].markers == 3
    assert rows["map(fast)"].items_in == 6
    assert rows["thread(2)"].items_out == 6
    assert rows["thread(2)"].markers == 3


def test_standalone_flatten_partition_and_generic_sources_are_counted() -> None:
    run = iter(Pipe(iter([[1, 2], [], [3]])).flatten().partition(2))
    assert list(run) == [[1, 2], [3]]
    assert [(r.name, r.items_in, r.items_out) for r in run.stats().rows] == [
        ("source", 3, 3),
        ("flatten()", 3, 3),
        ("partition(2)", 3, 2),
    ]


def test_module_level_stages_report_the_whole_chain() -> None:
    stage = pl.filter(pl.map(range(6), fast), odd)
    assert list(stage) == [1, 3, 5]
    assert [(r.name, r.items_out) for r in stage.stats().rows] == [
        ("source", 6), ("map(fast)", 6), ("filter(odd)", 3)
    ]  # fmt: skip


def test_explain_shows_the_plan_with_live_figures() -> None:
    run = iter(Pipe(range(6)).map(fast).thread(2).filter(odd))
    list(run)
    lines = run.explain().splitlines()
    assert lines[0].startswith("live run (3 items in ")
    at = next(i for i, line in enumerate(lines) if line.endswith("  thread(2)"))
    assert lines[at + 1].strip().startswith("thread(2): in 6, out 6, busy ")
    assert "2 workers" in lines[at + 1] and "queue " in lines[at + 1]
    # The numbering that lets the unordered run say its state is no stage of the pipe.
    assert not [line for line in lines if "order." in line]
    assert lines[-1].startswith("bottleneck: ")


# -- from other threads --------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_stats_taken_from_another_thread_never_raise_and_are_monotone() -> None:
    run = iter(Pipe(range(3000)).map(fast).filter(odd).thread(3).map(str))
    stop = threading.Event()
    taken: list[pl.Stats] = []
    errors: list[BaseException] = []

    def watch() -> None:
        try:
            while not stop.is_set():
                taken.append(run.stats())
        except BaseException as error:  # reported by the test below
            errors.append(error)

    watcher = threading.Thread(target=watch)
    watcher.start()
    out = list(run)
    stop.set()
    watcher.join()
    taken.append(run.stats())
    assert not errors
    assert len(out) == 1500 and len(taken) > 1
    for before, after in itertools.pairwise(taken):
        assert after.elapsed_s >= before.elapsed_s
        for old, new in zip(before.rows, after.rows, strict=True):
            assert new.items_in >= old.items_in and new.items_out >= old.items_out
            assert new.busy_s >= old.busy_s
    assert taken[-1].delivered == 1500
    for row in taken[-1].rows:
        assert row.utilization is None or 0.0 <= row.utilization <= 1.0


def test_the_first_stats_call_switches_a_started_sync_run_to_timing() -> None:
    run = iter(Pipe(range(20)).map(slow))
    next(run)
    assert run.stats().rows[-1].busy_s == 0.0  # not timed until asked
    list(run)
    row = run.stats().rows[-1]
    assert row.items_out == 20
    assert row.busy_s >= 18 * SLOW * 0.9


# -- progress ------------------------------------------------------------------------------


def _open_bars() -> int:
    from tqdm.auto import tqdm

    return len(getattr(tqdm, "_instances", ()))


def test_progress_shows_the_final_count_and_the_known_total() -> None:
    out = io.StringIO()
    marker = pl.Marker("m")
    run = iter(Pipe(range(7)).map(fast).insert_marker(marker, every=3).progress("load", file=out))
    assert list(run) == list(range(1, 8))
    text = out.getvalue()
    assert "load: 100%" in text and "7/7" in text  # markers are not counted
    run.close()
    assert _open_bars() == 0


def test_progress_bar_is_closed_by_close_before_the_end() -> None:
    out = io.StringIO()
    run = iter(Pipe(range(100)).progress(file=out, total=100))
    next(run), next(run)
    assert _open_bars() == 1
    run.close()
    assert _open_bars() == 0
    assert "2/100" in out.getvalue()


def test_progress_total_is_unknown_after_a_filter() -> None:
    out = io.StringIO()
    assert list(Pipe(range(4)).filter(odd).progress(file=out)) == [1, 3]
    assert "2it [" in out.getvalue() and "2/" not in out.getvalue()


@pytest.mark.parametrize(
    ("build", "kind", "words"),
    [
        (lambda p: p.progress(desc=3), TypeError, "desc must be a str or None"),
        (lambda p: p.progress(total=-1), ValueError, "total must be >= 0"),
        (lambda p: p.progress(total=1.5), TypeError, "total must be an int"),
        (lambda p: p.report(every=0), ValueError, "every must be > 0"),
        (lambda p: p.report(every="1"), TypeError, "every must be a number"),
        (lambda p: p.report(to=3), TypeError, "to must be callable or None"),
    ],
)
def test_bad_arguments_fail_where_they_are_written(build: Any, kind: type, words: str) -> None:
    with pytest.raises(kind, match=words):
        build(Pipe(range(3)))


# -- report --------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_report_passes_stats_to_its_hook_and_stops_with_the_stage() -> None:
    before = tinypl_threads()
    got: list[pl.Stats] = []
    reported = threading.Event()

    def hook(stats: pl.Stats) -> None:
        got.append(stats)
        reported.set()

    run = iter(Pipe(range(10)).map(fast).report(0.01, hook))
    assert next(run) == 1
    assert reported.wait(10)
    assert any(t.name.startswith("tinypl-report-") for t in tinypl_threads() - before)
    run.close()
    assert gone_within(before, 5)
    assert isinstance(got[0], pl.Stats)
    name = got[0].rows[-1].name
    assert name.startswith("report(every=0.01, to=") and name.endswith("hook)")


@pytest.mark.timeout(30)
def test_report_logs_to_the_tinypl_stats_logger(caplog: pytest.LogCaptureFixture) -> None:
    logged = threading.Event()

    class Signal(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logged.set()

    logger = logging.getLogger("tinypl.stats")
    handler = Signal()
    logger.addHandler(handler)
    try:
        level = caplog.at_level(logging.INFO, logger="tinypl.stats")
        with level, iter(Pipe(range(5)).report(every=0.01)) as run:
            next(run)
            assert logged.wait(10)
    finally:
        logger.removeHandler(handler)
    assert any("bottleneck:" in record.getMessage() for record in caplog.records)


def _raise_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x


@pytest.mark.timeout(120)
def test_a_process_stage_gives_one_row_per_step() -> None:
    run = iter(Pipe(range(10)).filter(bool).map(slow).process(2))
    assert len(list(run)) == 9
    rows = rows_of(run.stats())
    first, last = rows["filter(bool) in process(2)"], rows["map(slow) in process(2)"]
    assert (first.items_in, first.items_out) == (10, 9)
    assert (last.items_in, last.items_out) == (9, 9)
    assert last.busy_s > first.busy_s  # measured in the workers, per step
    assert first.workers is None and last.workers == 2
    assert last.utilization is not None and 0 < last.utilization <= 1


@pytest.mark.timeout(120)
def test_an_error_in_a_process_stage_counts_in_its_step_row() -> None:
    run = iter(Pipe(range(6)).map(_raise_on_three).map(str).process(2, chunksize=1))
    with pytest.raises(ValueError, match="three"):
        list(run)
    rows = rows_of(run.stats())
    assert rows["map(_raise_on_three) in process(2)"].errors == 1
    assert rows["map(str) in process(2)"].errors == 0


@pytest.mark.timeout(60)
def test_progress_counts_the_items_of_a_process_stage_and_not_its_markers() -> None:
    out = io.StringIO()
    pipe = Pipe(range(10)).map(fast).process(2).insert_marker(pl.Marker("m"), every=4)
    with iter(pipe.progress("p", file=out)) as run:
        assert sorted(run) == [x + 1 for x in range(10)]
    assert "p: 10" in out.getvalue().split("\r")[-1]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("name", "add"),
    [
        ("progress", lambda pipe: pipe.progress(file=io.StringIO())),
        ("report", lambda pipe: pipe.report(1.0, to=lambda stats: None)),
    ],
)
def test_insight_stages_refuse_to_sit_inside_an_ordered_region(name: str, add: Any) -> None:
    concurrent = add(Pipe(range(4)).map(fast).thread(2))
    with pytest.raises(ValueError, match=f"order: cannot restore the order across the {name}"):
        concurrent.order()  # the builder refuses at once, before anything runs
