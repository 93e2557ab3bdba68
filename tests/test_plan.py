"""Descriptions: frozen, validated at build time, inert until iterated, renderable."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs
import attrs.exceptions
import pytest

import tinypl as pl
from tinypl import Marker, Pipe
from tinypl import _plan as plan

M = Marker("m")
IDENTITY = lambda x: x  # noqa: E731


def double(x: int) -> int:
    return 2 * x


def is_even(x: int) -> bool:
    return x % 2 == 0


def noop() -> None:
    return None


class Recorder:
    """A callable that records every call (and so proves whether it was called)."""

    def __init__(self, result: Callable[..., Any] = lambda *args: args[0] if args else None):
        self.calls: list[tuple[Any, ...]] = []
        self._result = result
        self.__qualname__ = "Recorder"

    def __call__(self, *args: Any) -> Any:
        self.calls.append(args)
        return self._result(*args)


class RecordingIterable:
    """An iterable that records each time an iterator is requested from it."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.iter_calls = 0

    def __iter__(self) -> Iterator[Any]:
        self.iter_calls += 1
        return iter(self.items)


# -- frozen --------------------------------------------------------------------------------


def test_pipe_is_frozen() -> None:
    pipe = Pipe(range(3)).map(double)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        pipe.plan = plan.Source(range(4))  # type: ignore[misc]
    assert list(pipe) == [0, 2, 4]


def test_marker_is_frozen() -> None:
    marker = Marker("a")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        marker.name = "b"  # type: ignore[misc]
    assert marker.name == "a"


EVERY_STAGE: list[tuple[str, Callable[[Pipe[Any]], Pipe[Any]]]] = [
    ("map", lambda p: p.map(double)),
    ("filter", lambda p: p.filter(is_even)),
    ("each", lambda p: p.each(double)),
    ("flatten", lambda p: p.flatten()),
    ("flatten_eager", lambda p: p.flatten(eager=True)),
    ("partition", lambda p: p.partition(2, "after", True)),
    ("insert_marker", lambda p: p.insert_marker(M, every=2, after=False)),
    ("on", lambda p: p.on(M, noop, consume=True)),
    ("until", lambda p: p.until(M)),
    ("ratelimit", lambda p: p.ratelimit(3, 0.5)),
    ("trace", lambda p: p.trace("msg")),
    ("mutex", lambda p: p.mutex()),
    ("thread", lambda p: p.thread(2, maxsize=3, on_worker_error="forward")),
    ("order", lambda p: p.thread(2).order(maxsize=4)),
]


@pytest.mark.parametrize(("name", "build"), EVERY_STAGE, ids=[n for n, _ in EVERY_STAGE])
def test_every_node_is_frozen(name: str, build: Callable[[Pipe[Any]], Pipe[Any]]) -> None:
    node = build(Pipe(range(3))).plan
    fields = attrs.fields(type(node))
    assert fields, name
    for field in fields:
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(node, field.name, getattr(node, field.name))


def test_source_node_is_frozen() -> None:
    node = Pipe([1]).plan
    assert isinstance(node, plan.Source)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        node.source = [2]  # type: ignore[misc]


def test_builders_return_new_pipes_and_leave_the_original_alone() -> None:
    base = Pipe(range(4))
    before = base.plan
    derived = base.map(double).filter(is_even)
    assert base.plan is before
    assert list(base) == [0, 1, 2, 3]
    assert list(derived) == [0, 2, 4, 6]
    # Derived plans share their upstream structure.
    assert derived.plan.upstream.upstream is before  # type: ignore[attr-defined]


# -- validation at build time ---------------------------------------------------------------

P = Pipe(range(3))

INVALID: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    ("map-fn", lambda: P.map(3), TypeError, "fn"),  # type: ignore[arg-type]
    ("filter-pred", lambda: P.filter("x"), TypeError, "pred"),  # type: ignore[arg-type]
    ("each-fn", lambda: P.each(None), TypeError, "fn"),  # type: ignore[arg-type]
    ("flatten-eager", lambda: P.flatten(eager=1), TypeError, "eager"),  # type: ignore[arg-type]
    ("partition-n-type", lambda: P.partition(2.0), TypeError, "n"),  # type: ignore[arg-type]
    ("partition-n-bool", lambda: P.partition(True), TypeError, "n"),
    ("partition-n-zero", lambda: P.partition(0), ValueError, "n"),
    ("partition-markers", lambda: P.partition(2, "around"), ValueError, "markers"),  # type: ignore[arg-type]
    (
        "partition-split",
        lambda: P.partition(2, "after", "yes"),  # type: ignore[arg-type]
        TypeError,
        "split_on_marker",
    ),
    ("insert-marker", lambda: P.insert_marker("m"), TypeError, "marker"),  # type: ignore[arg-type]
    ("insert-none", lambda: P.insert_marker(None), TypeError, "marker"),  # type: ignore[arg-type]
    ("insert-every", lambda: P.insert_marker(M, every=0), ValueError, "every"),
    ("insert-every-type", lambda: P.insert_marker(M, every="2"), TypeError, "every"),  # type: ignore[arg-type]
    ("insert-after", lambda: P.insert_marker(M, after=1), TypeError, "after"),  # type: ignore[arg-type]
    ("on-marker", lambda: P.on("m", noop), TypeError, "marker"),  # type: ignore[arg-type]
    ("on-fn", lambda: P.on(M, 5), TypeError, "fn"),  # type: ignore[arg-type]
    ("on-consume", lambda: P.on(M, noop, consume="no"), TypeError, "consume"),  # type: ignore[arg-type]
    ("until-marker", lambda: P.until("m"), TypeError, "marker"),  # type: ignore[arg-type]
    ("ratelimit-num", lambda: P.ratelimit(0, 1.0), ValueError, "num"),
    ("ratelimit-num-type", lambda: P.ratelimit(1.5, 1.0), TypeError, "num"),  # type: ignore[arg-type]
    ("ratelimit-period", lambda: P.ratelimit(1, 0), ValueError, "period"),
    ("ratelimit-period-neg", lambda: P.ratelimit(1, -1.0), ValueError, "period"),
    ("ratelimit-period-type", lambda: P.ratelimit(1, "1"), TypeError, "period"),  # type: ignore[arg-type]
    ("trace-message", lambda: P.trace(3), TypeError, "message"),  # type: ignore[arg-type]
    ("thread-workers", lambda: P.thread(0), ValueError, "workers"),
    ("thread-workers-type", lambda: P.thread("4"), TypeError, "workers"),  # type: ignore[arg-type]
    ("thread-maxsize", lambda: P.thread(2, maxsize=0), ValueError, "maxsize"),
    (
        "thread-on-worker-error",
        lambda: P.thread(2, on_worker_error="ignore"),  # type: ignore[arg-type]
        ValueError,
        "on_worker_error",
    ),
    ("order-maxsize", lambda: P.thread(2).order(maxsize=0), ValueError, "maxsize"),
    ("marker-name", lambda: Marker(3), TypeError, "name"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("build", "error", "argument"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_arguments_fail_at_build_time_naming_the_argument(
    build: Callable[[], object], error: type[Exception], argument: str
) -> None:
    with pytest.raises(error) as info:
        build()
    message = str(info.value)
    assert argument in message.replace(":", " ").split(), message


def test_validation_also_runs_on_evolve() -> None:
    node = Pipe(range(3)).map(double).plan
    with pytest.raises(TypeError, match="fn"):
        attrs.evolve(node, fn=42)
    with pytest.raises(ValueError, match="n must be"):
        attrs.evolve(Pipe(range(3)).partition(2).plan, size=0)


def test_unrestorable_order_fails_at_build_time() -> None:
    pipe = Pipe(range(6)).thread(2).partition(2)
    with pytest.raises(ValueError, match="partition"):
        pipe.order()


@pytest.mark.parametrize(
    ("source", "type_name"),
    [(3, "int"), (3.5, "float"), (None, "NoneType"), (object(), "object"), (noop, "function")],
)
def test_pipe_of_a_non_iterable_raises_type_error_naming_the_type(
    source: object, type_name: str
) -> None:
    with pytest.raises(TypeError) as info:
        Pipe(source)  # type: ignore[arg-type]
    assert type_name in str(info.value)
    assert "source" in str(info.value)


def test_pipe_of_a_custom_non_iterable_names_its_class() -> None:
    class Opaque:
        pass

    with pytest.raises(TypeError, match="Opaque"):
        Pipe(Opaque())  # type: ignore[arg-type]


@pytest.mark.parametrize("source", [[1], (1,), "ab", {1: 2}, {1}, range(2), b"xy"])
def test_pipe_accepts_iterables(source: Any) -> None:
    assert list(Pipe(source)) == list(source)


def test_pipe_accepts_iterators_and_old_style_sequences() -> None:
    class Squares:  # iterable only through __getitem__
        def __getitem__(self, index: int) -> int:
            if index >= 3:
                raise IndexError(index)
            return index * index

    assert list(Pipe(iter([1, 2]))) == [1, 2]
    assert list(Pipe(Squares())) == [0, 1, 4]


# -- building does no work ------------------------------------------------------------------


def test_building_calls_no_user_function() -> None:
    started: list[bool] = []

    def numbers() -> Iterator[int]:
        started.append(True)
        yield from range(6)

    fns = {name: Recorder() for name in ("map", "filter", "each", "on", "trace")}
    fns["map"] = Recorder(lambda x: [x, x])
    pipe = (
        Pipe(numbers())
        .map(fns["map"])
        .flatten()
        .filter(fns["filter"])
        .each(fns["each"])
        .insert_marker(M, every=2)
        .on(M, fns["on"])
        .partition(2, markers="after")
        .trace(fns["trace"])
        .ratelimit(100, 1.0)
        .until(None)
    )
    repr(pipe)
    pipe.explain()
    pipe.explain(optimized=False)
    assert started == []
    assert all(fn.calls == [] for fn in fns.values())
    # The same functions run once the pipe is iterated.
    assert list(pipe) == [[1, 1]]
    assert started == [True]
    assert all(fn.calls for fn in fns.values())


def test_building_does_not_ask_an_iterable_for_an_iterator() -> None:
    source = RecordingIterable([1, 2, 3])
    pipe = Pipe(source).map(double).partition(2).thread(2).order()
    repr(pipe)
    pipe.explain()
    assert source.iter_calls == 0


@pytest.mark.timeout(10)
def test_building_thread_stages_starts_no_thread() -> None:
    import threading

    fn = Recorder()
    before = threading.active_count()
    pipe = Pipe(range(4)).map(fn).thread(3).map(fn).thread(2).order()
    pipe.explain()
    assert threading.active_count() == before
    assert fn.calls == []
    assert list(pipe) == [0, 1, 2, 3]


# -- derivation with attrs.evolve -----------------------------------------------------------


def test_evolve_pipe_with_a_new_source() -> None:
    pipe = Pipe(range(3))
    other = attrs.evolve(pipe, source=[7, 8])
    assert list(other) == [7, 8]
    assert list(pipe) == [0, 1, 2]


def test_evolve_pipe_onto_another_plan() -> None:
    pipe = Pipe(range(3)).map(double)
    derived = attrs.evolve(pipe, source=pipe.plan)
    assert derived == pipe
    assert list(attrs.evolve(pipe, source=pipe.filter(is_even))) == [0, 2, 4]


def test_evolve_a_node_replaces_one_field() -> None:
    pipe = Pipe(range(4)).map(double).filter(is_even)
    node = pipe.plan
    assert isinstance(node, plan.Filter)
    swapped = Pipe(attrs.evolve(node, pred=lambda x: x > 2))
    assert list(swapped) == [4, 6]
    assert list(pipe) == [0, 2, 4, 6]
    rebased = Pipe(attrs.evolve(node, upstream=Pipe(range(10, 12)).map(double).plan))
    assert list(rebased) == [20, 22]


def test_evolve_partition_mode() -> None:
    pipe = Pipe(range(3)).insert_marker(M, every=2).partition(2)
    with pytest.raises(pl.MarkerNotAllowedError):
        list(pipe)
    fixed = Pipe(attrs.evolve(pipe.plan, markers="after"))
    assert list(fixed) == [[0, 1], [2]]


def test_equal_descriptions_compare_equal() -> None:
    a = Pipe(range(3)).map(double).partition(2)
    b = Pipe(range(3)).map(double).partition(2)
    assert a.plan.upstream.upstream == b.plan.upstream.upstream  # type: ignore[attr-defined]
    assert Marker("x") != Marker("x")  # markers are matched by identity


# -- rendering ------------------------------------------------------------------------------


def test_repr_is_the_fluent_spelling() -> None:
    pipe = Pipe(range(10)).map(double).filter(is_even).partition(2)
    assert repr(pipe) == "Pipe(range(0, 10)).map(double).filter(is_even).partition(2)"
    assert repr(Pipe([1]).map(IDENTITY)) == "Pipe([1]).map(<lambda>)"


def test_repr_shows_non_default_arguments() -> None:
    marker = Marker("tick")
    pipe = (
        Pipe(range(3))
        .insert_marker(marker, every=2, after=False)
        .on(marker, noop, consume=True)
        .until(None)
        .partition(3, markers="before", split_on_marker=True)
        .flatten(eager=True)
        .ratelimit(5, 0.25)
        .trace("here")
        .mutex()
        .thread(4, maxsize=9, on_worker_error="forward")
        .order(maxsize=7)
    )
    text = repr(pipe)
    for part in (
        "Pipe(range(0, 3))",
        "insert_marker(Marker('tick'), every=2, after=False)",
        "on(Marker('tick'), noop, consume=True)",
        "until(None)",
        "partition(3, markers='before', split_on_marker=True)",
        "flatten(eager=True)",
        "ratelimit(5, 0.25)",
        "trace(here)",
        "mutex()",
        "thread(4, maxsize=9, on_worker_error='forward')",
        "order(maxsize=7)",
    ):
        assert part in text, (part, text)
    assert repr(Pipe(range(3)).insert_marker(marker)) == (
        "Pipe(range(0, 3)).insert_marker(Marker('tick'))"
    )


def test_repr_of_a_long_source_is_abbreviated() -> None:
    text = repr(Pipe(list(range(1000))))
    assert text.startswith("Pipe([0, 1, 2")
    assert len(text) < 100


def test_explain_logical_plan() -> None:
    pipe = Pipe(range(3)).map(double).filter(is_even)
    assert pipe.explain(optimized=False) == (
        "logical plan (as written)\n  0  Pipe(range(0, 3))\n  1  map(double)\n  2  filter(is_even)"
    )


def test_explain_physical_plan_fuses_per_item_stages() -> None:
    pipe = Pipe(range(3)).map(double).filter(is_even).each(noop).partition(2)
    lines = pipe.explain().splitlines()
    assert lines[0] == "physical plan (what iter() builds)"
    assert lines[1] == "  0  Pipe(range(0, 3))"
    assert lines[2].startswith("  1  fused(map(double) -> filter(is_even) -> each(noop))")
    assert lines[3] == "  2  partition(2)"
    assert len(lines) == 4


def test_explain_physical_plan_of_a_threaded_ordered_pipe() -> None:
    def numbers() -> Iterator[int]:
        yield from range(3)

    text = Pipe(numbers()).map(double).thread(2).order().explain()
    lines = text.splitlines()
    assert "3 threads" not in text
    thread_line = next(line for line in lines if "thread(2)" in line)
    assert "2 threads pull the stages marked *" in thread_line
    assert any("order.save" in line for line in lines)
    assert any("order.load" in line for line in lines)
    marked = [line for line in lines if line[4:5] == "*"]
    assert any("map(double)" in line for line in marked)
    assert text.index("order.save") < text.index("thread(2)") < text.index("order.load")


def test_explain_shows_the_automatic_mutex_for_a_generator_source() -> None:
    def numbers() -> Iterator[int]:
        yield from range(3)

    text = Pipe(numbers()).map(double).thread(2).explain()
    assert "mutex(auto)" in text
    assert "one thread at a time" in text
    assert "mutex" not in Pipe(numbers()).map(double).thread(2).explain(optimized=False)


def test_explain_drops_an_order_without_a_concurrent_stage() -> None:
    text = Pipe(range(3)).map(double).order().explain()
    assert "order" not in text.split("\n", 1)[1]
    assert "order()" in Pipe(range(3)).order().explain(optimized=False)


def test_stage_repr() -> None:
    stage = iter(Pipe(range(3)).map(double))
    assert repr(stage).startswith("<tinypl.Stage ")
    assert "double" in repr(stage)
    assert "(live)" in repr(stage)
    stage.close()
    assert "(closed)" in repr(stage)
