"""Checkpoint and resume (issue 14): ``run.state_dict()``, ``pipe.iter(state=...)``,
``pl.NotResumable``, resumable sources, the data loader and ``as_torch_dataset``."""

from __future__ import annotations

import functools
import json
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import tinypl as pl
from tinypl import Marker, NotResumable, Pipe

M = Marker("m")


def double(x: int) -> int:
    return 2 * x


def cut(pipe: Pipe[Any], k: int) -> tuple[list[Any], dict[str, Any]]:
    """The first ``k`` items of a run and its state then (through JSON)."""
    with pipe.iter() as run:
        head = [next(run) for _ in range(k)]
        return head, json.loads(json.dumps(run.state_dict()))


class Counter:
    """A custom resumable source: the protocol's ``state_dict``/``load_state_dict``."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.position = 0
        self._start = 0

    def __iter__(self) -> Iterator[int]:
        start, self._start = self._start, 0
        for i in range(start, self.n):
            self.position = i + 1
            yield i

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._start = self.position = state["position"]


class Letters:
    """A sequence that is not a builtin one: ``__len__`` and ``__getitem__`` only."""

    def __len__(self) -> int:
        return 5

    def __repr__(self) -> str:
        return "Letters()"

    def __getitem__(self, index: int) -> str:
        if not 0 <= index < 5:
            raise IndexError(index)
        return "abcde"[index]


def test_state_is_small_plain_data_and_resumes_after_the_last_item() -> None:
    pipe = Pipe(range(10)).map(double).filter(lambda x: x % 3)
    head, state = cut(pipe, 3)
    assert head == [2, 4, 8]
    assert state["version"] == 1
    assert state["source"] == 5  # the source's position: 0..4 led to the three items
    assert list(pipe.iter(state=state)) == [10, 14, 16]


def test_markers_after_the_last_item_belong_to_the_resumed_run() -> None:
    pipe = Pipe(range(6)).insert_marker(M, every=2)
    _, state = cut(pipe, 2)
    with pipe.iter(state=state) as resumed:
        assert list(resumed.raw) == [M, 2, 3, M, 4, 5, M]


@pytest.mark.parametrize(
    "source", [[5, 6, 7, 8], (5, 6, 7, 8), range(5, 9), "wxyz", Letters()], ids=repr
)
def test_sequence_sources_resume(source: Any) -> None:
    pipe = Pipe(source).map(str)
    head, state = cut(pipe, 2)
    assert head + list(pipe.iter(state=state)) == list(pipe)


def test_a_sequence_with_its_own_iter_is_replayed() -> None:
    numpy = pytest.importorskip("numpy")
    pipe = Pipe(numpy.arange(6)).map(int)
    head, state = cut(pipe, 2)
    assert state["mode"] == "replay"  # its iterator's position cannot be read
    assert head + list(pipe.iter(state=state)) == list(range(6))


def test_a_custom_source_resumes_through_its_protocol() -> None:
    pipe = Pipe(Counter(8)).map(double)
    head, state = cut(pipe, 3)
    assert state["source"] == {"position": 3}
    assert head + list(pipe.iter(state=state)) == [0, 2, 4, 6, 8, 10, 12, 14]
    # Replayed from the position the run started at, when a stage holds items.
    shuffled = Pipe(Counter(20)).shuffle(4, seed=1).partition(3)
    head, state = cut(shuffled, 2)
    assert head + list(shuffled.iter(state=state)) == list(shuffled)


def test_state_of_an_ended_run_resumes_to_nothing() -> None:
    pipe = Pipe([[1, 2], [3]]).flatten().map(double)
    head, state = cut(pipe, 3)
    assert head == [2, 4, 6]
    assert list(pipe.iter(state=state)) == []


@pytest.mark.timeout(60)
def test_ordered_thread_stage_recomputes_only_after_the_state() -> None:
    calls: list[int] = []

    def load(x: int) -> int:
        calls.append(x)
        return x * 10

    pipe = Pipe(range(30)).map(load).thread(3).order().filter(bool)
    head, state = cut(pipe, 5)
    assert state["mode"] == "ordered"
    calls.clear()
    assert head + list(pipe.iter(state=state)) == [x * 10 for x in range(1, 30)]
    assert sorted(calls) == list(range(6, 30))  # the items in flight were recomputed


async def _triple(x: int) -> int:
    return 3 * x


@pytest.mark.timeout(60)
def test_ordered_executor_and_asyncio_stages_resume_exactly() -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        on_pool = Pipe(list(range(20))).map(double).executor(pool, chunksize=3).order()
        head, state = cut(on_pool, 7)
        assert state["mode"] == "ordered"
        assert head + list(on_pool.iter(state=state)) == [2 * x for x in range(20)]
    on_loop = Pipe(range(20)).map(_triple).asyncio(4).order()
    head, state = cut(on_loop, 7)
    assert state["mode"] == "ordered"
    assert head + list(on_loop.iter(state=state)) == [3 * x for x in range(20)]


@pytest.mark.timeout(60)
def test_an_ordered_region_over_batches_of_a_sequence_skips_at_the_source() -> None:
    seen: list[int] = []
    pipe = Pipe(range(40)).each(seen.append).partition(4).map(sum).thread(2).order()
    head, state = cut(pipe, 3)
    seen.clear()
    assert head + list(pipe.iter(state=state)) == [sum(range(i, i + 4)) for i in range(0, 40, 4)]
    assert seen == list(range(12, 40))  # nothing before the cut ran again


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (Pipe(range(10)).map(double).partition(3), r"stage 2 is partition\(3\) here, but"),
        (Pipe(range(10)).map(str).partition(2), r"stage 1 is map\(str\) here, but map\(double"),
        (Pipe(range(10)).map(double), r"stage 2 is nothing here, but partition\(2\)"),
        (Pipe(range(11)).map(double).partition(2), r"stage 0 is Pipe\(range, len=11\)"),
    ],
)
def test_a_state_of_another_pipe_names_the_first_stage_that_differs(
    other: Pipe[Any], message: str
) -> None:
    _, state = cut(Pipe(range(10)).map(double).partition(2), 1)
    with pytest.raises(ValueError, match=message):
        other.iter(state=state)


def test_bad_states_fail_clearly() -> None:
    pipe = Pipe(range(4))
    _, state = cut(pipe, 1)
    with pytest.raises(TypeError, match=r"state must be a dict from run\.state_dict"):
        pipe.iter(state=[1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"state\['version'\] must be an int from 1 to 1"):
        pipe.iter(state={**state, "version": 2})
    with pytest.raises(ValueError, match=r"state\['source'\] must be an int >= 0"):
        pipe.iter(state={**state, "source": "x"})


def _generator() -> Iterator[int]:
    yield from range(3)


@pytest.mark.parametrize(
    ("pipe", "message"),
    [
        (Pipe(_generator()), r"the source Pipe\(<generator .*\) is an iterator"),
        (Pipe(iter([1, 2])).map(double), r"the source Pipe\(<list_iterator.*is an iterator"),
        (Pipe(range(5)).shuffle(3), r"shuffle\(3\) has no seed"),
        (Pipe.mix([range(3), range(3)], weights=[1, 2]), r"mix\(.*\) draws its inputs"),
        (
            Pipe(range(5)).map(double).thread(2).partition(2),
            r"thread\(2\) delivers items in the order they complete, which the stateful",
        ),
        (
            Pipe(range(5)).map(double).thread(2).partition(2).map(len).thread(3),
            r"thread\(2\) delivers items in the order they complete",
        ),
        (Pipe.mix([range(3), Pipe(iter([1]))]), r"Pipe\(<list_iterator.*is an iterator"),
    ],
)
def test_what_cannot_be_resumed_raises_not_resumable_naming_it(
    pipe: Pipe[Any], message: str
) -> None:
    with pipe.iter() as run:
        next(run)
        with pytest.raises(NotResumable, match=message):
            run.state_dict()
    with pytest.raises(NotResumable, match=message):
        pipe.iter(state={"version": 1})


def _count_up(n: int) -> Iterator[int]:
    yield from range(n)


def test_a_flatten_in_the_middle_of_a_generator_is_not_resumable_there() -> None:
    pipe = Pipe([3, 2]).map(_count_up).flatten()
    with pipe.iter() as run:
        next(run)
        with pytest.raises(NotResumable, match=r"flatten\(\) is in the middle of an item"):
            run.state_dict()
    eager = Pipe([3, 2]).map(_count_up).flatten(eager=True)
    head, state = cut(eager, 1)
    assert head + list(eager.iter(state=state)) == [0, 1, 2, 0, 1]


def test_a_live_stage_shared_by_a_pipe_keeps_its_own_state() -> None:
    pipe = Pipe(range(5)).map(double)
    run = pipe.iter()
    next(run)
    for _ in Pipe(run):  # the pipe hands out the live stage itself, which yields 2
        break
    assert list(pipe.iter(state=run.state_dict())) == [4, 6, 8]


def test_a_module_level_stage_resumes_as_its_pipe_unless_it_pulls_a_live_stage() -> None:
    with pl.map(range(4), double) as stage:
        next(stage)
        state = stage.state_dict()
    assert list(Pipe(range(4)).map(double).iter(state=state)) == [2, 4, 6]
    with pl.map(pl.map(range(3), double), str) as stage:
        next(stage)
        with pytest.raises(NotResumable, match=r"source Pipe\(<tinypl.Stage .*is an iterator"):
            stage.state_dict()


def _loader(state: dict[str, Any] | None = None, **options: Any) -> pl.Stage[Any]:
    dataset = list(range(100, 130))
    sampler = pl.dataloader.sampler.shuffle(dataset, rng=3, epochs=2)
    return pl.dataloader.load(
        dataset, 4, sampler=sampler, epoch_end_mode="keep_last", state=state, **options
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "options", [{}, {"map": functools.partial(pl.thread.map, workers=3)}], ids=["sync", "thread"]
)
def test_the_data_loader_resumes_mid_epoch(options: dict[str, Any]) -> None:
    with _loader(**options) as loader:
        full = list(loader)
    with _loader(**options) as loader:
        head = [next(loader) for _ in range(5)]  # the second epoch starts at batch 8
        state = json.loads(json.dumps(loader.state_dict()))
    with _loader(state, **options) as resumed:
        assert head + list(resumed) == full
    assert len(json.dumps(state)) < 1000


def test_a_sampler_with_a_live_generator_is_not_resumable() -> None:
    dataset = list(range(10))
    sampler = pl.dataloader.sampler.shuffle(dataset, rng=random.Random(0), epochs=1)
    with pl.dataloader.load(dataset, 2, sampler=sampler) as loader:
        next(loader)
        with pytest.raises(NotResumable, match=r"shuffles with a live generator"):
            loader.state_dict()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("buffer", [None, 10_000])
def test_the_state_of_a_loader_over_a_million_indices_stays_small(buffer: int | None) -> None:
    indices: Pipe[int] = Pipe(range(1_000_000))
    if buffer is not None:
        indices = indices.shuffle(buffer, seed=0)
    pipe = indices.partition(32).map(len).thread(4).order()
    with pipe.iter() as run:
        for _ in range(400):  # past the filling of the shuffle buffer
            next(run)
        size = len(json.dumps(run.state_dict()))
    assert size < (1000 if buffer is None else 200_000)


def test_as_torch_dataset_exposes_the_stateful_protocol() -> None:
    pytest.importorskip("torch")
    pipe = Pipe(range(10)).map(double).partition(3)
    dataset: Any = pl.dataloader.as_torch_dataset(pipe)
    assert dataset.state_dict() == {}
    batches = iter(dataset)
    assert next(batches) == [0, 2, 4]
    state = json.loads(json.dumps(dataset.state_dict()))
    again: Any = pl.dataloader.as_torch_dataset(pipe)
    again.load_state_dict(state)
    assert again.state_dict() == state
    assert list(again) == [[6, 8, 10], [12, 14, 16], [18]]
    assert list(again) == [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]  # then from the start


def test_torchdata_stateful_dataloader_saves_and_loads_the_pipe() -> None:
    stateful = pytest.importorskip("torchdata.stateful_dataloader")
    pipe = Pipe(range(10)).map(double).partition(2)
    loader = stateful.StatefulDataLoader(
        pl.dataloader.as_torch_dataset(pipe), batch_size=None, num_workers=0
    )
    batches = iter(loader)
    head = [next(batches) for _ in range(2)]
    state = loader.state_dict()
    resumed = stateful.StatefulDataLoader(
        pl.dataloader.as_torch_dataset(pipe), batch_size=None, num_workers=0
    )
    resumed.load_state_dict(state)
    assert head + list(resumed) == [[0, 2], [4, 6], [8, 10], [12, 14], [16, 18]]


class Reads:
    """A sequence (walked by index) that counts the elements read."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reads = 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        if not 0 <= index < self.n:
            raise IndexError(index)
        self.reads += 1
        return index


def test_a_resumed_shuffle_rereads_only_its_buffer() -> None:
    source = Reads(1000)
    pipe = Pipe(source).map(double).shuffle(10, seed=3).filter(lambda x: x % 3 != 0)
    full = list(pipe)
    head, state = cut(pipe, 300)
    assert state["mode"] == "shuffle" and len(state["buffer"]) == 10
    source.reads = 0
    with pipe.iter(state=state) as run:
        first = next(run)
        assert source.reads <= 10 + 3  # the buffer, then what leads to its first item
        rest = [first, *run]
    assert head + rest == full


def test_a_shuffle_resumes_in_its_final_flush() -> None:
    pipe = Pipe(list(range(30))).shuffle(8, seed=5)
    full = list(pipe)
    head, state = cut(pipe, 26)
    assert state["ended"] and len(state["flush"]) == 4
    assert head + list(pipe.iter(state=state)) == full


@pytest.mark.parametrize(
    ("key", "value"),
    [("source", -1), ("buffer", [10**9]), ("flush", "x"), ("ended", 1), ("rng", [3])],
)
def test_a_bad_shuffle_state_is_refused(key: str, value: Any) -> None:
    pipe = Pipe(range(50)).shuffle(4, seed=1)
    _, state = cut(pipe, 5)
    with pytest.raises(ValueError, match=rf"state\['{key}'\]"):
        pipe.iter(state={**state, key: value})


# -- without order(): the concurrent stages at the end of a pipe -------------------------


@pytest.mark.timeout(60)
def test_an_unordered_thread_stage_recomputes_only_what_was_not_delivered() -> None:
    calls: list[int] = []

    def load(x: int) -> int:
        calls.append(x)
        return x * 10

    pipe = Pipe(range(40)).map(load).thread(3).map(double)
    head, state = cut(pipe, 15)
    assert state["mode"] == "unordered"
    delivered = {x // 20 for x in head}
    assert state["count"] + len(state["done"]) == 15
    assert set(range(state["count"])) | set(state["done"]) == delivered
    calls.clear()
    with pipe.iter(state=state) as resumed:
        rest = list(resumed)
    assert sorted(head + rest) == [20 * x for x in range(40)]
    assert sorted(calls) == sorted(set(range(40)) - delivered)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("ordered", [False, True])
def test_a_drained_run_counts_exactly_the_elements_of_its_source(ordered: bool) -> None:
    # Each worker that finds the source's end had taken a number for it: the number is
    # handed back, never counted as an element delivered (it was, once per worker).
    pipe = Pipe(range(5)).map(double).thread(2)
    with (pipe.order() if ordered else pipe).iter() as run:
        assert sorted(run) == [0, 2, 4, 6, 8]
        state = run.state_dict()
    assert (state["count"], state.get("done", [])) == (5, [])


@pytest.mark.timeout(60)
def test_past_a_straggler_the_state_lists_what_was_delivered_and_stays_small() -> None:
    release = threading.Event()
    waiting = threading.Event()

    def slow_first(x: int) -> int:
        if x == 0:
            waiting.set()
            assert release.wait(30)
        return x

    pipe = Pipe(range(500)).map(slow_first).thread(2)
    with pipe.iter() as run:
        head = [next(run) for _ in range(60)]
        assert waiting.is_set()
        state = json.loads(json.dumps(run.state_dict()))
        release.set()
    assert 0 not in head
    assert state["count"] == 0 and state["done"] == sorted(head)
    assert len(json.dumps(state)) < 1000
    with pipe.iter(state=state) as resumed:
        assert sorted(head + list(resumed)) == list(range(500))


@pytest.mark.timeout(60)
def test_an_unordered_run_cut_inside_a_flattened_element_resumes_there() -> None:
    pipe = Pipe(range(6)).map(lambda x: [x] * 3).flatten().thread(1)
    head, state = cut(pipe, 4)  # one worker: the elements come in order
    assert head == [0, 0, 0, 1]
    assert (state["count"], state["done"], state["partial"]) == (1, [], [[1, 1]])
    with pipe.iter(state=state) as resumed:
        assert list(resumed) == [1, 1] + [x for x in range(2, 6) for _ in range(3)]


@pytest.mark.timeout(60)
def test_an_unordered_process_stage_resumes_and_its_stats_name_the_pipes_stages() -> None:
    pipe = Pipe(range(30)).map(double).process(2)
    head, state = cut(pipe, 11)
    assert state["mode"] == "unordered"
    with pipe.iter(state=state) as resumed:
        assert isinstance(resumed, pl.Stage) and resumed.workers == 2
        rest = list(resumed)
        names = [row.name for row in resumed.stats().rows]
    assert sorted(head + rest) == [2 * x for x in range(30)]
    assert names == ["source", "map(double) in process(2)"]
    assert "order.release()" in pipe.explain()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"count": -1}, r"state\['count'\] must be an int >= 0, got -1"),
        ({"done": [5, 4]}, r"state\['done'\] must list increasing ints above state\['count'\]"),
        ({"partial": [[0, 0]]}, r"state\['partial'\] must list pairs \[n, k\]"),
        ({"partial": None}, r"state\['partial'\] must list pairs \[n, k\]"),
    ],
)
def test_bad_unordered_states_fail_clearly(change: dict[str, Any], message: str) -> None:
    pipe = Pipe(range(10)).map(double).thread(2)
    _, state = cut(pipe, 3)
    with pytest.raises(ValueError, match=message):
        pipe.iter(state={**state, "count": 3, "done": [], "partial": [], **change})


@pytest.mark.timeout(60)
def test_a_shuffle_before_an_ordered_region_is_resumed_from_its_journal_not_replayed() -> None:
    seen: list[int] = []
    pipe = (
        Pipe(range(20_000)).each(seen.append).shuffle(1000, seed=4)
        .partition(8).map(sum).thread(2).order()
    )  # fmt: skip
    head, state = cut(pipe, 1000)  # 8,000 of the shuffle's items, well past its journal's start
    assert state["mode"] == "ordered" and state["count"] == 1000
    assert len(state["shuffle"]["buffer"]) == 1000 and state["shuffle"]["source"] == 9000
    seen.clear()
    assert head + list(pipe.iter(state=state)) == list(pipe)
    # Only the buffer's positions were read again, not the 9,000 before them.
    assert len(seen) == 1000 + 11_000 + 20_000


def test_insert_marker_keeps_its_count_and_a_due_marker_belongs_to_the_resumed_run() -> None:
    pipe = Pipe(range(10)).insert_marker(M, every=3).map(double)
    with pipe.iter() as run:
        head = [next(run) for _ in range(3)]
        state = json.loads(json.dumps(run.state_dict()))
    assert head == [0, 2, 4]
    assert (state["mode"], state["source"], state["markers"]) == ("position", 3, [[0, True]])
    with pipe.iter(state=state) as resumed:
        assert list(resumed.raw) == [M, 6, 8, 10, M, 12, 14, 16, M, 18]
    with pytest.raises(ValueError, match=r"state\['markers'\] must list, for each of the"):
        pipe.iter(state={**state, "markers": [[3, False]]})


def test_a_repeat_resumes_in_its_pass_from_that_pass_state() -> None:
    seen: list[int] = []
    pipe = Pipe(range(5)).each(seen.append).repeat(3, M).map(double)
    head, state = cut(pipe, 7)
    assert head == [0, 2, 4, 6, 8, 0, 2]
    assert (state["mode"], state["pass"], state["body"]["source"]) == ("repeat", 1, 2)
    seen.clear()
    with pipe.iter(state=state) as resumed:
        assert list(resumed.raw) == [4, 6, 8, M, 0, 2, 4, 6, 8, M]
    assert seen == [2, 3, 4, 0, 1, 2, 3, 4]  # nothing of the passes before ran again
    with pytest.raises(ValueError, match=r"state\['pass'\] must be an int from 0 to"):
        pipe.iter(state={**state, "pass": 4})
    with pytest.raises(NotResumable, match=r"shuffle\(2\) has no seed"):
        Pipe(range(3)).shuffle(2).repeat(2).iter(state=state)


def test_a_mix_resumes_each_input_where_it_stood_and_its_draws_where_they_stood() -> None:
    seen: list[int] = []
    first = Pipe(range(100)).each(seen.append)
    pipe = Pipe.mix([first, range(1000, 1100)], weights=[1, 3], seed=5).map(double)
    head, state = cut(pipe, 60)
    assert state["mode"] == "mix" and state["inputs"][0]["mode"] == "position"
    seen.clear()
    assert head + list(pipe.iter(state=state)) == list(pipe)
    assert seen[0] == state["inputs"][0]["source"]  # the input was not replayed
    round_robin = Pipe.mix([range(5), "abc"], stop="all")
    head, state = cut(round_robin, 4)
    assert "rng" not in state["mix"] and len(json.dumps(state)) < 400
    assert head + list(round_robin.iter(state=state)) == [0, "a", 1, "b", 2, "c", 3, 4]
    with pytest.raises(ValueError, match=r"state\['inputs'\] must list the states of the"):
        round_robin.iter(state={**state, "inputs": []})


def test_a_shard_of_a_shard_is_not_resumed_by_the_source_position() -> None:
    pipe = Pipe(list(range(9))).shard(0, 2).shard(1, 2)  # found by the thorough profile
    head, state = cut(pipe, 1)
    assert head == [2] and state["mode"] == "replay"
    assert list(pipe.iter(state=state)) == [6]


def test_a_partition_keeps_the_markers_it_holds_and_resumes_by_position() -> None:
    n = Marker("n")
    pipe = (
        Pipe(range(20)).insert_marker(M, every=3).insert_marker(n, every=4)
        .partition(3, markers="after", split_on_marker=True).map(len)
    )  # fmt: skip
    with iter(pipe) as run:
        full = list(run.raw)
    with pipe.iter() as run:
        raw = iter(run.raw)
        head = [next(raw) for _ in range(3)]  # 3, then the split at 4 and its marker n
        state = json.loads(json.dumps(run.state_dict()))
    assert head == [3, M, 1]
    assert (state["mode"], state["source"], state["held"]) == ("position", 4, [[1]])
    with pipe.iter(state=state) as resumed:
        assert head + list(resumed.raw) == full
    before = Pipe(range(10)).insert_marker(M, every=2).partition(3, markers="before")
    with before.iter() as run:
        assert next(iter(run.raw)) is M  # emitted at once, in the middle of a batch
        with pytest.raises(NotResumable, match=r"a partition is in the middle of a batch"):
            run.state_dict()
