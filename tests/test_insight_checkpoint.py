"""stats() and state_dict() on the same runs: a resumed run is counted like a fresh one,
and the counting views of stats() do not hide the stages a state is read from."""

from __future__ import annotations

import json

import tinypl as pl
from tinypl import Pipe


def double(x: int) -> int:
    return 2 * x


def names(stats: pl.Stats) -> list[str]:
    return [row.name for row in stats.rows]


def test_a_resumed_run_has_the_rows_of_a_fresh_run() -> None:
    pipe = Pipe(range(10)).map(double).partition(2)
    run = pipe.iter()
    assert [next(run), next(run)] == [[0, 2], [4, 6]]
    state = json.loads(json.dumps(run.state_dict()))
    resumed = pipe.iter(state=state)
    assert list(resumed) == [[8, 10], [12, 14], [16, 18]]
    stats = resumed.stats()
    assert names(stats) == names(run.stats())
    assert stats.delivered == 3
    assert stats.rows[-1].items_out == 3


def test_take_last_keeps_its_count_under_the_counting_view() -> None:
    pipe = Pipe(range(100)).map(double).take(5)
    run = pipe.iter()
    assert [next(run), next(run)] == [0, 2]
    assert run.stats().rows[-1].items_out == 2
    resumed = pipe.iter(state=run.state_dict())
    assert list(resumed) == [4, 6, 8]
    assert resumed.stats().rows[-1].name == "take(5)"


def test_a_replayed_run_counts_the_replayed_prefix_too() -> None:
    # A shuffle after a filter is resumed by replaying the run up to the cut: its stages
    # really process those items again, and their rows say so.
    pipe = Pipe(range(8)).filter(bool).shuffle(4, seed=1).map(double)
    whole = list(pipe)
    run = pipe.iter()
    first = [next(run) for _ in range(3)]
    resumed = pipe.iter(state=run.state_dict())
    rest = list(resumed)
    assert first + rest == whole
    rows = {row.name: row for row in resumed.stats().rows}
    assert rows["map(double)"].items_in == len(whole)
    assert rows["shuffle(4, seed=1)"].items_in == len(whole)


def test_a_shuffle_resumed_from_its_buffer_counts_only_what_it_reads_again() -> None:
    pipe = Pipe(range(20)).shuffle(4, seed=1).map(double)
    whole = list(pipe)
    run = pipe.iter()
    first = [next(run) for _ in range(6)]
    state = run.state_dict()
    assert state["mode"] == "shuffle"
    resumed = pipe.iter(state=state)
    rest = list(resumed)
    assert first + rest == whole
    rows = {row.name: row for row in resumed.stats().rows}
    # The source goes on from where the run stood (the buffer's 4 are re-read aside).
    assert rows["source"].items_out == len(whole) - len(first) - 4
    assert rows["map(double)"].items_in == len(rest)
