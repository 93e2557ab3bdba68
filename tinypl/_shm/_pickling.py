"""Pickling with out-of-band buffers: array data leaves the stream, to be copied once.

numpy is never imported here: an object can only be an array if numpy was imported
by somebody else already, so the pickler looks it up in :data:`sys.modules`.

Examples:
    >>> buffers = []
    >>> stream = dumps_out_of_band(b"abc", buffers.append)
    >>> pickle.loads(stream, buffers=buffers)
    b'abc'
"""

from __future__ import annotations

import io
import pickle
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["check_plain", "dumps_out_of_band", "rebuild_array"]


def rebuild_array(
    buffer: Any, dtype: np.dtype[Any], shape: tuple[int, ...], order: str
) -> npt.NDArray[Any]:
    """Unpickling hook for arrays reduced by the out-of-band pickler.

    Examples:
        >>> rebuild_array(bytearray(8), "<i4", (2,), "C").tolist()
        [0, 0]
    """
    import numpy as np

    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order="F" if order == "F" else "C")


class _Pickler(pickle.Pickler):
    """Protocol-5 pickler that sends the data of every plain ndarray out of band.

    numpy's own reduction pickles non-contiguous and datetime/timedelta arrays
    in-band (a ``tobytes`` copy inside the stream) and even loses the byte order of
    non-native datetime arrays; reducing plain arrays here avoids both. Arrays of
    object dtype, zero itemsize, and subclasses keep numpy's (or the subclass's)
    reduction.
    """

    def __init__(self, file: io.BytesIO, buffer_callback: Callable[[Any], Any]) -> None:
        super().__init__(file, protocol=5, buffer_callback=buffer_callback)
        numpy = sys.modules.get("numpy")
        self._ndarray: Any = None if numpy is None else numpy.ndarray

    def reducer_override(self, obj: Any) -> Any:
        if self._ndarray is None or type(obj) is not self._ndarray:
            return NotImplemented
        if obj.dtype.hasobject or obj.dtype.itemsize == 0:
            return NotImplemented
        if obj.flags.c_contiguous:
            order = "C"
        elif obj.flags.f_contiguous:
            order = "F"
        else:
            import numpy as np

            obj, order = np.ascontiguousarray(obj), "C"
        # A flat uint8 view: datetime arrays cannot export the buffer protocol
        # themselves (and ravel of a contiguous array is a view, not a copy).
        data = pickle.PickleBuffer(obj.ravel(order="K").view("u1"))
        return rebuild_array, (data, obj.dtype, obj.shape, order)


def dumps_out_of_band(obj: object, buffer_callback: Callable[[pickle.PickleBuffer], Any]) -> bytes:
    """Pickle ``obj`` (protocol 5); array data goes to ``buffer_callback``.

    A callback that returns a true value keeps that buffer in the stream instead.

    Examples:
        >>> import numpy as np
        >>> buffers = []
        >>> stream = dumps_out_of_band(np.arange(3), buffers.append)
        >>> len(buffers), pickle.loads(stream, buffers=buffers).tolist()
        (1, [0, 1, 2])
    """
    f = io.BytesIO()
    _Pickler(f, buffer_callback).dump(obj)
    return f.getvalue()


_PLAIN_TYPES: Final = (type(None), bool, int, float, complex, str, bytes)
_CONTAINERS: Final = (tuple, list, dict)


def _plain_numpy(x: Any, numpy: Any) -> bool:
    """Whether ``x`` is an array or scalar of numpy without Python objects inside."""
    if type(x) is numpy.ndarray:
        if x.dtype.hasobject:
            raise TypeError(
                f"cannot write a numpy array of dtype {x.dtype} (it holds Python objects) "
                "to a SharedMemoryRingBuffer created with allow_pickle=False"
            )
        return True
    return isinstance(x, numpy.generic) and not x.dtype.hasobject


def check_plain(obj: object) -> None:
    """Raise TypeError unless obj only holds arrays, scalars and plain containers.

    Examples:
        >>> check_plain({"a": [1, 2.5, None]})
        >>> check_plain({1, 2})
        Traceback (most recent call last):
        TypeError: cannot write an object of type builtins.set ...
    """
    numpy = sys.modules.get("numpy")
    seen: set[int] = set()
    stack: list[object] = [obj]
    while stack:
        x = stack.pop()
        t = type(x)
        if t in _PLAIN_TYPES or (numpy is not None and _plain_numpy(x, numpy)):
            continue
        if t in _CONTAINERS:
            if id(x) not in seen:
                seen.add(id(x))
                if isinstance(x, dict):
                    stack.extend(x.keys())
                    stack.extend(x.values())
                else:
                    stack.extend(x)  # type: ignore[arg-type]
            continue
        raise TypeError(
            f"cannot write an object of type {t.__module__}.{t.__qualname__} to a "
            "SharedMemoryRingBuffer created with allow_pickle=False (supported: numpy "
            "arrays and scalars without object dtype, None, bool, int, float, complex, "
            "str, bytes, and tuples, lists and dicts of those)"
        )
