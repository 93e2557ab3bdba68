"""Stream operations (issue #11): shuffle, take, skip, shard, zip, concat, mix, repeat,
prefetch and len(), in both forms, with markers, threads, processes and order."""

from __future__ import annotations

import itertools
import multiprocessing
import operator
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from threadwatch import gone_within, tinypl_threads

import tinypl as pl
from tinypl import Marker, Pipe

EPOCH = Marker("epoch")


def raw(pipe: Any) -> list[Any]:
    """Everything a run yields, markers included (the run is kept alive meanwhile: a
    dropped thread stage stops its workers)."""
    with iter(pipe) as run:
        return list(run.raw)


def segments(stream: list[Any]) -> list[list[Any]]:
    """The items between markers, one list per stretch."""
    out: list[list[Any]] = [[]]
    for x in stream:
        if isinstance(x, Marker):
            out.append([])
        else:
            out[-1].append(x)
    return out


def square(x: int) -> int:
    return x * x


# -- arguments are checked where the pipe is built ------------------------------------------


@pytest.mark.parametrize(
    ("build", "error", "words"),
    [
        (lambda p: p.shuffle(0), ValueError, "shuffle: buffer_size must be >= 1"),
        (lambda p: p.shuffle("4"), TypeError, "shuffle: buffer_size must be an int"),
        (lambda p: p.shuffle(4, seed=1.5), TypeError, "shuffle: seed must be an int or None"),
        (lambda p: p.take(-1), ValueError, "take: n must be >= 0"),
        (lambda p: p.skip(None), TypeError, "skip: n must be an int"),
        (lambda p: p.shard(2, 2), ValueError, "shard: index must be < count"),
        (lambda p: p.shard(0, 0), ValueError, "shard: count must be >= 1"),
        (lambda p: p.shard(-1, 2), ValueError, "shard: index must be >= 0"),
        (lambda p: p.zip(3), TypeError, "Pipe: source must be an iterable"),
        (lambda p: p.concat(None), TypeError, "Pipe: source must be an iterable"),
        (lambda p: p.repeat(-1), ValueError, "repeat: times must be >= 0"),
        (lambda p: p.repeat(2, marker="end"), TypeError, "repeat: marker must be"),
        (lambda p: p.prefetch(0), ValueError, "prefetch: n must be >= 1"),
        (lambda p: Pipe.mix([p], stop="any"), ValueError, "mix: stop must be one of"),
        (lambda p: Pipe.mix([]), ValueError, "mix: pipes must hold at least one pipe"),
        (Pipe.mix, TypeError, "mix: pipes must be a sequence of pipes"),
        (lambda p: Pipe.mix([p, p], weights=[1]), ValueError, "one weight per pipe"),
        (lambda p: Pipe.mix([p, p], weights=[1, -1]), ValueError, "weights must be >= 0"),
        (lambda p: Pipe.mix([p, p], weights=[0, 0]), ValueError, "positive sum"),
        (lambda p: Pipe.mix([p, p], weights=[1, "a"]), TypeError, "weights must be numbers"),
        (lambda p: Pipe.mix([p, p], weights=3), TypeError, "weights must be a sequence"),
        (lambda p: Pipe.mix([p], seed="s"), TypeError, "mix: seed must be an int or None"),
    ],
)
def test_bad_arguments_fail_where_the_pipe_is_built(build: Any, error: type, words: str) -> None:
    with pytest.raises(error, match=words.replace("(", r"\(")):
        build(Pipe(range(4)))


def test_repeat_refuses_an_iterator_source_at_build_naming_it() -> None:
    def numbers() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match=r"repeat: the source Pipe\(<generator"):
        Pipe(numbers()).map(str).repeat(2)
    with pytest.raises(TypeError, match=r"repeat: the source Pipe\(<list_iterator"):
        Pipe(range(3)).zip(iter([1, 2])).repeat()
    with pytest.raises(TypeError, match="repeat: the source"):
        pl.repeat(pl.map(range(3), str), 2)  # a live stage runs once


def test_nothing_runs_until_iteration() -> None:
    calls: list[int] = []

    def source() -> Iterator[int]:
        calls.append(1)
        yield 1

    class Lazy:
        def __iter__(self) -> Iterator[int]:
            return source()

    pipe = Pipe(Lazy()).shuffle(2).take(1).skip(0).shard(0, 1).zip(Lazy()).concat(Lazy())
    pipe = Pipe.mix([pipe, Lazy()]).repeat(2).prefetch(2)
    assert calls == []
    assert list(pipe) == [(1, 1), 1, 1, (1, 1), 1, 1]


# -- shuffle ---------------------------------------------------------------------------------


def test_shuffle_is_a_permutation_and_seeded_runs_agree() -> None:
    pipe = Pipe(range(1000)).shuffle(100, seed=7)
    first = list(pipe)
    assert sorted(first) == list(range(1000))
    assert first != list(range(1000))
    assert list(pipe) == first
    assert list(Pipe(range(1000)).shuffle(100, seed=8)) != first


def test_unseeded_shuffles_differ_between_runs() -> None:
    pipe = Pipe(range(200)).shuffle(200)
    assert list(pipe) != list(pipe)


def test_shuffle_emits_from_a_bounded_buffer() -> None:
    # Item k can be emitted only once k + 1 items arrived and at most k - size + 1 left.
    out = list(Pipe(range(500)).shuffle(10, seed=1))
    for position, item in enumerate(out[:-10]):
        assert item <= position + 10


@pytest.mark.parametrize("marked", [False, True])
def test_an_error_above_a_shuffle_does_not_end_it(marked: bool) -> None:
    def check(x: int) -> int:
        if x == 7:
            raise ValueError("seven")
        return x

    pipe = Pipe(range(20)).insert_marker(EPOCH, every=50) if marked else Pipe(range(20))
    run = iter(pipe.map(check).shuffle(5, seed=0))
    out: list[int] = []
    errors = 0
    while True:
        try:
            out.append(next(run))
        except ValueError:
            errors += 1
        except StopIteration:
            break
    assert errors == 1
    assert sorted(out) == [x for x in range(20) if x != 7]


def test_a_marker_flushes_the_shuffle_buffer() -> None:
    stream = raw(Pipe(range(20)).insert_marker(EPOCH, every=6).shuffle(50, seed=3))
    parts = segments(stream)
    assert [sorted(p) for p in parts] == [list(range(0, 6)), list(range(6, 12)),
                                          list(range(12, 18)), [18, 19]]  # fmt: skip
    assert stream.count(EPOCH) == 3


def test_successive_epochs_of_one_run_get_different_orders() -> None:
    stream = raw(Pipe(list(range(30)) * 3).insert_marker(EPOCH, every=30).shuffle(30, seed=0))
    orders = [p for p in segments(stream) if p]
    assert len(orders) == 3 and all(sorted(o) == list(range(30)) for o in orders)
    assert len({tuple(o) for o in orders}) == 3


def test_each_pass_of_a_repeat_gets_its_own_order_and_every_run_the_same_sequence() -> None:
    pipe = Pipe(range(50)).shuffle(50, seed=5).repeat(3, marker=EPOCH)
    stream = raw(pipe)
    passes = [p for p in segments(stream) if p]
    assert len(passes) == 3 and all(sorted(p) == list(range(50)) for p in passes)
    assert len({tuple(p) for p in passes}) == 3
    assert passes[0] == list(Pipe(range(50)).shuffle(50, seed=5))  # pass 0 keeps the seed
    assert raw(pipe) == stream


# -- take, skip, shard -----------------------------------------------------------------------


def test_take_passes_markers_before_its_last_item_and_ends_right_after_it() -> None:
    pipe = Pipe(range(10)).insert_marker(EPOCH, every=2)
    assert raw(pipe.take(3)) == [0, 1, EPOCH, 2]
    assert raw(pipe.take(4)) == [0, 1, EPOCH, 2, 3]  # the marker after the 4th is not
    assert raw(pipe.take(0)) == []
    assert list(pipe.take(100)) == list(range(10))


def test_skip_drops_items_but_passes_every_marker() -> None:
    pipe = Pipe(range(6)).insert_marker(EPOCH, every=2)
    assert raw(pipe.skip(3)) == [EPOCH, 3, EPOCH, 4, 5, EPOCH]
    assert list(Pipe(range(6)).skip(0)) == list(range(6))
    assert list(Pipe(range(6)).skip(9)) == []


def test_shard_keeps_positions_modulo_count_and_every_marker() -> None:
    pipe = Pipe(range(10)).insert_marker(EPOCH, every=4)
    assert raw(pipe.shard(1, 3)) == [1, EPOCH, 4, 7, EPOCH]
    shards = [list(Pipe(range(10)).shard(i, 3)) for i in range(3)]
    assert sorted(itertools.chain(*shards)) == list(range(10))


@pytest.mark.timeout(30)
def test_take_stops_the_threads_above_it() -> None:
    before = tinypl_threads()
    run = iter(Pipe(itertools.count()).map(square).thread(3).take(5))
    assert len(list(run)) == 5
    assert gone_within(before, 1.0)


@pytest.mark.timeout(60)
def test_take_stops_the_processes_above_it_promptly() -> None:
    run = iter(Pipe(itertools.count()).map(square).process(2).take(10))
    items = list(run)
    done = time.monotonic()
    for child in multiprocessing.active_children():
        child.join(max(0.0, 3.0 - (time.monotonic() - done)))
    stopped = time.monotonic() - done
    assert multiprocessing.active_children() == []
    assert stopped < 3.0  # the benchmark measures the figure; this bound survives a loaded CI
    assert len(items) == 10 and all(round(x**0.5) ** 2 == x for x in items)


def test_module_level_take_closes_the_live_stage_it_was_built_on() -> None:
    stage = pl.map(range(10), str)
    taken = pl.take(stage, 3)
    assert list(taken) == ["0", "1", "2"]
    assert stage.closed
    assert list(stage) == []


# -- zip, concat, mix ------------------------------------------------------------------------


def test_zip_and_concat_agree_with_itertools() -> None:
    expected = list(zip(range(5), "abc", [True] * 9, strict=False))
    assert list(Pipe(range(5)).zip("abc", [True] * 9)) == expected
    assert list(Pipe(range(2)).zip()) == [(0,), (1,)]
    assert list(Pipe(range(3)).concat("ab", [])) == list(itertools.chain(range(3), "ab"))


def test_zip_and_concat_pass_every_marker_where_it_arrives() -> None:
    left = Pipe(range(4)).insert_marker(EPOCH, every=2)
    other = Marker("other")
    right = Pipe("abcd").insert_marker(other, every=3)
    assert raw(left.zip(right)) == [(0, "a"), (1, "b"), EPOCH, (2, "c"), other, (3, "d"), EPOCH]
    assert raw(left.concat(right)) == [0, 1, EPOCH, 2, 3, EPOCH, "a", "b", "c", other, "d"]


@pytest.mark.timeout(30)
def test_zip_closes_the_other_inputs_when_the_shortest_ends() -> None:
    before = tinypl_threads()
    endless = Pipe(itertools.count()).map(square).thread(2)
    run = iter(Pipe(range(3)).zip(endless))
    assert [a for a, _ in run] == [0, 1, 2]
    run.close()
    assert gone_within(before, 1.0)


def test_mix_round_robin_stops_at_the_first_exhausted_input_or_goes_on() -> None:
    assert list(Pipe.mix([range(3), "ab"])) == [0, "a", 1, "b", 2]
    assert list(Pipe.mix(["ab", range(3)])) == ["a", 0, "b", 1]
    assert list(Pipe.mix([range(3), "a", [9, 9]], stop="all")) == [0, "a", 9, 1, 9, 2]


def test_weighted_mix_follows_the_weights_and_is_deterministic_with_a_seed() -> None:
    inputs = [["a"] * 4000, ["b"] * 4000]
    mixed = list(Pipe.mix(inputs, weights=[3, 1], seed=1, stop="all"))
    assert sorted(mixed) == ["a"] * 4000 + ["b"] * 4000
    share = mixed[:4000].count("a") / 4000
    assert 0.72 < share < 0.78
    assert list(Pipe.mix(inputs, weights=[3, 1], seed=1, stop="all")) == mixed
    first = list(Pipe.mix(inputs, weights=[3, 1], seed=1))
    assert first.count("a") == 4000 and first.count("b") < 4000  # ended when "a" ran out


def test_a_weightless_input_is_never_drawn() -> None:
    assert list(Pipe.mix([range(5), "xyz"], weights=[1, 0], seed=0, stop="all")) == [0, 1, 2, 3, 4]


def test_mix_passes_every_marker_and_keeps_each_inputs_order() -> None:
    a = Pipe(range(6)).insert_marker(EPOCH, every=3)
    b = Pipe(range(100, 104))
    stream = raw(Pipe.mix([a, b], weights=[1, 1], seed=2, stop="all"))
    assert stream.count(EPOCH) == 2
    items = [x for x in stream if not isinstance(x, Marker)]
    assert [x for x in items if x < 100] == list(range(6))
    assert [x for x in items if x >= 100] == list(range(100, 104))
    # Each marker comes right after the third item of its input.
    for index, x in enumerate(stream):
        if x is EPOCH:
            before = [y for y in stream[:index] if not isinstance(y, Marker) and y < 100]
            assert len(before) in {3, 6}


# -- repeat ----------------------------------------------------------------------------------


def test_repeat_runs_the_pipeline_again_from_its_source() -> None:
    calls: list[int] = []
    pipe = Pipe(range(3)).each(calls.append).repeat(2)
    assert list(pipe) == [0, 1, 2, 0, 1, 2]
    assert calls == [0, 1, 2, 0, 1, 2]
    assert list(Pipe(range(3)).repeat(0)) == []
    assert raw(Pipe("ab").repeat(2, marker=EPOCH)) == ["a", "b", EPOCH, "a", "b", EPOCH]
    assert list(Pipe("ab").repeat().take(5)) == ["a", "b", "a", "b", "a"]


@pytest.mark.timeout(30)
def test_each_pass_of_a_repeat_starts_and_stops_its_own_threads() -> None:
    before = tinypl_threads()
    pipe = Pipe(range(20)).map(square).thread(3).order().repeat(3, marker=EPOCH)
    assert [p for p in segments(raw(pipe)) if p] == [[x * x for x in range(20)]] * 3
    assert gone_within(before, 1.0)


# -- prefetch --------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_prefetch_keeps_order_and_reads_at_most_n_plus_one_ahead() -> None:
    pulled = 0
    reached = threading.Event()
    lock = threading.Lock()

    def source() -> Iterator[int]:
        nonlocal pulled
        for i in range(50):
            with lock:
                pulled += 1
                if pulled == 1 + 4 + 1:  # consumed 1, 4 ready, 1 in the thread's hands
                    reached.set()
            yield i

    with iter(Pipe(source()).prefetch(4)) as run:
        assert next(run) == 0
        assert reached.wait(10)
        consumed = 1
        for expected in range(1, 50):
            with lock:
                assert pulled - consumed <= 4 + 1
            assert next(run) == expected
            consumed += 1


@pytest.mark.timeout(30)
def test_prefetch_keeps_markers_in_place_and_runs_the_stages_above_in_its_thread() -> None:
    names: set[str] = set()

    def record(x: int) -> int:
        names.add(threading.current_thread().name)
        return x

    pipe = Pipe(range(9)).insert_marker(EPOCH, every=4).map(record).prefetch(2)
    assert raw(pipe) == [0, 1, 2, 3, EPOCH, 4, 5, 6, 7, EPOCH, 8]
    assert len(names) == 1 and next(iter(names)).startswith("tinypl-")


# -- stateful stages are guarded when worker threads pull them ------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "stage",
    [
        lambda p: p.shuffle(8, seed=0),
        lambda p: p.take(300),
        lambda p: p.skip(5),
        lambda p: p.shard(0, 2),
        lambda p: p.zip(range(1000)),
        lambda p: p.concat(range(5)),
        lambda p: Pipe.mix([p, range(10)], stop="all"),
    ],
)
def test_worker_threads_pull_a_stateful_stage_one_at_a_time(stage: Any) -> None:
    # A generator entered by two threads at once raises "generator already executing";
    # time.sleep(0) hands the GIL over inside it, so an unguarded stage would hit that.
    def source() -> Iterator[int]:
        for i in range(400):
            time.sleep(0)
            yield i

    pipe = stage(Pipe(source())).map(lambda x: x).thread(4)
    assert "mutex(auto)" in pipe.explain()
    reference = list(stage(Pipe(source())))
    assert sorted(map(repr, pipe)) == sorted(map(repr, reference))


# -- under threads, processes and order ------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("concurrent", ["thread", "process"])
def test_new_stages_keep_markers_in_place_after_ordered_concurrent_stages(
    concurrent: str,
) -> None:
    pipe = Pipe(range(40)).insert_marker(EPOCH, every=7).map(square)
    pipe = pipe.thread(3) if concurrent == "thread" else pipe.process(2)
    ordered = pipe.order()
    reference = Pipe(range(40)).insert_marker(EPOCH, every=7).map(square)
    for build in (
        lambda p: p.take(17),
        lambda p: p.skip(11),
        lambda p: p.shard(1, 4),
        lambda p: p.zip(range(100)),
        lambda p: p.concat([1, 2]),
        lambda p: p.prefetch(3),
    ):
        assert raw(build(ordered)) == raw(build(reference))
    shuffled = raw(ordered.shuffle(5, seed=1))
    assert [sorted(s) for s in segments(shuffled)] == [sorted(s) for s in segments(raw(reference))]


def test_new_stages_cannot_run_inside_an_ordered_region() -> None:
    with pytest.raises(ValueError, match="order: cannot restore the order across the take"):
        Pipe(range(4)).map(square).thread(2).take(2).order()
    saved = pl.order.save(range(4), maxsize=2)
    with pytest.raises(ValueError, match=r"shuffle: cannot run between pl\.order\.save"):
        pl.shuffle(saved, 2)


# -- len -------------------------------------------------------------------------------------


def test_len_follows_from_the_source_through_the_stages() -> None:
    base = Pipe(range(10))
    assert len(base.map(str).each(print).thread(2).order().prefetch(2).shuffle(3)) == 10
    assert len(base.map(square).process(2)) == 10
    assert len(base.partition(3)) == 4
    assert len(base.take(4)) == 4 and len(base.take(40)) == 10
    assert len(base.skip(4)) == 6 and len(base.skip(40)) == 0
    assert len(base.zip("abc")) == 3 and len(base.concat("abc", [1])) == 14
    assert len(base.repeat(3)) == 30
    assert [len(base.shard(i, 3)) for i in range(3)] == [4, 3, 3]
    assert len(base.insert_marker(EPOCH, every=2).on(EPOCH, print)) == 10
    assert len(Pipe.mix([base, "ab"], stop="all")) == 12
    for pipe in (base.take(4), base.shard(2, 3), base.zip("abc"), base.repeat(2)):
        assert len(list(pipe)) == len(pipe)


@pytest.mark.parametrize(
    ("pipe", "words"),
    [
        (Pipe(range(5)).filter(bool), "filter(bool)"),
        (Pipe([[1]]).flatten(), "flatten"),
        (Pipe(range(5)).insert_marker(EPOCH).until(EPOCH), "until()"),
        (Pipe(range(5)).partition(2, split_on_marker=True), "partition(split_on_marker=True)"),
        (Pipe.mix([range(3), "ab"]), "mix(stop='first')"),
        (Pipe(iter(range(3))), "the source Pipe(<range_iterator"),
        (Pipe(range(3)).repeat(), "repeat() without times"),
        (Pipe(range(3)).zip(iter("ab")), "the source Pipe(<str_ascii_iterato"),
    ],
)
def test_len_names_the_stage_that_makes_the_length_unknown(pipe: Any, words: str) -> None:
    with pytest.raises(TypeError, match=words.replace("(", r"\(").replace(")", r"\)")):
        len(pipe)
    assert bool(pipe) is True
    list(pipe.take(2))  # list() works whether the length is known or not


def test_len_runs_nothing() -> None:
    class Sized:
        def __len__(self) -> int:
            return 3

        def __iter__(self) -> Iterator[int]:
            raise AssertionError("len() iterated the source")

    assert len(Pipe(Sized()).map(square)) == 3
    assert bool(Pipe([])) is True


def test_len_raises_only_type_errors_so_list_still_works() -> None:
    class Broken:
        def __len__(self) -> int:
            raise ValueError("no length today")

        def __iter__(self) -> Iterator[int]:
            return iter([1, 2])

    with pytest.raises(TypeError, match="raised ValueError: no length today"):
        len(Pipe(Broken()))
    assert list(Pipe(Broken()).map(square)) == [1, 4]


def test_a_live_stage_hints_what_it_has_left() -> None:
    run = iter(Pipe(range(10)).map(str).skip(2).take(5))
    assert operator.length_hint(run) == 5
    next(run)
    assert operator.length_hint(run) == 4
    assert operator.length_hint(iter(Pipe(range(10)).filter(bool)), -1) == -1
    shuffled = iter(Pipe(range(10)).shuffle(4))
    next(shuffled)
    assert operator.length_hint(shuffled) == 9


# -- rendering -------------------------------------------------------------------------------


def test_repr_and_explain_show_the_new_stages() -> None:
    pipe = Pipe(range(4)).shuffle(3, seed=1).take(2).zip("ab").prefetch(2).repeat(2)
    assert repr(pipe) == (
        "Pipe(range(0, 4)).shuffle(3, seed=1).take(2).zip(Pipe('ab')).prefetch(2).repeat(2)"
    )
    text = pipe.explain()
    assert "repeat(Pipe(range(0, 4))" in text and "each pass runs the plan inside" in text
    assert "prefetch(2)" in Pipe(range(3)).prefetch(2).explain()
    assert repr(Pipe.mix([range(2), "a"], weights=[1, 2])) == (
        "mix([Pipe(range(0, 2)), Pipe('a')], weights=[1.0, 2.0])"
    )
