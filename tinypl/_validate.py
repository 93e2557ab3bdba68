"""Argument checks shared by the builders: each names the argument and what was wrong."""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any, TypeVar

from ._marker import Marker

__all__ = [
    "check_bool",
    "check_callable",
    "check_choice",
    "check_int",
    "check_iterable",
    "check_marker",
    "check_number",
    "is_async_iterable",
]

T = TypeVar("T")


def _type(value: Any) -> str:
    return type(value).__name__


def check_callable(where: str, name: str, value: T) -> T:
    if not callable(value):
        raise TypeError(f"{where}: {name} must be callable, got {_type(value)}")
    return value


def check_int(where: str, name: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: {name} must be an int, got {_type(value)}")
    number = int(value)
    if number < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {number}")
    return number


def check_number(where: str, name: str, value: Any, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name} must be a number, got {_type(value)}")
    number = float(value)
    if positive and not number > 0:
        raise ValueError(f"{where}: {name} must be > 0, got {number:g}")
    return number


def check_bool(where: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{where}: {name} must be a bool, got {_type(value)}")
    return value


def check_choice(where: str, name: str, value: Any, choices: Iterable[Any]) -> Any:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{where}: {name} must be one of {choices!r}, got {value!r}")
    return value


def check_marker(where: str, name: str, value: Any, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, Marker):
        expected = "a tinypl.Marker or None" if optional else "a tinypl.Marker"
        raise TypeError(f"{where}: {name} must be {expected}, got {_type(value)}")
    return value


def check_iterable(where: str, name: str, value: Any) -> Any:
    # A type check only: calling iter() here could start a user's generator-producing code.
    kind = type(value)
    if not (hasattr(kind, "__iter__") or hasattr(kind, "__getitem__") or is_async_iterable(value)):
        raise TypeError(
            f"{where}: {name} must be an iterable, an iterator or an async iterable,"
            f" got {_type(value)}"
        )
    return value


def is_async_iterable(value: Any) -> bool:
    """Whether ``value`` is iterated with ``async for`` only (it has ``__aiter__`` and no
    ``__iter__``): an async generator, say.

    Examples:
        >>> async def numbers():
        ...     yield 1
        >>> is_async_iterable(numbers()), is_async_iterable([1])
        (True, False)
    """
    kind = type(value)
    return hasattr(kind, "__aiter__") and not (
        hasattr(kind, "__iter__") or hasattr(kind, "__getitem__")
    )
