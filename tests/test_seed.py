"""The examples of the tinypl 0.1.0 README (sections Basics, Iterators & iterables and
Markers), copied verbatim, with the values their comments promise."""

from __future__ import annotations

import pytest

import tinypl as pl


def test_basics_pipeline(capsys: pytest.CaptureFixture[str]) -> None:
    # Input to the pipeline: Can be any iterable object (list, sequence, set, etc), or an iterator.
    pipe = range(100)

    # Apply a function to every element: [0, 1, 2, 3, ...] -> [1, 4, 7, 10, ...]
    pipe = pl.map(pipe, lambda x: 3 * x + 1)

    # Keep only even numbers: [1, 4, 7, 10, ...] -> [4, 10, 16, 22, ...]
    pipe = pl.filter(pipe, lambda x: x % 2 == 0)

    # Partition the pipe into lists with size 2: [4, 10, 16, 22, ...] -> [[4, 10], [16, 22], ...]
    pipe = pl.partition(pipe, 2)

    # Alternative 1: Iterate the output using a for-loop
    for x in pipe:
        print(x)
    # Alternative 2: Pull all items into a list
    print(list(pipe))
    # Alternative 3: Pull only a single item from the pipeline
    with pytest.raises(StopIteration):  # the for loop above exhausted the stage
        print(next(pipe))

    evens = [3 * x + 1 for x in range(100) if (3 * x + 1) % 2 == 0]
    batches = [evens[i : i + 2] for i in range(0, len(evens), 2)]
    assert batches[:2] == [[4, 10], [16, 22]]
    expected = [str(batch) for batch in batches] + ["[]"]
    assert capsys.readouterr().out.splitlines() == expected


def test_basics_pipeline_alternatives_each_on_a_fresh_pipeline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def build() -> pl.Stage[list[int]]:
        pipe = pl.map(range(100), lambda x: 3 * x + 1)
        pipe = pl.filter(pipe, lambda x: x % 2 == 0)
        return pl.partition(pipe, 2)

    assert list(build())[:3] == [[4, 10], [16, 22], [28, 34]]
    print(next(build()))
    assert capsys.readouterr().out == "[4, 10]\n"


def test_basics_intermediate_stages(capsys: pytest.CaptureFixture[str]) -> None:
    input = range(100)

    # Apply a function to every element
    pipe_mapped = pl.map(input, lambda x: x + 1)

    # Construct separate stages for even and odd numbers
    pipe_even_only = pl.filter(pipe_mapped, lambda x: x % 2 == 0)
    pipe_odd_only = pl.filter(pipe_mapped, lambda x: x % 2 == 1)

    print(next(pipe_mapped))  # Prints 1
    print(next(pipe_odd_only))  # Discards 2, prints 3
    print(next(pipe_even_only))  # Prints 4
    print(next(pipe_even_only))  # Discards 5, prints 6
    print(next(pipe_mapped))  # Prints 7

    assert capsys.readouterr().out.split() == ["1", "3", "4", "6", "7"]


def test_iterables_get_an_iterator_each(capsys: pytest.CaptureFixture[str]) -> None:
    numbers = [0, 1, 2, 3, 4]
    pipe1 = pl.map(numbers, lambda x: x + 1)  # Constructs an iterator over numbers
    pipe2 = pl.map(numbers, lambda x: x + 1)  # Constructs another iterator over numbers
    print(next(pipe1))  # Prints 1
    print(next(pipe2))  # Prints 1, since it uses a different iterator

    assert capsys.readouterr().out.split() == ["1", "1"]


def test_iterators_are_shared(capsys: pytest.CaptureFixture[str]) -> None:
    numbers = iter([0, 1, 2, 3, 4])
    pipe1 = pl.map(numbers, lambda x: x + 1)
    pipe2 = pl.map(numbers, lambda x: x + 1)
    print(next(pipe1))  # Prints 1
    print(next(pipe2))  # Prints 2, since both pipelines were constructed from the same iterator

    assert capsys.readouterr().out.split() == ["1", "2"]


def test_stages_are_iterators() -> None:
    # "Any pipeline stage also implements the iterator interface and can be used as a
    # drop-in replacement, e.g. to pull the next item using next or ... using list."
    stage = pl.map([0, 1, 2], lambda x: x + 1)
    assert iter(stage) is stage
    assert next(stage) == 1
    assert list(stage) == [2, 3]


def test_markers(capsys: pytest.CaptureFixture[str]) -> None:
    pipe = [range(i + 1) for i in range(50)]
    # -> [[0], [0, 1], [0, 1, 2], ...]

    # Inject a marker after every item. marker variable acts as identifier for markers inserted here
    pipe, marker = pl.marker.insert_periodic(pipe, n=1, after=True)
    # -> [[0], marker, [0, 1], marker, ...]

    # Flatten the lists (ignores markers)
    pipe = pl.flatten(pipe)
    # -> [0, marker, 0, 1, marker, 0, 1, 2, marker, ...]

    # Apply a function to all items (ignores markers)
    pipe = pl.map(pipe, lambda x: x + 1)
    # -> [1, marker, 1, 2, marker, 1, 2, 3, marker, ...]

    # Print "Hello world!" whenever we see a marker
    def hello_world():
        print(f"Hello world!")  # noqa: F541

    pipe = pl.marker.on(pipe, hello_world, marker=marker)

    # Create new stages that stop when marker is found, and pull into list
    print(list(pl.marker.until(pipe, marker=marker)))  # Prints [1]
    print(list(pl.marker.until(pipe, marker=marker)))  # Prints [1, 2]
    print(list(pl.marker.until(pipe, marker=marker)))  # Prints [1, 2, 3]

    assert capsys.readouterr().out.splitlines() == [
        "Hello world!",
        "[1]",
        "Hello world!",
        "[1, 2]",
        "Hello world!",
        "[1, 2, 3]",
    ]


def test_markers_stream_shapes_from_the_comments() -> None:
    # The `# -> ...` comments of the Markers example, checked on the raw streams.
    pipe, marker = pl.marker.insert_periodic([range(i + 1) for i in range(50)], n=1, after=True)
    raw = list(pipe.raw)
    shown = [list(x) if isinstance(x, range) else x for x in raw[:4]]
    assert shown == [[0], marker, [0, 1], marker]
    pipe, marker = pl.marker.insert_periodic([range(i + 1) for i in range(50)], n=1, after=True)
    flat = pl.flatten(pipe)
    assert [next(flat.raw) for _ in range(9)] == [0, marker, 0, 1, marker, 0, 1, 2, marker]
    pipe, marker = pl.marker.insert_periodic([range(i + 1) for i in range(50)], n=1, after=True)
    mapped = pl.map(pl.flatten(pipe), lambda x: x + 1)
    assert [next(mapped.raw) for _ in range(9)] == [1, marker, 1, 2, marker, 1, 2, 3, marker]
    # And all 50 groups are there.
    rest = list(pl.marker.on(mapped, lambda: None, marker=marker))
    assert len(rest) == sum(range(1, 51)) - 6
