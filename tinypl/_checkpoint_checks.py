"""Checks of a state handed to ``Pipe.iter(state=...)``: each part has the shape its
mode gives it, or a ``ValueError`` names the key and what was wrong. Pure functions of
the state and the plan's nodes."""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from typing import Any

from . import _plan as plan
from . import _plan_streams as streams
from ._checkpoint_plan import COUNTERS, Mode, fingerprint
from ._runtime._streams import load_rng

__all__ = [
    "VERSION",
    "check",
    "count_of",
    "counts_of",
    "generator_state",
    "held_of",
    "input_states",
    "marks_of",
    "pass_of",
    "places_of",
]

#: The format of a state. A state loads in every later version that knows its format.
VERSION = 1


def counts_of(state: Mapping[str, Any], nodes: list[plan.Node]) -> list[int]:
    counts = state.get("counts", [])
    wanted = sum(isinstance(node, COUNTERS) for node in nodes)
    if not isinstance(counts, list) or len(counts) != wanted:
        raise ValueError(
            f"Pipe.iter: state['counts'] must list the counts of the pipe's {wanted}"
            f" take and skip stages, got {counts!r}"
        )
    for value in counts:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"Pipe.iter: state['counts'] must hold ints >= 0, got {value!r}")
    return list(counts)


def marks_of(state: Mapping[str, Any], nodes: list[plan.Node]) -> list[tuple[int, bool]]:
    marks = state.get("markers", [])
    stages = [node for node in nodes if isinstance(node, plan.InsertMarker)]
    valid = isinstance(marks, list) and len(marks) == len(stages)
    if valid:
        for mark, node in zip(marks, stages, strict=True):
            valid = valid and isinstance(mark, list) and len(mark) == 2
            valid = valid and type(mark[0]) is int and 0 <= mark[0] < node.every
            valid = valid and type(mark[1]) is bool
    if not valid:
        raise ValueError(
            f"Pipe.iter: state['markers'] must list, for each of the pipe's {len(stages)}"
            " insert_marker stages, [items since its last marker, whether a marker is"
            f" due], got {marks!r}"
        )
    return [(count, due) for count, due in marks]


def held_of(state: Mapping[str, Any], nodes: list[plan.Node], markers: int) -> list[list[int]]:
    """The markers each partition that markers reach holds, by insert_marker stage."""
    held = state.get("held", [])
    valid = isinstance(held, list) and len(held) <= sum(
        isinstance(node, plan.Partition) for node in nodes
    )
    valid = valid and all(
        isinstance(part, list) and all(type(i) is int and 0 <= i < markers for i in part)
        for part in held
    )
    if not valid:
        raise ValueError(
            "Pipe.iter: state['held'] must list, for each partition that markers reach, the"
            f" indices (from 0 to {markers - 1}) of the insert_marker stages whose markers"
            f" it holds, got {held!r}"
        )
    return [list(part) for part in held]


def places_of(state: Mapping[str, Any], nodes: list[plan.Node]) -> list[int | None]:
    places = state.get("flatten", [])
    wanted = sum(isinstance(node, plan.Flatten) for node in nodes)
    valid = isinstance(places, list) and all(
        place is None or (type(place) is int and place >= 0) for place in places
    )
    if not valid or len(places) != wanted:
        raise ValueError(
            f"Pipe.iter: state['flatten'] must list the places (ints >= 0 or None) of the"
            f" pipe's {wanted} flatten stages, got {places!r}"
        )
    return list(places)


def count_of(state: Mapping[str, Any], key: str) -> int:
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"Pipe.iter: state[{key!r}] must be an int >= 0, got {value!r}")
    return value


def input_states(state: Mapping[str, Any], node: streams.Mix) -> list[Any]:
    states, mixed = state.get("inputs"), state.get("mix")
    count = len(node.inputs)
    valid = isinstance(states, list) and len(states) == count
    valid = valid and all(isinstance(part, Mapping) for part in states)  # type: ignore[union-attr]
    if valid and isinstance(mixed, Mapping):
        active, turn, rng = mixed.get("active"), mixed.get("turn"), mixed.get("rng")
        valid = isinstance(active, list) and all(type(i) is int and 0 <= i < count for i in active)
        valid = valid and type(turn) is int and turn >= 0
        valid = valid and (node.weights is None or generator_state(rng))
    else:
        valid = False
    if not valid:
        raise ValueError(
            f"Pipe.iter: state['inputs'] must list the states of the mix's {count} inputs and"
            f" state['mix'] hold its inputs still drawn from, its turn and generator, got"
            f" {states!r} and {mixed!r}"
        )
    return states  # type: ignore[return-value]


def generator_state(rng: Any) -> bool:
    """Whether ``rng`` is a generator's state as ``rng_state()`` gives it."""
    if not (isinstance(rng, list) and len(rng) == 3 and isinstance(rng[1], list)):
        return False
    try:
        load_rng(random.Random(), rng)
    except (TypeError, ValueError):
        return False
    return True


def pass_of(state: Mapping[str, Any], node: streams.Repeated) -> tuple[int, Any]:
    at: Any = state.get("pass")
    body = state.get("body")
    times = node.times
    valid = type(at) is int and at >= 0 and (times is None or at <= times)
    if valid:
        valid = isinstance(body, Mapping) if times is None or at < times else body is None
    if not valid:
        raise ValueError(
            f"Pipe.iter: state['pass'] must be an int from 0 to the repeat's {times} passes"
            f" and state['body'] the state of that pass's run (None after the last), got"
            f" {at!r} and {type(body).__name__}"
        )
    return at, body


def check(state: Any, node: plan.Node, mode: Mode) -> None:
    """Fail unless ``state`` was taken from a run of a pipe like ``node``."""
    if not isinstance(state, Mapping):
        raise TypeError(
            f"Pipe.iter: state must be a dict from run.state_dict(), got {type(state).__name__}"
        )
    version = state.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= VERSION:
        raise ValueError(
            f"Pipe.iter: state['version'] must be an int from 1 to {VERSION} (the formats"
            f" this tinypl reads), got {version!r}"
        )
    ours = fingerprint(node)
    theirs = state.get("fingerprint")
    if not isinstance(theirs, list):
        raise ValueError(f"Pipe.iter: state['fingerprint'] must be a list, got {theirs!r}")
    for index, (mine, saved) in enumerate(itertools.zip_longest(ours, theirs)):
        if mine != saved:
            here = "nothing" if mine is None else mine
            there = "nothing" if saved is None else saved
            raise ValueError(
                f"Pipe.iter: the state was taken from a different pipe: its stage {index}"
                f" is {here} here, but {there} in the pipe of the state"
            )
    if state.get("mode") != mode:
        raise ValueError(
            f"Pipe.iter: state['mode'] must be {mode!r} for this pipe, got {state.get('mode')!r}"
        )
