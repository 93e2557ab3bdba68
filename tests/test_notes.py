"""Errors that say which item: every exception a stage function raises carries a PEP 678
note naming the stage and the item, and keeps the user's own type."""

from __future__ import annotations

import pytest

import tinypl as pl
from tinypl import Marker, Pipe


class Boom(Exception):
    pass


def load(x: int) -> int:
    if x == 3:
        raise Boom(f"bad {x}")
    return x


def first_error(stage: pl.Stage[object]) -> Boom:
    with stage, pytest.raises(Boom) as caught:
        list(stage)
    return caught.value


def notes(error: BaseException) -> list[str]:
    return list(getattr(error, "__notes__", []))


def test_a_fused_run_names_the_stage_and_the_item() -> None:
    # No position outside an ordered region: counting would slow the fastest path.
    error = first_error(iter(Pipe(range(6)).map(str).map(int).map(load)))
    assert notes(error) == ["tinypl: raised by map(load) on item: 3"]


def test_the_failing_op_of_a_fused_run_is_named_with_the_item_it_got() -> None:
    error = first_error(iter(Pipe(range(6)).map(lambda x: x + 1).filter(load).map(str)))
    assert notes(error) == ["tinypl: raised by filter(load) on item: 3"]


def test_an_error_is_noted_once_and_the_stream_goes_on() -> None:
    stage = iter(Pipe(range(6)).map(load))
    out: list[object] = []
    while True:
        try:
            out.append(next(stage))
        except Boom as error:
            out.append(notes(error))
        except StopIteration:
            break
    assert out == [0, 1, 2, ["tinypl: raised by map(load) on item: 3"], 4, 5]


def test_with_markers_the_note_names_the_stage_and_the_item() -> None:
    pipe = Pipe(range(6)).insert_marker(Marker("m")).each(load)
    assert notes(first_error(iter(pipe))) == ["tinypl: raised by each(load) on item: 3"]


def test_module_level_stages_get_notes() -> None:
    error = first_error(pl.map(pl.map(range(6), abs), load))
    assert notes(error) == ["tinypl: raised by map(load) on item: 3"]


def test_a_long_item_is_shortened() -> None:
    def fail(x: str) -> str:
        raise Boom(x)

    error = first_error(iter(Pipe(["x" * 500]).map(fail)))
    (note,) = notes(error)
    assert note.startswith("tinypl: raised by map(") and "on item: 'xxx" in note
    assert len(note) < 200


@pytest.mark.timeout(20)
def test_thread_workers_raise_the_users_error_with_its_note() -> None:
    error = first_error(iter(Pipe(iter(range(6))).map(load).thread(2)))
    assert type(error) is Boom
    assert notes(error) == ["tinypl: raised by map(load) on item: 3"]


@pytest.mark.timeout(20)
def test_numbered_for_a_checkpoint_an_unordered_stage_names_the_source_position() -> None:
    error = first_error(iter(Pipe(range(6)).map(load).thread(2)))
    assert type(error) is Boom
    assert notes(error) == ["tinypl: raised by map(load) on item 3 of the source: 3"]


@pytest.mark.timeout(20)
def test_in_an_ordered_region_the_position_is_the_sequence_number() -> None:
    error = first_error(iter(Pipe(range(6)).map(load).thread(2).order()))
    assert type(error) is Boom
    assert notes(error) == ["tinypl: raised by map(load) on item 3 of the source: 3"]


@pytest.mark.timeout(60)
def test_process_workers_raise_the_users_error_with_its_note() -> None:
    error = first_error(iter(Pipe(iter(range(6))).map(abs).map(load).process(2)))
    assert type(error) is Boom
    assert "tinypl: raised by map(load) on item: 3" in notes(error)
    error = first_error(iter(Pipe(range(6)).map(abs).map(load).process(2)))
    assert "tinypl: raised by map(load) on item 3 of the source: 3" in notes(error)
