"""Helpers shared by the tests of tinypl._shm (one test file per module)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from tinypl._shm import ShmPool
from tinypl._shm._segments import NAME_PREFIX, SHM_DIR, parse_segment_name

__all__ = [
    "ARRAYS",
    "pool_worker",
    "REPO_ROOT",
    "START_METHODS",
    "Custom",
    "assert_same",
    "leftover_segments",
    "nested_example",
    "payload",
    "segment_exists",
    "shm_listing",
]

START_METHODS = ["fork", "forkserver", "spawn"]
REPO_ROOT = Path(__file__).resolve().parents[1]


def shm_listing() -> set[str]:
    return {p.name for p in Path(SHM_DIR).iterdir() if p.name.startswith(NAME_PREFIX)}


def leftover_segments(before: set[str], pids: Iterable[int] = ()) -> set[str]:
    """Segments created since `before` that still exist and that this process or one
    of ``pids`` created or reads; other test runs share /dev/shm and their
    segments come and go at any time."""
    ours = {os.getpid(), *pids}
    out = set()
    for name in shm_listing() - before:
        fields = parse_segment_name(name)
        if fields is None:
            continue
        if fields.creator[0] in ours or (fields.reader is not None and fields.reader[0] in ours):
            out.add(name)
    return out


def segment_exists(name: str) -> bool:
    return (Path(SHM_DIR) / name).exists()


def assert_same(a: Any, b: Any) -> None:
    """Exact equality, including dtype, shape and raw bytes of arrays."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        assert a.dtype == b.dtype
        assert a.shape == b.shape
        assert a.tobytes() == b.tobytes()
    elif isinstance(a, dict):
        assert type(b) is type(a)
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(b) is type(a)
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float)
        assert math.isnan(b)
    else:
        assert type(b) is type(a)
        assert a == b


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


STRUCTURED = np.dtype([("a", "<i4"), ("b", ">f8", (2,)), ("c", "S3")])
NESTED = np.dtype([("p", STRUCTURED), ("q", "<u2")])

ARRAYS: dict[str, np.ndarray] = {
    "int64-3d": np.arange(24, dtype=np.int64).reshape(2, 3, 4),
    "float64": np.linspace(-1, 1, 1000),
    "float32-fortran": np.asfortranarray(np.arange(30, dtype=np.float32).reshape(5, 6)),
    "float16": np.arange(10, dtype=np.float16),
    "longdouble": np.arange(5, dtype=np.longdouble) / 3,
    "complex128": np.arange(6) * (1 + 2j),
    "clongdouble": np.arange(3, dtype=np.clongdouble) * 1j,
    "bool": np.array([True, False, True]),
    "uint8": np.arange(256, dtype=np.uint8),
    "int8": np.arange(-5, 5, dtype=np.int8),
    "uint64": np.array([0, 2**64 - 1], dtype=np.uint64),
    "big-endian": np.arange(7, dtype=">i4"),
    "unicode": np.array(["a", "bcd", "€uro"]),
    "bytes": np.array([b"x", b"yz"]),
    "datetime": np.array(["2024-01-01", "NaT"], dtype="M8[ns]"),
    "timedelta": np.arange(4).astype("m8[s]"),
    "structured": np.array([(1, (2.0, 3.0), b"abc"), (4, (5.0, 6.0), b"d")], dtype=STRUCTURED),
    "nested-structured": np.zeros(3, dtype=NESTED),
    "void": np.frombuffer(b"12345678" * 2, dtype="V8"),
    "0d": np.array(3.5),
    "0d-uint8": np.array(7, dtype=np.uint8),
    "empty-1d": np.empty(0),
    "empty-3d": np.empty((3, 0, 2), dtype=np.int16),
    "empty-structured": np.empty(0, dtype=STRUCTURED),
    "strided": np.arange(100.0).reshape(10, 10)[::2, 1::3],
    "transposed-3d": np.arange(60).reshape(3, 4, 5).transpose(2, 0, 1),
    "negative-stride": np.arange(20, dtype=np.int32)[::-1],
    "broadcast": np.broadcast_to(np.arange(3.0), (4, 3)),
    "strided-structured": np.zeros(10, dtype=STRUCTURED)[::3],
    "readonly": _readonly(np.arange(12.0).reshape(3, 4)),
    "large": np.random.default_rng(0).standard_normal((512, 768)),  # 3 MiB
}


def nested_example() -> dict[str, Any]:
    return {
        "arrays": [np.arange(5), (np.ones((2, 2)), np.zeros(0))],
        "meta": {"name": "x", "id": 3, "ratio": 0.5, "flag": True, "none": None, "c": 1j},
        "raw": b"\x00\x01",
        "scalar": np.float32(2.5),
        "tuple": (1, "two", [3.0, {"four": np.array([4])}]),
        5: "int key",
    }


class Custom:
    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Custom) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


def payload(worker: int, i: int, max_size: int = 40_000) -> np.ndarray:
    rng = np.random.default_rng(worker * 100_003 + i)
    return rng.standard_normal(int(rng.integers(0, max_size)))


def pool_worker(conn: Any, n: int, mode: str) -> None:
    pool = ShmPool(64 << 20)
    for i in range(n):
        conn.send_bytes(pool.dumps({"i": i, "a": np.full((256, 1024), i, dtype=np.float64)}))
    if mode == "close":
        pool.close()
    elif mode == "hold":
        conn.recv()  # wait to be killed
